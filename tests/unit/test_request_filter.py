"""RequestFilter: no false negatives, and about as few false positives as theory says."""

from __future__ import annotations

import math
from uuid import NAMESPACE_URL, uuid4, uuid5

from ledger.domain import RequestHandled
from ledger.seen import RequestFilter

BITS = 1 << 20
ADDED = 20_000
NEVER_ADDED = 200_000


def test_every_added_request_stream_is_met_and_few_others_are() -> None:
    met = RequestFilter(BITS)
    added = [RequestHandled.stream_id(f"{n:08d}-0000-4000-8000-000000000000") for n in range(ADDED)]
    for stream_id in added:
        met.add(stream_id)
    assert all(stream_id in met for stream_id in added)
    others = [uuid5(NAMESPACE_URL, f"never-{n}") for n in range(NEVER_ADDED)]
    false_positives = sum(stream_id in met for stream_id in others)
    expected = NEVER_ADDED * (1 - math.exp(-2 * ADDED / BITS)) ** 2  # two probes: ~282
    assert 0.5 * expected < false_positives < 1.5 * expected, (false_positives, expected)


def test_an_empty_filter_has_met_nothing() -> None:
    met = RequestFilter(BITS)
    assert not any(uuid4() in met for _ in range(10_000))
