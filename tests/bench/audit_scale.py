"""`audit verify` at scale (not a test): build a store of N events, then verify it.

    python -m tests.bench.audit_scale [--events 1000000] [--schema audit_scale]

The store is built once per schema (reused when it already holds enough events).
Prints the speed (events/s) and the peak memory of the verifying process.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from ledger.application import Ledger
from ledger.audit import verify
from ledger.settings import store_env
from tests.bench.workload import casino_play, casino_world

BATCH_COMMANDS = 2_000


def build(ledger: Ledger, events_wanted: int) -> None:
    world = casino_world(casinos=200, players_per_casino=50)
    for start in range(0, len(world.setup), BATCH_COMMANDS):
        ledger.handle_batch(world.setup[start : start + BATCH_COMMANDS])
    seed = 100
    while (ledger.recorder.max_notification_id() or 0) < events_wanted:
        play = casino_play(world, 100_000, seed=seed)
        for start in range(0, len(play), BATCH_COMMANDS):
            ledger.handle_batch(play[start : start + BATCH_COMMANDS])
        seed += 1
        print(f"  store: {ledger.recorder.max_notification_id():,} events", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--schema", default="audit_scale")
    parser.add_argument(
        "--store",
        default=os.environ.get("DATABASE_URL", "postgresql://ledger:ledger@127.0.0.1:55432/ledger"),
    )
    args = parser.parse_args()
    ledger = Ledger(store_env(args.store, args.schema))
    if (ledger.recorder.max_notification_id() or 0) < args.events:
        started = time.perf_counter()
        build(ledger, args.events)
        print(f"built in {time.perf_counter() - started:.0f} s")
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    report = verify(ledger.recorder, ledger.mapper.transcoder)
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ledger.close()
    print(
        f"audit verify: {report.events:,} events, {report.seals:,} seals, "
        f"{report.accounts:,} accounts, findings: {len(report.findings)}"
    )
    print(
        f"speed: {report.events / elapsed:,.0f} events/s ({elapsed:.1f} s); "
        f"peak memory: {peak_mb:,.0f} MiB (before verifying: {rss_before_mb:,.0f} MiB)"
    )


if __name__ == "__main__":
    main()
