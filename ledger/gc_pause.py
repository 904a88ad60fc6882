"""Batches without pauses of the cyclic garbage collector.

A batch of the core or a page of the projector builds tens of thousands of objects
that all live until the batch ends (decoded events, results, history rows). CPython
counts every allocation of a container: young collections run every 700 of them and
walk the batch's survivors again and again, and each batch's survivors push the
oldest generation past the threshold of a full collection. Measured on a page of
10,000 events: decoding took 9.1 µs per event with the collector on, 3.2 µs with it
paused. Nothing in a batch depends on the collector: its objects are freed by
reference counting when the batch ends, and any cycle is collected once it resumes.

Pauses nest and may overlap across threads (the core's thread and the projector's
thread share a process in tests): the collector resumes when the last one ends, and
only if it was running when the first began.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]

_lock = threading.Lock()
_depth = 0
_resume = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause automatic garbage collection for the duration of the block."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
