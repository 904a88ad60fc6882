"""A batch is topped up with the records that reached its partitions after it was fetched."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumers import app
from consumers.app import _topped_up
from tests import topics

pytestmark = pytest.mark.integration

PARTITIONS = 2


async def _topic(bootstrap: str) -> str:
    """A topic of its own (deleted at the end of the session: `tests/topics.py`)."""
    name = f"top-up-{uuid.uuid4().hex[:8]}"
    await topics.create(bootstrap, [name], PARTITIONS)
    return name


async def _send(producer: AIOKafkaProducer, topic: str, values: range) -> None:
    for value in values:
        await producer.send_and_wait(topic, str(value).encode(), partition=value % PARTITIONS)


async def test_records_sent_after_the_batch_was_fetched_join_it_in_partition_order(
    kafka_bootstrap: str,
) -> None:
    topic = await _topic(kafka_bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    try:
        await _send(producer, topic, range(0, 6))
        batch: tuple[Any, ...] = ()
        while len(batch) < 6:
            fetched = await consumer.getmany(timeout_ms=1_000)
            batch += tuple(r for records in fetched.values() for r in records)
        await _send(producer, topic, range(6, 10))  # after the batch was fetched

        topped = await _topped_up(consumer, batch)
        for _ in range(50):  # a slow broker may need more than one round trip
            if len(topped) >= 10:
                break
            topped = await _topped_up(consumer, topped)

        assert len(topped) == 10
        assert topped[:6] == batch
        for partition in range(PARTITIONS):
            values = [int(r.value) for r in topped if r.partition == partition]
            assert values == sorted(values)
            assert values == [v for v in range(10) if v % PARTITIONS == partition]
    finally:
        await consumer.stop()
        await producer.stop()


class _Consumer:
    def __init__(self, fetched: dict[Any, list[Any]] | Exception) -> None:
        self.fetched = fetched
        self.asked: list[int] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        self.asked.append(max_records)
        if isinstance(self.fetched, Exception):
            raise self.fetched
        return self.fetched


async def test_a_full_batch_is_not_topped_up_and_a_smaller_one_only_to_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app, "BATCH_RECORDS_MAX", 5)
    full = _Consumer({"p": ["new"]})
    assert await _topped_up(full, ("a", "b", "c", "d", "e")) == ("a", "b", "c", "d", "e")
    assert full.asked == []

    room = _Consumer({"p": ["x"], "q": ["y"]})
    assert await _topped_up(room, ("a", "b")) == ("a", "b", "x", "y")
    assert room.asked == [3]


async def test_a_failing_top_up_leaves_the_batch_as_it_was() -> None:
    failing = _Consumer(RuntimeError("consumer stopped"))
    assert await _topped_up(failing, ("a",)) == ("a",)
    assert failing.asked == [app.BATCH_RECORDS_MAX - 1]
