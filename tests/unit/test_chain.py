"""`event_hash` must give every event the hash it always had: stores written by earlier
releases are verified with it. Here it is held to the plain reference encoding."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import orjson
from hypothesis import given
from hypothesis import strategies as st

from ledger.chain import NOT_HASHED, event_hash


def reference_hash(
    prev: str, topic: str, stream_id: UUID, version: int, at: datetime, fields: dict[str, Any]
) -> str:
    canonical = orjson.dumps(
        {
            "prev": prev,
            "topic": topic,
            "stream": stream_id.hex,
            "version": version,
            "at": at.isoformat(),
            "fields": {k: v for k, v in fields.items() if k not in NOT_HASHED},
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


offsets = st.one_of(
    st.just(UTC),
    st.integers(min_value=-23 * 60, max_value=23 * 60).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    ),
)
timestamps = st.builds(
    lambda moment, tz: moment.replace(tzinfo=tz),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)),
    offsets,
)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
names = st.sampled_from([*sorted(NOT_HASHED), "amount_minor", "balances", "txn_id"]) | st.text()


@given(
    st.text(),
    st.text(),
    st.uuids(),
    st.integers(min_value=1, max_value=2**63 - 1),
    timestamps,
    st.dictionaries(names, values, max_size=6),
)
def test_event_hash_is_the_reference_encoding(
    prev: str,
    topic: str,
    stream_id: UUID,
    version: int,
    at: datetime,
    fields: dict[str, Any],
) -> None:
    expected = reference_hash(prev, topic, stream_id, version, at, fields)
    assert event_hash(prev, topic, stream_id, version, at, fields) == expected


def test_a_known_hash_never_changes() -> None:
    at = datetime(2026, 12, 4, 23, 42, 51, 257270, tzinfo=UTC)
    stream_id = UUID("12345678-1234-5678-1234-567812345678")
    fields = {"request_id": "r-1", "balances": {"b": 2, "a": 1}, "timestamp": at, "hash": "x"}
    assert event_hash("0" * 64, "ledger.book:AgentBook.Posted", stream_id, 7, at, fields) == (
        reference_hash("0" * 64, "ledger.book:AgentBook.Posted", stream_id, 7, at, fields)
    )
    # computed before orjson wrote `at` itself
    known = "9f23c521f7ddabf9ddd81f21d29edf786f6f4bdf5964e48a3f5ab635c18bf30f"
    assert event_hash("0" * 64, "t", stream_id, 1, at.replace(microsecond=0), {}) == known
