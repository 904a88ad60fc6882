"""The ledger end to end: `ledger run` processes, Kafka in, PostgreSQL (fsync on), Kafka out.

1. `prepare`: the world's setup through a running service (waves), then the service
   stops and the play commands are preloaded into the commands topic, so that the
   producer is never the bottleneck.
2. `sustained`: the service starts on the preloaded topic; from the first command
   consumed (the earliest `processedAtMs`, taken as the first batch starts) to the last
   result read back, and on until the views reach the store's last event.
3. `latency_at`: fresh play commands at a fixed offered load; latency = the result's
   arrival at our reader minus the command's send time (its `timestampMs`).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.bounds import PROJECTIONS_WAIT_SECONDS_MAX, RESULTS_WAIT_SECONDS_MAX
from bench.kafka import (
    Offsets,
    Pacer,
    ResultReader,
    Sender,
    build_world,
    codes_of,
    now_ms,
    topic_offsets,
)
from bench.service import Service
from bench.simulate import Player, World, play
from bench.stats import child_pids, cpu_seconds, percentile
from ledger.commands import Command
from ledger.gc_pause import collector_paused

__all__ = [
    "Latency",
    "Prepared",
    "Sustained",
    "latency_at",
    "prepare",
    "store_counter",
    "sustained",
]


@dataclass
class Prepared:
    """The preloaded play commands and where they sit in the commands topic."""

    world: World
    user_codes: dict[Player, int]
    commands: list[Command]
    more: Iterator[Command]  # the same play, continued (for the latency points)
    start: Offsets
    end: Offsets
    setup_events: int  # the store's last notification id after the setup
    sustained_events: int = 0  # ... and after the sustained run


@dataclass
class Sustained:
    commands: int
    seconds: float
    commands_per_s: float
    events: int
    events_per_s: float
    projections_seconds: float | None
    projections_commands_per_s: float | None
    projections_lag_ms: float | None  # after the last result
    statuses: dict[str, int]
    cpu_seconds: dict[str, float]


@dataclass
class Latency:
    offered_per_s: float
    sent: int
    achieved_per_s: float
    latency_ms_p50: float | None
    latency_ms_p99: float | None
    latency_ms_max: float | None
    to_processing_ms_p50: float | None  # send -> the batch starts (queueing, fetch)
    to_processing_ms_p99: float | None
    unanswered: int


async def prepare(
    sender: Sender,
    reader: ResultReader,
    service: Service,
    world: World,
    seed: int,
    commands_total: int,
    store_events: Callable[[], int],
) -> Prepared:
    await asyncio.to_thread(service.start)
    try:
        user_codes = await build_world(world, sender, reader)
    finally:
        await asyncio.to_thread(service.stop)
    more = play(world, user_codes, seed)
    commands = list(itertools.islice(more, commands_total))
    start = await topic_offsets(sender.bootstrap, sender.topic)
    await sender.send_all(commands)
    await sender.flush()
    end = await topic_offsets(sender.bootstrap, sender.topic)
    assert sum(end.values()) - sum(start.values()) == len(commands)
    return Prepared(world, user_codes, commands, more, start, end, store_events())


async def sustained(
    prepared: Prepared,
    reader: ResultReader,
    service: Service,
    cpu_pids: dict[str, Callable[[], list[int]]],
    store_events: Callable[[], int],
    view_position: Callable[[], int] | None,
    on_started: Callable[[int], None] | None = None,
) -> Sustained:
    """Start the service on the preloaded topic and time it to the last result.
    `cpu_pids` name the processes whose CPU time is reported (looked up when sampled);
    `on_started` gets the service's pid as soon as it is ready (e.g. to profile it)."""
    reader.reset()
    count = len(prepared.commands)
    cpu_pids = {
        "ledger": lambda: [service.pid],
        # The projector (and API) of `ledger run` run in a child process of the service.
        "ledger read side": lambda: child_pids(service.pid),
        **cpu_pids,
    }
    await asyncio.to_thread(service.start)
    if on_started is not None:
        on_started(service.pid)
    cpu_before = {name: cpu_seconds(pids()) for name, pids in cpu_pids.items()}
    if not await reader.wait_for_count(count, RESULTS_WAIT_SECONDS_MAX):
        raise RuntimeError(f"only {reader.received} of {count} results arrived")
    first_ms = min(a.processed_at_ms for a in reader.arrivals.values())
    last_ms = reader.last_received_ms
    prepared.sustained_events = store_events()
    events = prepared.sustained_events - prepared.setup_events
    projected_ms = await _views_caught_up(store_events(), view_position)
    # Sampled once the views caught up: a projector behind the last result still had
    # work to do (its own and PostgreSQL's), and the others are idle meanwhile.
    cpu = {name: cpu_seconds(pids()) - cpu_before[name] for name, pids in cpu_pids.items()}
    seconds = (last_ms - first_ms) / 1000
    projections_seconds = None if projected_ms is None else (projected_ms - first_ms) / 1000
    return Sustained(
        commands=count,
        seconds=seconds,
        commands_per_s=count / seconds,
        events=events,
        events_per_s=events / seconds,
        projections_seconds=projections_seconds,
        projections_commands_per_s=None
        if projections_seconds is None
        else count / projections_seconds,
        projections_lag_ms=None if projected_ms is None else projected_ms - last_ms,
        statuses=codes_of(reader.arrivals, reader.arrivals),
        cpu_seconds=cpu,
    )


