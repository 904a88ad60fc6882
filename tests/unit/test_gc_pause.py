"""`collector_paused`: batches run without the cyclic collector, which always resumes."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator

import pytest

from ledger.gc_pause import collector_paused, freeze_survivors


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


def test_the_collector_is_paused_inside_and_resumes_after() -> None:
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_it_resumes_after_an_exception() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("a failed batch")
    assert gc.isenabled()


def test_nested_pauses_resume_when_the_outer_one_ends() -> None:
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_pauses_of_two_threads_resume_when_the_last_ends() -> None:
    # The core's thread and the projector's thread may share a process: the first
    # pause to end must not turn the collector back on under the other.
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with collector_paused():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with collector_paused():
            second_in.set()
            first_out.wait(5)
            seen.append(gc.isenabled())

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == [False]
    assert gc.isenabled()


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_survivors_are_frozen_later_objects_are_not_and_frozen_ones_are_still_freed() -> None:
    alive = _Node()
    freed: list[str] = []
    watch = weakref.ref(alive, lambda _: freed.append("alive"))
    try:
        frozen = freeze_survivors()
        assert frozen == gc.get_freeze_count() > 0
        later = [_Node()]
        assert any(o is later for o in gc.get_objects())  # the collector still sees it
        assert not any(o is alive for o in gc.get_objects())  # frozen: out of sight
        del alive  # reference counting frees a frozen object like any other
        assert watch() is None and freed == ["alive"]
        first, second = _Node(), _Node()
        first.other, second.other = second, first  # a cycle made after the freeze
        cycle = weakref.ref(first)
        del first, second
        gc.collect()
        assert cycle() is None
    finally:
        gc.unfreeze()
