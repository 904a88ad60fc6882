"""Exit 0 if the Kafka broker at argv[1] answers a metadata request, else 1.

Used by kafka.sh to wait for the broker: an open TCP port is not enough,
the broker only serves metadata once it has joined the KRaft quorum.
"""

import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient


async def ready(bootstrap: str, timeout_s: float = 5.0) -> bool:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
        return True
    except Exception as exc:  # any failure just means "not ready yet"
        print(f"not ready: {exc!r}", file=sys.stderr)
        return False
    finally:
        await admin.close()


if __name__ == "__main__":
    sys.exit(
        0 if asyncio.run(ready(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:19092")) else 1
    )