async def _views_caught_up(target: int, view_position: Callable[[], int] | None) -> float | None:
    """When (wall ms) the views reached notification `target`; None without views."""
    if view_position is None:
        return None
    deadline = time.monotonic() + PROJECTIONS_WAIT_SECONDS_MAX
    while time.monotonic() < deadline:
        if await asyncio.to_thread(view_position) >= target:
            return now_ms()
        await asyncio.sleep(0.02)
    raise RuntimeError("the projector did not catch up in time")


async def latency_at(
    offered_per_s: float,
    seconds: float,
    more: Iterator[Command],
    sender: Sender,
    reader: ResultReader,
) -> Latency:
    """Offer `offered_per_s` commands/s for `seconds`, then wait for every answer.

    The benchmark's own garbage collector is paused while it sends and reads: the
    sender and the reader share its event loop, and its full collections (65-117 ms
    each, walking the preloaded commands) stalled both, so the commands in flight then
    were timed late by as much (2026-12-05: three such pauses in one run of the 1,000/s
    and 5,000/s phases). The phase is bounded (`seconds` at `offered_per_s`), and its
    objects are freed by reference counting as before.
    """
    reader.reset()
    commands = list(itertools.islice(more, int(offered_per_s * seconds)))
    sent_ms: dict[str, float] = {}
    gc.collect()
    with collector_paused():
        started = time.perf_counter()
        await sender.send_all(commands, Pacer(offered_per_s), sent_ms)
        send_seconds = time.perf_counter() - started
        await sender.flush()
        missing = await reader.wait_for(sent_ms, RESULTS_WAIT_SECONDS_MAX)
    answered = [(reader.arrivals[r], at) for r, at in sent_ms.items() if r in reader.arrivals]
    latencies = [a.received_ms - at for a, at in answered]
    queueing = [a.processed_at_ms - at for a, at in answered]
    return Latency(
        offered_per_s=offered_per_s,
        sent=len(commands),
        achieved_per_s=len(commands) / send_seconds,
        latency_ms_p50=percentile(latencies, 50),
        latency_ms_p99=percentile(latencies, 99),
        latency_ms_max=percentile(latencies, 100),
        to_processing_ms_p50=percentile(queueing, 50),
        to_processing_ms_p99=percentile(queueing, 99),
        unanswered=len(missing),
    )


def store_counter(database_url: str, schema: str) -> Callable[[], int]:
    """A function that answers the store's last notification id."""

    def last() -> int:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
            row: Any = conn.execute(
                f'SELECT coalesce(max(notification_id), 0) FROM "{schema}".ledger_events'
            ).fetchone()
            return int(row[0])

    return last
