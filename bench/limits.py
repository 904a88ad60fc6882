"""What the hardware allows, on the same data: the ceilings the ledger is measured against.

- C: consuming the preloaded commands with aiokafka and doing nothing else.
- D: COPY (binary) of the very event rows the ledger wrote for those commands into a
  table shaped like its events table (same keys and indexes), one transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.kafka import Offsets, consume_range

__all__ = ["ConsumeRun", "CopyRun", "consume_only", "copy_events"]


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
