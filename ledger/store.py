"""Batch reads the write path needs, one query per batch, for each kind of store.

eventsourcing reads one stream per call. A batch of thousands of commands needs
three questions answered for many streams at once: which requestIds already
have a record, which cached books moved on (another process wrote), and which
notification id (global sequence) a recorded event got. PostgreSQL answers
each with one indexed query; the in-memory store answers from its own index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import orjson
from eventsourcing.persistence import ApplicationRecorder, StoredEvent, Transcoder
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Literal

__all__ = [
    "BinaryInsertRecorder",
    "OrjsonTranscoder",
    "StoreQueries",
    "queries_for",
    "stored_event",
]

Ref = tuple[UUID, int]


class OrjsonTranscoder(Transcoder):
    """Event state as compact JSON, written by orjson (several times faster than json).

    The ledger's events hold only strings, integers, booleans, lists and
    dicts, plus eventsourcing's `timestamp`, which orjson writes as ISO 8601
    and which is read back into a datetime here.
    """

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def decode(self, data: bytes) -> Any:
        obj = orjson.loads(data)
        if isinstance(obj, dict) and isinstance(obj.get("timestamp"), str):
            obj["timestamp"] = datetime.fromisoformat(obj["timestamp"])
        return obj


def stored_event(event: Any) -> StoredEvent:
    """What eventsourcing's `Mapper.to_stored_event` makes of a ledger event with the
    `OrjsonTranscoder` and neither compressor nor cipher: the same topic and the same
    bytes (tests/unit/test_stored_rows.py), for less. The write path stores two events
    a command; the ledger refuses a store configured with compression or encryption.
    """
    state = dict(vars(event))
    originator_id = state.pop("originator_id")
    version = state.pop("originator_version")
    return StoredEvent(originator_id, version, get_topic(type(event)), orjson.dumps(state))


class StoreQueries(Protocol):
    def first_events(self, stream_ids: Sequence[UUID]) -> dict[UUID, StoredEvent]:
        """The version-1 event of each stream that has one."""

    def events_after(self, versions: dict[UUID, int]) -> list[StoredEvent]:
        """Every event newer than the given version of its stream, in stream order."""

    def sequences(self, refs: Iterable[Ref]) -> dict[Ref, int]:
        """The notification id (global sequence) of each recorded (stream, version)."""


class GenericQueries:
    """Any recorder: one call per stream. Used with the in-memory store."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self.recorder = recorder

    def first_events(self, stream_ids: Sequence[UUID]) -> dict[UUID, StoredEvent]:
        found: dict[UUID, StoredEvent] = {}
        for stream_id in stream_ids:
            events = self.recorder.select_events(stream_id, lte=1, limit=1)
            if events:
                found[stream_id] = events[0]
        return found

    def events_after(self, versions: dict[UUID, int]) -> list[StoredEvent]:
        newer: list[StoredEvent] = []
        for stream_id, version in versions.items():
            newer.extend(self.recorder.select_events(stream_id, gt=version))
        return newer

    def sequences(self, refs: Iterable[Ref]) -> dict[Ref, int]:
        # The in-memory recorder keeps (stream -> version -> list index); the
        # notification id is that index plus one.
        index: dict[str, dict[int, int]] = self.recorder._stored_events_index  # type: ignore[attr-defined]
        return {ref: index[str(ref[0])][ref[1]] + 1 for ref in refs if ref[1] in index[str(ref[0])]}


