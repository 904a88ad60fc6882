"""Overload (issue 8): commands arriving ten times faster than the ledger applies them, and
HTTP callers at ten times the per-agent in-flight limit.

Kafka: a burst produced as fast as the producer can, against a running service: the lag
(commands sent and not answered yet) grows, then drains to zero; nothing is lost (every
answer and balance as the reference model says); the service's memory stays bounded
(its RSS, read from /proc/<pid>/status): the backlog waits in Kafka, not in the process.

HTTP: 500 requests of one agent at once (ten times its limit of 50 in flight): 50 are
served, 450 answered 1018 / 429 at once, no 5xx; another agent is served meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from ledger import commands as c
from projections.bounds import IN_FLIGHT_PER_AGENT_MAX
from tests.bench.workload import casino_play, casino_world
from tests.e2e.harness import Stack
from tests.faults.dedicated import DedicatedServices
from tests.faults.figures import record
from tests.faults.harness import (
    KafkaClient,
    ReadSide,
    RunFigures,
    build_world,
    message,
    rid,
    serve_hostile_world,
    verify_run,
)
from tests.integration.read_side import projector

pytestmark = pytest.mark.faults


@dataclass(frozen=True)
class LoadScale:
    name: str
    commands: int
    rss_max_mib: int  # the service's resident memory, at most
    drain_seconds_max: float
    # How much faster commands must arrive than they are applied. The full run holds
    # the issue's 10x; the bounded run inside `make test` shares 2 cores with the
    # producer, which then sends slower, so it asks for 5x (the lag-growth assertion
    # below is what shows the overload either way).
    overload_factor_min: float


BOUNDED = LoadScale("bounded", 40_000, 512, 120.0, 5.0)
FULL = LoadScale("full", 200_000, 1024, 300.0, 10.0)
SCALES = [
    pytest.param(BOUNDED, id="bounded", marks=pytest.mark.faults_bounded),
    pytest.param(FULL, id="full", marks=pytest.mark.faults_full),
]
SAMPLE_SECONDS = 0.25
# At the peak of the lag the service has taken few of the commands yet: if it held the
# backlog in memory its RSS would show it. Kafka's fetch buffers are the allowance.
BACKLOG_RSS_MIB_MAX = 128


def rss_mib(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS, kB)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.parametrize("scale", SCALES)
def test_commands_ten_times_faster_than_the_ledger_grow_the_lag_then_drain_in_bounded_memory(
    scale: LoadScale, stack: Stack, client: KafkaClient
) -> None:
    started = time.monotonic()
    service = stack.service()
    service.start()
    assert service.process is not None
    pid = service.process.pid
    world = build_world(client, casino_world(casinos=8, players_per_casino=10))
    play = casino_play(world, scale.commands, seed=47)
    burst = [message(command) for command in play]
    ids = {command.request_id for command in play}
    baseline_mib = rss_mib(pid)

    produce_seconds = client.send_burst(burst)
    produced_at = time.monotonic()
    samples: list[tuple[float, int, int]] = []  # (seconds since the burst, lag, RSS MiB)
    deadline = produced_at + scale.drain_seconds_max
    while True:
        lag = len(ids) - client.answered(ids)
        samples.append((time.monotonic() - produced_at + produce_seconds, lag, rss_mib(pid)))
        if lag == 0:
            break
        assert time.monotonic() < deadline, f"the lag stays at {lag}"
        assert service.process.poll() is None, "the service died under load"
        time.sleep(SAMPLE_SECONDS)
    drain_seconds = samples[-1][0]

    arrival_per_second = len(burst) / produce_seconds
    applied_per_second = len(burst) / drain_seconds
    lags = [lag for _, lag, _ in samples]
    peak_at = lags.index(max(lags))
    peak_rss = max(rss for _, _, rss in samples)
    assert arrival_per_second >= scale.overload_factor_min * applied_per_second
    assert max(lags) >= len(burst) // 2, "the lag did not grow"
    assert lags == sorted(lags, reverse=True), "the lag grew again after the burst"
    assert samples[peak_at][2] - baseline_mib <= BACKLOG_RSS_MIB_MAX, samples[peak_at]
    assert peak_rss <= scale.rss_max_mib

    answers = client.wait_answered(ids, 60)
    service.stop()
    figures = RunFigures(scenario=f"overload kafka[{scale.name}]", faults={"overload": 1})
    verify_run(figures, stack, world, play, answers)
    figures.seconds = round(time.monotonic() - started, 1)
    values = {
        **figures.__dict__,
        "arrival_per_second": round(arrival_per_second),
        "applied_per_second": round(applied_per_second),
        "overload_factor": round(arrival_per_second / applied_per_second, 1),
        "lag_peak": max(lags),
        "drain_seconds": round(drain_seconds, 1),
        "rss_baseline_mib": baseline_mib,
        "rss_at_lag_peak_mib": samples[peak_at][2],
        "rss_peak_mib": peak_rss,
    }
    record(figures.scenario, values)


# ------------------------------------------------------------------ HTTP

HTTP_CALLERS = 10 * IN_FLIGHT_PER_AGENT_MAX
HOLD_SECONDS_MAX = 20


@pytest.fixture
def busy_read_side(dedicated: DedicatedServices, fault_schema: str) -> Iterator[ReadSide]:
    """The API with a long minSequence wait: requests for an unreached sequence stay in
    flight until the views move."""
    with serve_hostile_world(dedicated.database_url, fault_schema, wait_ms=15_000) as served:
        yield served


async def _flood(read_side: ReadSide) -> tuple[list[tuple[float, int, int]], list[int], float]:
    """HTTP_CALLERS held requests of HC at once; returns (answers, other agent's statuses,
    when the views were moved)."""
    server, tokens = read_side.server, read_side.tokens
    limiter = server.runtime.limiter
    unreached = int(read_side.ledger.recorder.max_notification_id() or 0) + 1
    answers: list[tuple[float, int, int]] = []
    limits = httpx.Limits(max_connections=HTTP_CALLERS + 50, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as http:

        async def held() -> None:
            answer = await http.get(
                f"/v1/agents/HC?minSequence={unreached}",
                headers={"Authorization": f"Bearer {tokens['HC']}"},
            )
            answers.append((time.monotonic(), answer.status_code, answer.json()["code"]))

        requests = [asyncio.create_task(held()) for _ in range(HTTP_CALLERS)]
        deadline = time.monotonic() + HOLD_SECONDS_MAX
        busy = HTTP_CALLERS - IN_FLIGHT_PER_AGENT_MAX
        while len(answers) < busy or limiter.in_flight.get("HC", 0) < IN_FLIGHT_PER_AGENT_MAX:
            assert time.monotonic() < deadline, (len(answers), limiter.in_flight)
            await asyncio.sleep(0.01)
        others = await asyncio.gather(
            *(
                http.get("/v1/agents/HB", headers={"Authorization": f"Bearer {tokens['HB']}"})
                for _ in range(20)
            )
        )
        moved_at = time.monotonic()
        await asyncio.to_thread(_move_the_views, read_side)
        await asyncio.wait_for(asyncio.gather(*requests), HOLD_SECONDS_MAX)
    return answers, [o.status_code for o in others], moved_at


def _move_the_views(read_side: ReadSide) -> None:
    issued = read_side.ledger.handle(c.IssuePoints(request_id=rid(), agent_code="HB", amount="1"))
    assert issued.code == 0
    projector(read_side.settings, read_side.ledger).catch_up()


def test_ten_times_the_in_flight_limit_of_one_agent_is_answered_1018_for_the_excess_never_5xx(
    busy_read_side: ReadSide,
) -> None:
    started = time.monotonic()
    answers, others, moved_at = asyncio.run(_flood(busy_read_side))

    outcomes = Counter((status, code) for _, status, code in answers)
    busy = HTTP_CALLERS - IN_FLIGHT_PER_AGENT_MAX
    assert outcomes == {(200, 0): IN_FLIGHT_PER_AGENT_MAX, (429, 1018): busy}
    assert all(at < moved_at for at, status, _ in answers if status == 429), "1018 at once"
    assert all(at >= moved_at for at, status, _ in answers if status == 200)
    assert others == [200] * len(others)
    assert busy_read_side.server.runtime.limiter.in_flight == {}
    record(
        "overload http",
        {
            "faults": {"http callers at 10x the in-flight limit": 1},
            "requests": HTTP_CALLERS,
            "served": outcomes[(200, 0)],
            "busy_1018": outcomes[(429, 1018)],
            "server_errors": sum(n for (status, _), n in outcomes.items() if status >= 500),
            "seconds": round(time.monotonic() - started, 1),
        },
    )
