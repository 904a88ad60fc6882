"""Faults mid-run (issue 8): kill -9, PostgreSQL and Kafka restarts, a consumer-group member
leaving, duplicates and refunds that overtake their bets. Nothing lost, nothing doubled.

Every scenario streams a casino workload into the running service at a steady pace, injects
its faults while commands are still flowing, waits for every answer and then compares the
run with the reference model (`tests/unit/reference_model.py`): every requestId answered,
all of its answers identical apart from `duplicate`/`processedAtMs`, every answer and every
final balance as the reference says, no request applied twice in the store, the read model
caught up, and `audit verify` clean.

All of it runs on the suite's own Kafka and PostgreSQL (`tests/faults/dedicated.py`).
Two scales: `bounded` runs in `make test`; `full` (marker `faults_full`, `make test-faults`)
streams at least 20,000 commands per scenario and kills the service ten times.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import pytest

from ledger.commands import Bet, Command, Refund
from tests.bench.workload import World, casino_play, casino_world
from tests.e2e.harness import ServiceProcess, Stack
from tests.faults.dedicated import DedicatedServices
from tests.faults.figures import record
from tests.faults.harness import (
    KafkaClient,
    RunFigures,
    build_world,
    message,
    rid,
    verify_run,
    wait_views_caught_up,
)

pytestmark = pytest.mark.faults


@dataclass(frozen=True)
class Scale:
    name: str
    commands: int  # play commands per scenario (setup excluded)
    per_second: float  # pace of the stream: it lasts while the faults happen
    kills: int
    restarts: int  # PostgreSQL restarts, Kafka restarts
    answers_seconds_max: float


BOUNDED = Scale("bounded", 3_000, 300.0, 3, 1, 240.0)
FULL = Scale("full", 20_000, 500.0, 10, 2, 900.0)
SCALES = [
    pytest.param(BOUNDED, id="bounded", marks=pytest.mark.faults_bounded),
    pytest.param(FULL, id="full", marks=pytest.mark.faults_full),
]

CASINOS = 8
PLAYERS_PER_CASINO = 10
# The kill scenario sends its stream in slices, one per kill and a last one: each kill
# comes a random moment into its slice (at most KILL_AFTER_SECONDS_MAX), while the slice
# is still being sent, whatever a restart before it cost. A slice lasts at least
# SLICE_SECONDS_MIN at the scale's pace.
KILL_AFTER_SECONDS_MAX = 1.2
SLICE_SECONDS_MIN = 2.5


@dataclass
class Run:
    """One scenario's services, world and stream."""

    name: str
    scale: Scale
    stack: Stack
    client: KafkaClient
    services: list[ServiceProcess]
    world: World
    sent: list[Command]
    started: float

    @property
    def request_ids(self) -> set[str]:
        return {c.request_id for c in self.sent}

    def answered(self) -> int:
        return self.client.answered(self.request_ids)

    def in_flight(self) -> int:
        """Play commands sent but not answered yet: > 0 means the run is mid-stream."""
        ids = self.request_ids
        return len(ids) - self.client.answered(ids)

    def finish(self, faults: dict[str, int], agent_points_exact: bool = True) -> RunFigures:
        self.client.wait_paced(self.scale.answers_seconds_max)
        answers = self.client.wait_answered(self.request_ids, self.scale.answers_seconds_max)
        wait_views_caught_up(self.stack.database_url, self.stack.schema)
        figures = RunFigures(scenario=f"{self.name}[{self.scale.name}]", faults=faults)
        for service in self.services:
            assert service.process is not None
            figures.crashes += service.process.poll() is not None
            service.stop()
        figures.seconds = round(time.monotonic() - self.started, 1)
        verify_run(figures, self.stack, self.world, self.sent, answers, agent_points_exact)
        record(figures.scenario, figures)
        return figures


def start_run(
    name: str,
    scale: Scale,
    stack: Stack,
    client: KafkaClient,
    instances: int = 1,
    transfers: bool = False,
    shape: Callable[[list[Command], random.Random], list[Command]] | None = None,
    per_second: float | None = None,
    stream: bool = True,
) -> Run:
    """Start the services, build the world, and start streaming the play at the scale's pace
    (or `per_second`); with `stream=False` the caller sends `run.sent` itself."""
    started = time.monotonic()
    services = [stack.service() for _ in range(instances)]
    for service in services:
        service.start()
    planned = casino_world(casinos=CASINOS, players_per_casino=PLAYERS_PER_CASINO)
    world = build_world(client, planned)
    play: list[Command] = casino_play(world, scale.commands, seed=23, transfers=transfers)
    sent = shape(play, random.Random(29)) if shape is not None else play
    if stream:
        client.send_paced([message(c) for c in sent], per_second or scale.per_second)
    return Run(name, scale, stack, client, services, world, sent, started)


def mid_stream(run: Run, fraction: float, seconds_max: float = 120.0) -> None:
    """Wait until `fraction` of the stream has been answered (bounded)."""
    target = int(len(run.request_ids) * fraction)
    deadline = time.monotonic() + seconds_max
    while run.answered() < target:
        assert time.monotonic() < deadline, f"{run.answered()} of {target} answered"
        time.sleep(0.05)


