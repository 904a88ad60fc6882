"""Kafka topics of the tests: each created for one test and deleted after it.

A local broker keeps every topic it is given, from run to run. Left behind, the tests'
topics (three per end-to-end test, 4-8 partitions each) had reached 2,423 topics on the
developer's broker; with them there, `make bench` measured a p99 of 300-400 ms at 5,000
commands/s, and 131-146 ms once they were deleted. Every topic made through `create`
is remembered until `delete`; `delete_left` at the end of the session removes what a
failed or interrupted test did not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from aiokafka.errors import KafkaError

from bench.kafka import create_topics, delete_topics

__all__ = ["create", "create_sync", "delete", "delete_left", "delete_sync"]

_created: dict[str, set[str]] = {}  # bootstrap -> topics created and not yet deleted


async def create(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    names = list(names)
    await create_topics(bootstrap, names, partitions)
    _created.setdefault(bootstrap, set()).update(names)


async def delete(bootstrap: str, names: Iterable[str]) -> None:
    """Delete topics this module created (others are left alone); a broker that is
    away (a fault test stopped it) leaves them to `delete_left`."""
    mine = _created.get(bootstrap, set())
    names = [n for n in names if n in mine]
    if not names:
        return
    with contextlib.suppress(KafkaError, OSError):
        await delete_topics(bootstrap, names)
        mine.difference_update(names)


def create_sync(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    asyncio.run(create(bootstrap, names, partitions))


def delete_sync(bootstrap: str, names: Iterable[str]) -> None:
    asyncio.run(delete(bootstrap, names))


def delete_left() -> None:
    """Delete every topic created and not deleted yet, on every broker still there."""
    for bootstrap, names in list(_created.items()):
        delete_sync(bootstrap, sorted(names))
