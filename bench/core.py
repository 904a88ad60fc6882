"""The core on PostgreSQL, without Kafka: replay rates, and cost as the store grows.

- `replay`: what `ledger replay` does, in a fresh views schema: rebuild every view
  from the whole store and swap it in (when the projector is importable); and stream
  the store through `ledger audit verify`.
- `growth`: `Ledger.handle_batch` in one process and one fresh schema per store size;
  each bulk-loaded in batches of BULK_BATCH_COMMANDS up to its size, then the sizes
  take turns at GROWTH_SAMPLE_BATCHES timed batches of GROWTH_SAMPLE_COMMANDS commands.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from typing import Any

import psycopg

from bench.bounds import (
    BULK_BATCH_COMMANDS,
    GROWER_STOP_SECONDS_MAX,
    GROWTH_LOAD_SECONDS_MAX,
    GROWTH_SAMPLE_BATCHES,
    GROWTH_SAMPLE_COMMANDS,
    RESULTS_WAIT_SECONDS_MAX,
)
from bench.simulate import Player, Shape, World, build_world, deposits, play
from ledger.application import Ledger
from ledger.audit import verify
from ledger.commands import Command, CreateUser
from ledger.settings import store_env

__all__ = ["GrowthPoint", "Replay", "growth", "replay"]

EVENTS_PER_COMMAND_GUESS = 2  # only to stop bulk-loading short of a target size


@dataclass
class Replay:
    events: int
    projections_seconds: float | None
    projections_events_per_s: float | None
    audit_seconds: float
    audit_events_per_s: float
    audit_findings: int


@dataclass
class GrowthPoint:
    store_events: int  # when the timed batches started
    ms_per_1000_commands: float  # all timed batches: their time over their commands
    ms_per_1000_commands_median: float  # the median batch
    ms_per_1000_commands_max: float  # the slowest batch
    commands_per_s: float  # from ms_per_1000_commands
    bulk_commands_per_s: float | None  # while bulk-loading up to this size


def replay(
    database_url: str,
    schema: str,
    rebuild_views: Callable[[Ledger, str], int] | None,
) -> Replay:
    """Replay rates over the whole store of `schema`."""
    ledger = Ledger(store_env(database_url, schema, pool_size=1))
    try:
        events = ledger.recorder.max_notification_id() or 0
        projections_seconds = None
        if rebuild_views is not None:
            views_schema = f"{schema}_replay"
            started = time.perf_counter()
            position = rebuild_views(ledger, views_schema)
            projections_seconds = time.perf_counter() - started
            assert position == events, (position, events)
            _drop_schema(database_url, views_schema)
        started = time.perf_counter()
        report = verify(ledger.recorder, ledger.mapper.transcoder)
        audit_seconds = time.perf_counter() - started
    finally:
        ledger.close()
    return Replay(
        events=events,
        projections_seconds=projections_seconds,
        projections_events_per_s=None
        if projections_seconds is None
        else events / projections_seconds,
        audit_seconds=audit_seconds,
        audit_events_per_s=events / audit_seconds,
        audit_findings=len(report.findings),
    )


def growth(
    database_url: str, schema: str, sizes: tuple[int, ...], shape: Shape
) -> list[GrowthPoint]:
    """ms per 1,000 commands at each store size (events), timed in turns.

    Each size gets a process of its own, as a ledger service has (the objects the
    benchmark's earlier phases left in this one would make every garbage collection of
    the core's batches walk them too), and a schema of its own, bulk-loaded one size
    after the other. Then the sizes take turns, one timed batch each, in alternating
    order, so that the machine's drift falls on all of them alike: on these shared
    cores the same 10^4 point measured 77-79 ms per 1,000 commands before a 10^6 load
    and 85-87 ms after it, in the same hour; timed one after the other, the sizes
    compared the machine's moments as much as the store's sizes.
    """
    spawn = multiprocessing.get_context("spawn")
    growers: list[tuple[Connection, SpawnProcess]] = []
    try:
        for n, size in enumerate(sorted(sizes)):
            ours, theirs = spawn.Pipe()
            process = spawn.Process(
                target=_grower,
                args=(theirs, database_url, f"{schema}{n}", size, shape),
                daemon=True,
            )
            process.start()
            growers.append((ours, process))
        loaded: list[tuple[int, float | None]] = []
        for ours, _ in growers:  # one at a time: each bulk rate is its own
            ours.send("load")
            loaded.append(_answer(ours, GROWTH_LOAD_SECONDS_MAX))
        timed_ms: list[list[float]] = [[] for _ in growers]
        for turn in range(GROWTH_SAMPLE_BATCHES):
            order = range(len(growers)) if turn % 2 == 0 else reversed(range(len(growers)))
            for n in order:
                growers[n][0].send("batch")
                timed_ms[n].append(_answer(growers[n][0], RESULTS_WAIT_SECONDS_MAX))
        return [
            _point(events, rate, ms) for (events, rate), ms in zip(loaded, timed_ms, strict=True)
        ]
    finally:
        for ours, process in growers:
            with contextlib.suppress(OSError):
                ours.send("stop")
            process.join(GROWER_STOP_SECONDS_MAX)
            if process.is_alive():
                process.kill()


def _answer(ours: Connection, seconds_max: float) -> Any:
    if not ours.poll(seconds_max):
        raise TimeoutError(f"a growth process did not answer in {seconds_max} s")
    kind, value = ours.recv()
    if kind == "error":
        raise RuntimeError(f"a growth process failed:\n{value}")
    return value


def _point(events: int, bulk_commands_per_s: float | None, timed_ms: list[float]) -> GrowthPoint:
    mean_ms = statistics.fmean(timed_ms)  # batches of equal size: total time / commands
    return GrowthPoint(
        store_events=events,
        ms_per_1000_commands=mean_ms,
        ms_per_1000_commands_median=statistics.median(timed_ms),
        ms_per_1000_commands_max=max(timed_ms),
        commands_per_s=1000 * 1000 / mean_ms,
        bulk_commands_per_s=bulk_commands_per_s,
    )


def _grower(theirs: Connection, database_url: str, schema: str, size: int, shape: Shape) -> None:
    """One store size: on "load", bulk-load a fresh schema up to `size` events; on
    "batch", time one batch of GROWTH_SAMPLE_COMMANDS; on "stop", end. Every answer is
    ("ok", value) or ("error", traceback)."""
    try:
        assert theirs.recv() == "load"
        _drop_schema(database_url, schema)
        ledger = Ledger(store_env(database_url, schema, pool_size=2))
    except Exception:
        theirs.send(("error", traceback.format_exc()))
        return
    try:
        world = build_world(7, shape, prefix="G")
        commands = play(world, _setup(ledger, world), seed=7)
        theirs.send(("ok", _load(ledger, commands, size)))
        while theirs.recv() == "batch":
            batch = list(itertools.islice(commands, GROWTH_SAMPLE_COMMANDS))
            started = time.perf_counter()
            ledger.handle_batch(batch)
            theirs.send(("ok", (time.perf_counter() - started) * 1000 * 1000 / len(batch)))
    except Exception:
        theirs.send(("error", traceback.format_exc()))
    finally:
        ledger.close()


def _setup(ledger: Ledger, world: World) -> dict[Player, int]:
    """The world's setup through the core, wave by wave; returns the userCodes."""
    codes: dict[tuple[str, str], int] = {}
    for wave in world.waves:
        for command, result in zip(wave, _run(ledger, wave), strict=True):
            assert result.code == 0, result
            if isinstance(command, CreateUser):
                assert result.user_code is not None
                codes[(command.agent_code, command.name)] = result.user_code
    user_codes = {p: codes[(p.agent_code, p.name)] for p in world.players}
    assert all(r.code == 0 for r in _run(ledger, deposits(world, user_codes)))
    return user_codes


def _run(ledger: Ledger, commands: list[Command]) -> list[Any]:
    results = []
    for start in range(0, len(commands), BULK_BATCH_COMMANDS):
        results.extend(ledger.handle_batch(commands[start : start + BULK_BATCH_COMMANDS]))
    return results


def _load(ledger: Ledger, commands: Any, size: int) -> tuple[int, float | None]:
    """Bulk-load the store short of `size` events by what the timed batches will add;
    returns the store's events then and the bulk rate (commands/s)."""
    events = ledger.recorder.max_notification_id() or 0
    bulk_commands, bulk_seconds = 0, 0.0
    sample_events = GROWTH_SAMPLE_BATCHES * GROWTH_SAMPLE_COMMANDS * EVENTS_PER_COMMAND_GUESS
    for _ in range(size // BULK_BATCH_COMMANDS + 1):  # each batch adds ~2 events per command
        if events + sample_events >= size:
            break
        batch = list(itertools.islice(commands, BULK_BATCH_COMMANDS))
        started = time.perf_counter()
        ledger.handle_batch(batch)
        bulk_seconds += time.perf_counter() - started
        bulk_commands += len(batch)
        events = ledger.recorder.max_notification_id() or 0
    return events, bulk_commands / bulk_seconds if bulk_seconds else None


def _drop_schema(database_url: str, schema: str) -> None:
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
