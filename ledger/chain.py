"""Tamper evidence: every event is hash-chained, and every batch is sealed.

- Each event carries `hash` = SHA-256 over a canonical encoding of (the hash of
  the previous event of its stream, its topic, stream id, version, timestamp and
  every other field). Editing an event, or removing, inserting or reordering
  events inside a stream, breaks the chain of that stream.
- Each transaction the ledger writes ends with a `BatchSealed` event in the
  writer's own seal stream: the number of events the transaction wrote before it
  and a digest over their hashes in log order, chained to the writer's previous
  seal. Because a transaction's events are contiguous in the log (writers take
  turns on the store's lock while inserting), a verifier walking the log checks that
  exactly the events since the previous seal are the ones the seal counted:
  deleting, inserting or swapping events anywhere, across streams too, is
  detected. The newest seal hash is the anchor to publish outside the store.

Cost on the write path: one orjson encoding and one SHA-256 per event, and one
extra event per batch (measured in the README).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Self
from uuid import UUID

import orjson
from eventsourcing.domain import Aggregate, CanInitAggregate, DomainEvent
from eventsourcing.utils import get_topic

__all__ = [
    "GENESIS_HASH",
    "NOT_HASHED",
    "BatchSealed",
    "ChainedAggregate",
    "event_hash",
    "seal_digest",
]

GENESIS_HASH = "0" * 64

# Fields of a stored event's state that the hash does not cover as "fields":
# identity and time are hashed explicitly, the hash cannot cover itself, and the
# library adds the aggregate's topic to created events after the hash is made.
NOT_HASHED = frozenset(
    {"originator_id", "originator_version", "timestamp", "hash", "originator_topic"}
)


def event_hash(
    prev_hash: str,
    topic: str,
    stream_id: UUID,
    version: int,
    timestamp: datetime,
    fields: dict[str, Any],
) -> str:
    """SHA-256 (hex) of the canonical encoding of one event, chained to `prev_hash`.

    `at` is the timestamp's ISO 8601 text, which orjson writes for the datetime exactly
    as `isoformat()` does for the ledger's timezone-aware timestamps, at a tenth of its
    cost (tests/unit/test_chain.py holds this function to the plain reference encoding).
    Fields named in NOT_HASHED are left out.
    """
    if not NOT_HASHED.isdisjoint(fields):
        fields = {k: v for k, v in fields.items() if k not in NOT_HASHED}
    canonical = orjson.dumps(
        {
            "prev": prev_hash,
            "topic": topic,
            "stream": stream_id.hex,
            "version": version,
            "at": timestamp,
            "fields": fields,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


def seal_digest(hashes: Iterable[str]) -> str:
    """SHA-256 over the hashes of a transaction's events, in log order."""
    digest = hashlib.sha256()
    for value in hashes:
        digest.update(bytes.fromhex(value))
    return digest.hexdigest()


_COMMON_FIELDS = ("originator_id", "originator_version", "timestamp", "hash")


@functools.cache
def _own_fields(event_class: type) -> tuple[tuple[str, ...], frozenset[str]]:
    """The fields of a chained event after the four every event has, in declaration
    order and as a set."""
    names = [field.name for field in dataclasses.fields(event_class)]
    assert tuple(names[:4]) == _COMMON_FIELDS, names
    return tuple(names[4:]), frozenset(names[4:])


class ChainedAggregate(Aggregate):
    """An aggregate whose events carry `hash`, chained along its stream."""

    head_hash: str  # the hash of the newest event applied

    class Event(Aggregate.Event):
        hash: str

        def mutate(self, aggregate: Any) -> Any:
            mutated = super().mutate(aggregate)
            assert mutated is not None
            mutated.head_hash = self.hash
            return mutated

    class Created(Event, Aggregate.Created):
        def mutate(self, aggregate: Any) -> Any:
            created = CanInitAggregate.mutate(self, aggregate)
            assert created is not None
            created.head_hash = self.hash
            return created

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        """Trigger the next event of this aggregate, its hash chained to the head.

        When the arguments name exactly the event's own fields, the event is built the
        way eventsourcing's mapper builds the events it reads (its `__dict__` set at once,
        in field order), not through the frozen dataclass's `__init__`, which sets each
        field with `object.__setattr__`: every command triggers at least one. Otherwise
        (a field left to its default, a wrong name) the library's own path runs.
        """
        timestamp = kwargs.pop("timestamp", None) or event_class.create_timestamp()
        version = self.version + 1
        hash_ = event_hash(
            self.head_hash, get_topic(event_class), self.id, version, timestamp, kwargs
        )
        names, name_set = _own_fields(event_class)
        if len(kwargs) != len(names) or not name_set.issuperset(kwargs):
            super().trigger_event(event_class, timestamp=timestamp, hash=hash_, **kwargs)
            return
        state = {"originator_id": self.id, "originator_version": version}
        state["timestamp"], state["hash"] = timestamp, hash_
        for name in names:
            state[name] = kwargs[name]
        event = object.__new__(event_class)
        object.__setattr__(event, "__dict__", state)
        event.mutate(self)
        self.pending_events.append(event)

    @classmethod
    def _create(cls, event_class: Any, *, id: Any = None, **kwargs: Any) -> Self:
        if id is None:
            accepted = inspect.signature(cls.create_id).parameters
            id = cls.create_id(**{k: v for k, v in kwargs.items() if k in accepted})
        timestamp = kwargs.get("timestamp") or event_class.create_timestamp()
        kwargs["timestamp"] = timestamp
        kwargs["hash"] = event_hash(
            GENESIS_HASH, get_topic(event_class), id, cls.INITIAL_VERSION, timestamp, kwargs
        )
        return super()._create(event_class, id=id, **kwargs)


class BatchSealed(DomainEvent):
    """The last event of every transaction: what the transaction wrote before it.

    Lives in the writer's own stream (one per ledger process), chained by `prev`.
    """

    events: int
    digest: str
    prev: str
    hash: str

    @classmethod
    def record(cls, writer: UUID, version: int, prev: str, hashes: list[str]) -> BatchSealed:
        timestamp = cls.create_timestamp()
        fields = {"events": len(hashes), "digest": seal_digest(hashes), "prev": prev}
        make: Any = cls  # the metaclass makes a dataclass; mypy cannot see its fields
        sealed: BatchSealed = make(
            originator_id=writer,
            originator_version=version,
            timestamp=timestamp,
            hash=event_hash(prev, get_topic(cls), writer, version, timestamp, fields),
            **fields,
        )
        return sealed
