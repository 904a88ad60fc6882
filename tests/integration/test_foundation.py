"""The foundation works end to end: a real Kafka and a real PostgreSQL answer."""

from __future__ import annotations

import asyncio
import uuid

from eventsourcing.postgres import PostgresApplicationRecorder
from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from ledger.application import Ledger
from ledger.book import AgentBook

MESSAGES = 20
WAIT_SECONDS_MAX = 60


async def test_messages_published_with_faststream_come_back_through_a_consumer_group(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    received: list[dict[str, int]] = []
    done = asyncio.Event()
    broker = KafkaBroker(kafka_bootstrap)

    @broker.subscriber(
        kafka_topic,
        group_id=f"group-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
    )
    async def collect(message: dict[str, int]) -> None:
        received.append(message)
        if len(received) == MESSAGES:
            done.set()

    async with broker:
        await broker.start()
        for n in range(MESSAGES):
            await broker.publish({"n": n}, kafka_topic, key=f"agent-{n % 3}".encode())
        await asyncio.wait_for(done.wait(), WAIT_SECONDS_MAX)

    assert sorted(m["n"] for m in received) == list(range(MESSAGES))


def test_an_aggregate_saved_to_postgres_reloads_with_the_same_state(
    pg_ledger_env: dict[str, str],
) -> None:
    writer = Ledger(pg_ledger_env)
    book = AgentBook(
        code="SITE1",
        parent_code=None,
        currency="EUR",
        mode="seamless",
        name="Site one",
        request_id=str(uuid.uuid4()),
    )
    writer.save(book)
    writer.close()

    reader = Ledger(pg_ledger_env)
    loaded = reader.repository.get(AgentBook.create_id("SITE1"))
    reader.close()

    assert isinstance(loaded, AgentBook)
    assert (loaded.code, loaded.currency, loaded.mode, loaded.version) == (
        "SITE1",
        "EUR",
        "seamless",
        1,
    )
    assert isinstance(reader.recorder, PostgresApplicationRecorder)