@pytest.mark.parametrize("scale", SCALES)
def test_kill_minus_nine_at_random_points_loses_nothing_and_applies_nothing_twice(
    scale: Scale, stack: Stack, client: KafkaClient
) -> None:
    run = start_run("kill -9", scale, stack, client, stream=False)
    service = run.services[0]
    size = len(run.sent) // (scale.kills + 1)
    assert size >= SLICE_SECONDS_MIN * scale.per_second, "a slice outlasts its kill's moment"
    slices = [run.sent[n * size : (n + 1) * size] for n in range(scale.kills)]
    rng = random.Random(31)
    kills_mid_stream = 0
    for piece in slices:
        client.send_paced([message(c) for c in piece], scale.per_second)
        time.sleep(rng.uniform(0.1, KILL_AFTER_SECONDS_MAX))
        kills_mid_stream += not client.pacing_done.is_set()  # its slice is still being sent
        service.kill()
        service.start()
        client.wait_paced(scale.answers_seconds_max)
    client.send_paced([message(c) for c in run.sent[scale.kills * size :]], scale.per_second)

    figures = run.finish({"kill -9": scale.kills})

    assert kills_mid_stream == scale.kills, "every kill came while commands were in flight"
    assert figures.clean


def restarts_mid_run(
    name: str, restart: Callable[[], None], scale: Scale, stack: Stack, client: KafkaClient
) -> None:
    """Stream the play, `restart` a server `scale.restarts` times while commands are in
    flight, and judge the run."""
    run = start_run(name, scale, stack, client)
    in_flight = []
    for n in range(scale.restarts):
        mid_stream(run, (n + 1) / (scale.restarts + 2))
        in_flight.append(run.in_flight())
        restart()

    figures = run.finish({name: scale.restarts})

    assert all(n > 0 for n in in_flight), in_flight
    assert figures.clean


@pytest.mark.parametrize("scale", SCALES)
def test_postgresql_restarts_mid_run_lose_nothing_and_apply_nothing_twice(
    scale: Scale, stack: Stack, client: KafkaClient, dedicated: DedicatedServices
) -> None:
    restart = partial(dedicated.restart_postgres, down_seconds=2.0)
    restarts_mid_run("postgresql restart", restart, scale, stack, client)


@pytest.mark.parametrize("scale", SCALES)
def test_kafka_broker_restarts_mid_run_lose_nothing_and_apply_nothing_twice(
    scale: Scale, stack: Stack, client: KafkaClient, dedicated: DedicatedServices
) -> None:
    restart = partial(dedicated.restart_kafka, down_seconds=2.0)
    restarts_mid_run("kafka restart", restart, scale, stack, client)


@pytest.mark.parametrize("scale", SCALES)
def test_group_members_leaving_and_dying_mid_run_end_like_a_single_instance(
    scale: Scale, stack: Stack, client: KafkaClient
) -> None:
    run = start_run("rebalance", scale, stack, client, instances=2, transfers=True)
    first, second = run.services
    events = [
        (0.2, second.stop, "member stopped"),
        (0.35, second.start, "member joined"),
        (0.5, first.kill, "member killed"),
        (0.65, first.start, "member joined"),
    ]
    if scale is BOUNDED:
        events = events[:2]
    faults: dict[str, int] = {}
    in_flight = []
    for fraction, act, what in events:
        mid_stream(run, fraction)
        in_flight.append(run.in_flight())
        act()
        faults[what] = faults.get(what, 0) + 1

    # A casino's points depend on how its commands interleave with transfers into it from
    # its operator (another partition): they are compared at the end only.
    figures = run.finish(faults, agent_points_exact=False)

    assert all(n > 0 for n in in_flight), in_flight
    assert figures.clean


def duplicates_and_overtaking_refunds(
    play: list[Command], rng: random.Random
) -> tuple[list[Command], dict[str, int]]:
    """The play as a platform under stress sends it: some refunds overtake their bets, some
    refunds are retried with a new requestId, and some messages are delivered twice (the
    copy somewhere later in the stream, so still after the original on its partition)."""
    shaped: list[Command] = []
    counts = {"refund overtaking its bet": 0, "refund retried": 0, "delivered twice": 0}
    n = 0
    while n < len(play):
        command = play[n]
        after = play[n + 1] if n + 1 < len(play) else None
        refunded = isinstance(after, Refund) and after.txn_id == getattr(command, "txn_id", None)
        if isinstance(command, Bet) and isinstance(after, Refund) and refunded:
            pair = [after, command] if rng.random() < 0.6 else [command, after]
            counts["refund overtaking its bet"] += pair[0] is after
            shaped.extend(pair)
            if rng.random() < 0.5:
                shaped.append(replace(after, request_id=rid()))
                counts["refund retried"] += 1
            n += 2
            continue
        shaped.append(command)
        n += 1
    twice = rng.sample(range(len(shaped)), len(shaped) // 20)
    for index in sorted(twice, reverse=True):
        later = rng.randint(index + 1, len(shaped))
        shaped.insert(later, shaped[index])
    counts["delivered twice"] = len(twice)
    return shaped, counts


@pytest.mark.parametrize("scale", SCALES)
def test_duplicates_and_refunds_that_overtake_their_bets_are_answered_as_the_reference_says(
    scale: Scale, stack: Stack, client: KafkaClient
) -> None:
    counts: dict[str, int] = {}

    def shape(play: list[Command], rng: random.Random) -> list[Command]:
        shaped, made = duplicates_and_overtaking_refunds(play, rng)
        counts.update(made)
        return shaped

    run = start_run("duplicates and overtaking refunds", scale, stack, client, shape=shape)
    figures = run.finish(counts)

    assert counts["refund overtaking its bet"] > 0 and counts["delivered twice"] > 0
    assert figures.messages > figures.commands  # the copies were sent and answered
    assert figures.clean
