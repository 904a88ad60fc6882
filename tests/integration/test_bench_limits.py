"""`make bench`'s limit E (bench/limits.py::thin_pipeline) on real Kafka and PostgreSQL:
a limit that skipped records, or answered some twice, would overstate the ceiling."""

from __future__ import annotations

import uuid
from collections import Counter

import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from bench.kafka import consume_range, topic_offsets
from bench.limits import THIN_BATCH_RECORDS_MAX, thin_pipeline
from tests import topics

pytestmark = pytest.mark.integration

PARTITIONS = 3
RECORDS = 2 * THIN_BATCH_RECORDS_MAX + 345


async def test_limit_e_writes_one_row_and_publishes_one_result_per_record_of_the_span(
    kafka_bootstrap: str, database_url: str, pg_schema: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    commands, results = f"limit-e-{tag}.commands", f"limit-e-{tag}.results"
    await topics.create(kafka_bootstrap, [commands, results], PARTITIONS)
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
        await producer.start()
        try:
            await producer.send_and_wait(commands, b'{"requestId": "before the span"}')
            start = await topic_offsets(kafka_bootstrap, commands)
            request_ids = [str(uuid.uuid4()) for _ in range(RECORDS - 1)]
            request_ids.append(request_ids[0])  # a repeat is one more record, not an error
            for n, request_id in enumerate(request_ids):
                value = orjson.dumps({"requestId": request_id, "type": "bet", "amount": "1"})
                # Most on one partition: a fetch then holds more than one batch of it.
                await producer.send(commands, value, partition=0 if n % 10 else n % PARTITIONS)
            await producer.flush()
        finally:
            await producer.stop()
        end = await topic_offsets(kafka_bootstrap, commands)

        run = await thin_pipeline(
            kafka_bootstrap, database_url, start, end, results, f"{pg_schema}_e"
        )

        assert run.records == RECORDS and run.seconds > 0
        with psycopg.connect(database_url, autocommit=True) as conn:
            rows = conn.execute(
                f'SELECT request_id::text FROM "{pg_schema}_e".thin_requests'
            ).fetchall()
            conn.execute(f'DROP SCHEMA "{pg_schema}_e" CASCADE')
        assert Counter(row[0] for row in rows) == Counter(request_ids)
        answered: Counter[str] = Counter()
        results_start = {tp: 0 for tp in await topic_offsets(kafka_bootstrap, results)}
        results_end = await topic_offsets(kafka_bootstrap, results)
        await consume_range(
            kafka_bootstrap,
            results_start,
            results_end,
            RECORDS + 1,
            lambda records: answered.update(orjson.loads(r.value)["requestId"] for r in records),
        )
        assert answered == Counter(request_ids)
    finally:
        await topics.delete(kafka_bootstrap, [commands, results])
