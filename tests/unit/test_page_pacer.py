"""The projector's pacing: large pages under load are spaced, small ones and backlogs are not."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.views import PagePacer

INTERVAL = 0.2
EVENTS_MIN = 100


def test_a_first_page_goes_at_once() -> None:
    assert PagePacer(INTERVAL, EVENTS_MIN).wait_seconds(now=5.0) == 0.0


def test_after_a_large_page_the_next_waits_for_the_interval_since_its_start() -> None:
    pacer = PagePacer(INTERVAL, EVENTS_MIN)
    pacer.page_done(10.0, EVENTS_MIN, full=False)
    assert pacer.wait_seconds(now=10.05) == pytest.approx(0.15)
    assert pacer.wait_seconds(now=10.2) == 0.0
    assert pacer.wait_seconds(now=11.0) == 0.0  # a quiet spell: at once


def test_after_a_small_page_the_next_goes_at_once() -> None:
    """A client writing one command at a time and reading it back never waits."""
    pacer = PagePacer(INTERVAL, EVENTS_MIN)
    pacer.page_done(10.0, EVENTS_MIN, full=False)
    pacer.page_done(10.2, EVENTS_MIN - 1, full=False)
    assert pacer.wait_seconds(now=10.21) == 0.0
    pacer.page_done(10.3, 0, full=False)  # an empty look after a notification
    assert pacer.wait_seconds(now=10.31) == 0.0


def test_after_a_full_page_the_backlog_goes_on_at_once() -> None:
    pacer = PagePacer(INTERVAL, EVENTS_MIN)
    pacer.page_done(10.0, 2000, full=True)
    assert pacer.wait_seconds(now=10.01) == 0.0


@given(
    pages=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=1.0),  # time since the page before
            st.integers(min_value=0, max_value=5000),  # events applied
            st.booleans(),  # full
        ),
        min_size=1,
        max_size=30,
    ),
    probe=st.floats(min_value=0.0, max_value=1.0),
)
def test_the_wait_is_bounded_by_the_interval_and_only_follows_a_large_partial_page(
    pages: list[tuple[float, int, bool]], probe: float
) -> None:
    pacer = PagePacer(INTERVAL, EVENTS_MIN)
    started = 0.0
    for gap, events, full in pages:
        started += gap
        pacer.page_done(started, events, full=full)
    _, events, full = pages[-1]
    wait = pacer.wait_seconds(now=started + probe)
    assert 0.0 <= wait <= INTERVAL + 1e-9  # float sums of monotonic readings
    if events >= EVENTS_MIN and not full:
        assert wait == pytest.approx(max(0.0, INTERVAL - probe))
    else:
        assert wait == 0.0
