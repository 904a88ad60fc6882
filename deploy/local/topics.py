"""Create the ledger's Kafka topics, idempotently.

    python deploy/local/topics.py [--bootstrap HOST:PORT] [--partitions N] [NAME ...]

Topics are created explicitly (not left to auto-creation) so they get the
partition count the ledger is sized for. An existing topic is left as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

TOPICS = ["ledger.commands", "ledger.results", "ledger.commands.dlq"]


async def ensure_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if not missing:
            return
        resp = await admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in missing]
        )
        # aiokafka returns per-topic error codes instead of raising.
        for name, code, *rest in resp.topic_errors:
            if code and for_code(code) is not TopicAlreadyExistsError:  # lost a race: fine
                raise for_code(code)(f"{name}: {rest[0] if rest else ''}")
    finally:
        await admin.close()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    )
    p.add_argument("--partitions", type=int, default=int(os.environ.get("LEDGER_PARTITIONS", "8")))
    p.add_argument("names", nargs="*", default=TOPICS)
    args = p.parse_args()
    asyncio.run(ensure_topics(args.bootstrap, args.names, args.partitions))
    print(f"topics ready on {args.bootstrap}: {' '.join(args.names)}", file=sys.stderr)


if __name__ == "__main__":
    main()
