"""What the hardware allows, on the same data: the ceilings the ledger is measured against.

- C: consuming the preloaded commands with aiokafka and doing nothing else.
- D: COPY (binary) of the very event rows the ledger wrote for those commands into a
  table shaped like its events table (same keys and indexes), one transaction.
- E: the thinnest pipeline that could answer those commands: per batch of at most
  1,000 records, read each requestId, write one row per record in ONE PostgreSQL
  transaction (fsync on), publish one result per record and await the broker's
  acknowledgements, as the ledger does and in the same order, one batch after the other;
  no validation, no rules, no events, no offset commits. What is left between it and the
  ledger is the ledger's own work.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
import psycopg
from aiokafka import AIOKafkaProducer

from bench.kafka import Offsets, consume_range
from consumers.app import send_in_record_batches

__all__ = ["ConsumeRun", "CopyRun", "consume_only", "copy_events", "thin_pipeline"]

THIN_BATCH_RECORDS_MAX = 1_000  # as the ledger's batches (consumers/app.py)


@dataclass
class ConsumeRun:
    records: int
    seconds: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


@dataclass
class CopyRun:
    rows: int
    bytes: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


async def consume_only(bootstrap: str, start: Offsets, end: Offsets) -> ConsumeRun:
    """Read every record between `start` and `end`; timed from the first record fetched."""
    times: list[float] = []

    def note(records: list[Any]) -> None:
        times.append(time.perf_counter())

    total = sum(end[tp] - start[tp] for tp in start)
    records = await consume_range(bootstrap, start, end, total, note)
    return ConsumeRun(records, times[-1] - times[0] if len(times) > 1 else 0.0)


_EVENTS_DDL = """
CREATE TABLE {t} (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version));
CREATE UNIQUE INDEX ON {t} (notification_id);
"""


def copy_events(
    database_url: str, source: str, after: int, upto: int, target_schema: str
) -> CopyRun:
    """COPY the events of `source` (schema.table) with notification ids in (after, upto]
    into a fresh table of `target_schema`; only the COPY and its commit are timed."""
    columns = "originator_id, originator_version, topic, state"
    with psycopg.connect(database_url, autocommit=False, connect_timeout=10) as conn:
        chunks: list[bytes] = []
        with conn.cursor() as cur:
            select = (
                f"COPY (SELECT {columns} FROM {source} WHERE notification_id > {int(after)} "
                f"AND notification_id <= {int(upto)} ORDER BY notification_id) "
                "TO STDOUT (FORMAT BINARY)"
            )
            with cur.copy(select) as copy:
                chunks.extend(bytes(chunk) for chunk in copy)
            rows = cur.execute(
                f"SELECT count(*) FROM {source} WHERE notification_id > %s "
                "AND notification_id <= %s",
                (after, upto),
            ).fetchone()
            table = f'"{target_schema}".copied_events'
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{target_schema}"')
            cur.execute(_EVENTS_DDL.format(t=table))
            conn.commit()
            started = time.perf_counter()
            with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                for chunk in chunks:
                    copy.write(chunk)
            conn.commit()
            seconds = time.perf_counter() - started
    assert rows is not None
    return CopyRun(int(rows[0]), sum(len(c) for c in chunks), seconds)


_THIN_DDL = """
CREATE TABLE {t} (
    id bigserial PRIMARY KEY,
    request_id uuid NOT NULL,
    body bytea NOT NULL);
CREATE INDEX ON {t} (request_id);
"""


async def thin_pipeline(
    bootstrap: str,
    database_url: str,
    start: Offsets,
    end: Offsets,
    results_topic: str,
    schema: str,
) -> ConsumeRun:
    """Limit E (see the module docstring) over the records between `start` and `end`;
    timed from the first record fetched to the last acknowledgement. Rows go to a fresh
    table of `schema` (a random-key index on the requestId, as the ledger's request
    records have), results to `results_topic` on the partition of their command."""
    table = f'"{schema}".thin_requests'
    conn = await psycopg.AsyncConnection.connect(database_url, connect_timeout=10)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,  # implies acks=all, as the ledger's producer
        linger_ms=2,
        client_id="bench-limit-e",
    )
    await producer.start()
    times: list[float] = []
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(_THIN_DDL.format(t=table))
        await conn.commit()
        partitions = sorted(await producer.partitions_for(results_topic))

        async def answer(records: list[Any]) -> None:
            if not times:
                times.append(time.perf_counter())
            for at in range(0, len(records), THIN_BATCH_RECORDS_MAX):
                await _thin_batch(
                    conn,
                    producer,
                    table,
                    results_topic,
                    partitions,
                    records[at : at + THIN_BATCH_RECORDS_MAX],
                )
            times.append(time.perf_counter())

        total = sum(end[tp] - start[tp] for tp in start)
        records = await consume_range(bootstrap, start, end, total, answer)
    finally:
        await producer.stop()
        await conn.close()
    return ConsumeRun(records, times[-1] - times[0] if len(times) > 1 else 0.0)


async def _thin_batch(
    conn: psycopg.AsyncConnection[Any],
    producer: AIOKafkaProducer,
    table: str,
    topic: str,
    partitions: list[int],
    records: list[Any],
) -> None:
    rows, results = [], []
    for record in records:
        request_id = orjson.loads(record.value)["requestId"]
        rows.append((UUID(request_id), record.value))
        results.append(
            (
                record.partition,
                request_id.encode(),
                orjson.dumps({"requestId": request_id, "code": 0}),
            )
        )
    async with conn.cursor() as cursor:
        copy_in = f"COPY {table} (request_id, body) FROM STDIN (FORMAT BINARY)"
        async with cursor.copy(copy_in) as copy:
            copy.set_types(["uuid", "bytea"])
            for row in rows:
                await copy.write_row(row)
    await conn.commit()
    placed = [(partitions[source % len(partitions)], key, value) for source, key, value in results]
    await asyncio.gather(*await send_in_record_batches(producer, topic, placed))