class PostgresQueries:
    """One statement per question against the application's events table."""

    def __init__(self, recorder: Any) -> None:
        self.datastore = recorder.datastore
        table = f'"{self.datastore.schema}"."{recorder.events_table_name}"'
        self.sql_first = (
            "SELECT originator_id, originator_version, topic, state FROM " + table + " "
            "WHERE originator_id = ANY(%s) AND originator_version = 1"
        )
        # LATERAL makes every stream one parameterised primary-key range scan; a plain
        # JOIN against unnest() let the planner pick a scan of the whole table once it
        # grew (61 ms at 4*10^5 events instead of well under 1 ms).
        self.sql_after = (
            "SELECT e.originator_id, e.originator_version, e.topic, e.state "
            "FROM unnest(%s::uuid[], %s::bigint[]) AS c(id, v) CROSS JOIN LATERAL ("
            "SELECT originator_id, originator_version, topic, state FROM " + table + " "
            "WHERE originator_id = c.id AND originator_version > c.v "
            "ORDER BY originator_version) AS e "
            "ORDER BY e.originator_id, e.originator_version"
        )
        self.sql_sequences = (
            "SELECT c.id AS originator_id, c.v AS originator_version, e.notification_id "
            "FROM unnest(%s::uuid[], %s::bigint[]) AS c(id, v) CROSS JOIN LATERAL ("
            "SELECT notification_id FROM " + table + " "
            "WHERE originator_id = c.id AND originator_version = c.v) AS e"
        )

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        # One statement on the pool's autocommit connection: its own snapshot and one
        # round trip. Inside `datastore.transaction` it also paid a BEGIN and a ROLLBACK:
        # 0.52 against 0.12 ms for a SELECT 1, and every batch asks at least once.
        with self.datastore.get_connection() as conn:
            rows: list[Any] = conn.execute(sql, params, prepare=True).fetchall()
            return rows

    @staticmethod
    def _stored(row: Any) -> StoredEvent:
        return StoredEvent(
            originator_id=row["originator_id"],
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )

    def first_events(self, stream_ids: Sequence[UUID]) -> dict[UUID, StoredEvent]:
        if not stream_ids:
            return {}
        rows = self._rows(self.sql_first, (list(stream_ids),))
        return {row["originator_id"]: self._stored(row) for row in rows}

    def events_after(self, versions: dict[UUID, int]) -> list[StoredEvent]:
        if not versions:
            return []
        rows = self._rows(self.sql_after, (list(versions), list(versions.values())))
        return [self._stored(row) for row in rows]

    def sequences(self, refs: Iterable[Ref]) -> dict[Ref, int]:
        refs = list(refs)
        if not refs:
            return {}
        rows = self._rows(self.sql_sequences, ([r[0] for r in refs], [r[1] for r in refs]))
        return {
            (row["originator_id"], row["originator_version"]): row["notification_id"]
            for row in rows
        }


def queries_for(recorder: ApplicationRecorder) -> StoreQueries:
    if isinstance(recorder, PostgresApplicationRecorder):
        return PostgresQueries(recorder)
    return GenericQueries(recorder)


class BinaryInsertRecorder(PostgresApplicationRecorder):
    """eventsourcing's PostgreSQL recorder, inserting with four binary arrays.

    The stock recorder sends one array of a composite type in text format,
    which psycopg escapes with regular expressions: a quarter of the write
    path's CPU in our measurements. Four parallel arrays in binary format carry
    the same rows at a fraction of that cost. Locking, NOTIFY, the returned
    notification ids and the IntegrityError on a duplicate (stream, version)
    stay the library's own; writers are serialised by an advisory lock instead of
    the library's table lock (see `writers_lock_key`).
    """

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        # No JIT compilation in the write path's sessions. When the planner's estimates
        # are high (a table that grew faster than autovacuum analyses it: 10^6 events
        # in a minute), PostgreSQL compiled the batch's lookups, which answer in a
        # fraction of a millisecond, for 35-70 ms each time: the cost per 1,000
        # commands went from 73 to 122 ms at 10^6 events. With jit off: 83 ms.
        # The pool opens on first use, so every one of its connections gets this.
        pool = datastore.pool
        pool.kwargs = {**(pool.kwargs or {}), "options": "-c jit=off"}
        assert pool.closed, "set before the pool's first connection"
        super().__init__(datastore, events_table_name=events_table_name)
        table = f'"{self.datastore.schema}"."{self.events_table_name}"'
        self.insert_arrays_statement = (
            "INSERT INTO " + table + " (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        )
        # Writers take turns as with the library's lock: the lock is taken before the
        # insert draws its notification ids and held until the commit is visible, so
        # ids commit in order. But `LOCK TABLE ... IN EXCLUSIVE MODE` also conflicts
        # with autovacuum and autoanalyze (SHARE UPDATE EXCLUSIVE): a writer queued
        # behind one until PostgreSQL cancelled it after deadlock_timeout (1 s). Seen
        # in `make bench`: one batch's core took 1,073 ms at 5,000 commands/s, the
        # server logging "canceling autovacuum task" on the events table.
        assert len(self.lock_table_statements) == 2, "eventsourcing: lock_timeout, LOCK TABLE"
        self.lock_table_statements = [
            self.lock_table_statements[0],  # SET LOCAL lock_timeout, as before
            SQL("SELECT pg_advisory_xact_lock({0})").format(Literal(self.writers_lock_key)),
        ]

    def _insert_stored_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **_: Any
    ) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self.insert_arrays_statement,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
            prepare=True,
        )

    @property
    def writers_lock_key(self) -> int:
        """The advisory lock that serialises the writers of this events table: a
        signed 64-bit key from its qualified name (one lock per store).

        A writer of an older release (the library's EXCLUSIVE table lock) still takes
        turns with this one: its lock conflicts with the ROW EXCLUSIVE lock every
        INSERT takes, in both directions, until commit.
        """
        name = f"ledger-writers:{self.datastore.schema}.{self.events_table_name}"
        return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
