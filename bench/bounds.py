"""Every bound of the simulator and the benchmarks in one place, asserted at import.

`Sizes` scales the benchmark's workload with BENCH_SCALE (default 1.0: about five
minutes on two busy cores); the waits stay fixed, so a stuck phase ends by itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ledger.bounds import BATCH_COMMANDS_MAX

__all__ = [
    "BULK_BATCH_COMMANDS",
    "GROWER_STOP_SECONDS_MAX",
    "GROWTH_LOAD_SECONDS_MAX",
    "GROWTH_SAMPLE_BATCHES",
    "GROWTH_SAMPLE_COMMANDS",
    "IN_FLIGHT_COMMANDS_MAX",
    "OPEN_ROUNDS_MAX",
    "PROJECTIONS_WAIT_SECONDS_MAX",
    "RECENT_COMMANDS_MAX",
    "RESULTS_WAIT_SECONDS_MAX",
    "SCALE_MAX",
    "SCALE_MIN",
    "SERVICE_READY_SECONDS_MAX",
    "SERVICE_STOP_SECONDS_MAX",
    "SIMULATE_COMMANDS_MAX",
    "SIMULATE_RATE_PER_S_MAX",
    "WORLD_AGENTS_MAX",
    "WORLD_PLAYERS_MAX",
    "Sizes",
]

# ------------------------------------------------------------------ the generator
WORLD_AGENTS_MAX = 1_000
WORLD_PLAYERS_MAX = 100_000
OPEN_ROUNDS_MAX = 64  # rounds in play at once (interleaved bets and wins)
RECENT_COMMANDS_MAX = 256  # what a repeat (a platform's retry) is drawn from

# ------------------------------------------------------------------ `ledger simulate`
SIMULATE_COMMANDS_MAX = 5_000_000
SIMULATE_RATE_PER_S_MAX = 100_000
IN_FLIGHT_COMMANDS_MAX = 200_000  # sent but unanswered; the sender waits beyond this

# ------------------------------------------------------------------ waits
RESULTS_WAIT_SECONDS_MAX = 300.0  # for the results of one wave or phase
SERVICE_READY_SECONDS_MAX = 60.0
SERVICE_STOP_SECONDS_MAX = 30.0
PROJECTIONS_WAIT_SECONDS_MAX = 300.0

# ------------------------------------------------------------------ the core's store growth
BULK_BATCH_COMMANDS = 5_000  # one core batch while bulk-loading the store
GROWTH_SAMPLE_COMMANDS = 1_000  # one timed batch
GROWTH_SAMPLE_BATCHES = 20  # timed batches per store size (every pause among them counts)
GROWTH_LOAD_SECONDS_MAX = 900.0  # for one store size to be bulk-loaded
GROWER_STOP_SECONDS_MAX = 30.0  # for a store size's process to close its ledger and end

SCALE_MIN, SCALE_MAX = 0.01, 10.0


@dataclass(frozen=True, slots=True)
class Sizes:
    """The benchmark's workload at one BENCH_SCALE."""

    scale: float
    e2e_commands: int  # preloaded play commands for the sustained-throughput run
    latency_seconds: float  # offered-load duration per latency point
    baseline_commands: int  # prefix of the same commands that baselines A and B apply
    baseline_seconds_max: float  # ... or as many as they apply in this time
    growth_events: tuple[int, ...]  # store sizes of the growth curve

    @classmethod
    def from_env(cls) -> Sizes:
        return cls.at(float(os.environ.get("BENCH_SCALE", "1")))

    @classmethod
    def at(cls, scale: float) -> Sizes:
        assert SCALE_MIN <= scale <= SCALE_MAX, f"BENCH_SCALE must be in [{SCALE_MIN}, {SCALE_MAX}]"
        sizes = cls(
            scale=scale,
            e2e_commands=max(2_000, int(60_000 * scale)),
            latency_seconds=max(3.0, 20.0 * scale),
            baseline_commands=max(500, int(10_000 * scale)),
            baseline_seconds_max=max(5.0, 30.0 * scale),
            growth_events=tuple(n for n in (10**4, 10**5, 10**6) if n <= max(10**4, 10**6 * scale)),
        )
        assert sizes.baseline_commands <= sizes.e2e_commands
        return sizes


assert BULK_BATCH_COMMANDS <= BATCH_COMMANDS_MAX
assert GROWTH_SAMPLE_COMMANDS <= BULK_BATCH_COMMANDS
assert IN_FLIGHT_COMMANDS_MAX <= SIMULATE_COMMANDS_MAX
assert RECENT_COMMANDS_MAX >= 1 and OPEN_ROUNDS_MAX >= 1
