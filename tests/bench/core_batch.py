"""Micro-benchmark: commands/s of `Ledger.handle_batch` on PostgreSQL (not a test).

    python -m tests.bench.core_batch [--commands 100000] [--batch 1000]

Uses DATABASE_URL (default: the local service) and a fresh schema, fsync on.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections import Counter

import psycopg

from ledger.application import Ledger
from ledger.settings import store_env
from tests.bench.workload import casino_workload


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument(
        "--store",
        default=os.environ.get("DATABASE_URL", "postgresql://ledger:ledger@127.0.0.1:55432/ledger"),
    )
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    ledger = Ledger(store_env(args.store, schema))
    commands = list(casino_workload(args.commands))
    codes: Counter[int] = Counter()
    batch_ms: list[float] = []
    started = time.perf_counter()
    for start in range(0, len(commands), args.batch):
        t0 = time.perf_counter()
        for result in ledger.handle_batch(commands[start : start + args.batch]):
            codes[result.code] += 1
        batch_ms.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    events = ledger.recorder.max_notification_id() or 0
    ledger.close()
    if args.store != "memory":
        with psycopg.connect(args.store, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    batch_ms.sort()
    print(
        f"store: {'memory' if args.store == 'memory' else 'postgresql'}; "
        f"commands: {len(commands)}; batch size: {args.batch}; events written: {events}"
    )
    print(f"result codes: {dict(sorted(codes.items()))}")
    print(f"elapsed: {elapsed:.2f} s; throughput: {len(commands) / elapsed:,.0f} commands/s")
    print(
        f"batch latency ms: p50 {batch_ms[len(batch_ms) // 2]:.1f}, "
        f"p99 {batch_ms[int(len(batch_ms) * 0.99)]:.1f}, max {batch_ms[-1]:.1f}"
    )


if __name__ == "__main__":
    main()
