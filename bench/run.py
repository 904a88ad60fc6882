"""`make bench`: the ledger end to end, its baselines and its limits, in one run on the
same data, plus replay rates and the cost per command as the store grows.

    BENCH_SCALE=1 python -m bench.run          # ~5 minutes on two busy cores

Uses KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (loopback); creates its own topics and
schemas and drops them at the end (BENCH_KEEP=1 keeps them). Writes
bench-results/bench-<time>.json and .md, docs/benchmarks.md, and the README's
Performance section (between its markers). A phase that fails is reported and the
others go on: benchmarks print numbers, they never fail a build.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import time
import traceback
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg

from bench import core, e2e, limits, report, views
from bench.baselines import BaselineRun, HandWrittenWallets, PlainWallets, apply_records
from bench.bounds import Sizes
from bench.kafka import (
    ResultReader,
    Sender,
    broker_holds,
    consume_range,
    create_topics,
    delete_topics,
)
from bench.service import Service, Topics
from bench.simulate import Shape, build_world
from bench.stats import server_pids
from ledger.settings import Settings

__all__ = ["main"]

SHAPE = Shape(operators=4, agents_per_operator=5, players_per_agent=100)
SEED = 42
PARTITIONS = 8
LATENCY_LOADS_PER_S = (1_000.0, 5_000.0)
OF_MAX_SHARE = 0.8  # the third latency point: this share of the sustained rate
BROKER_TOPICS_WARN = 100  # a run makes 3 topics and deletes them
RESULTS_DIR = Path("bench-results")
DOCS_PAGE = Path("docs/benchmarks.md")
README = Path("README.md")


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Bench:
    """One run: its own topics and schemas, and every figure it measured."""

    def __init__(self, settings: Settings, sizes: Sizes) -> None:
        self.bootstrap = settings.kafka_bootstrap_servers
        self.database_url = settings.database_url
        self.replay_page_events = settings.replay_page_events  # as `ledger replay` pages
        self.sizes = sizes
        tag = uuid.uuid4().hex[:8]
        self.schema = f"bench_{tag}"
        self.topics = Topics.fresh(tag)
        self.workdir = RESULTS_DIR / f"run-{tag}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepared: e2e.Prepared | None = None
        self.results: dict[str, Any] = {"loadavg": {}, "errors": {}, "sizes": asdict(sizes)}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Print the load average around a phase; a failure is recorded, not raised."""
        before, started = _loadavg(), time.perf_counter()
        print(f"== {name}: load average before {before}", flush=True)
        try:
            yield
        except Exception as error:
            self.results["errors"][name] = f"{type(error).__name__}: {error}"
            traceback.print_exc()
        finally:
            after, seconds = _loadavg(), time.perf_counter() - started
            self.results["loadavg"][name] = {"before": before, "after": after, "seconds": seconds}
            print(f"== {name}: {seconds:.1f} s, load average after {after}", flush=True)

    # ------------------------------------------------------------------ over Kafka

    def ledger_service(self) -> Service:
        """`ledger run` on this run's topics and schema (with its read side if present)."""
        return Service(
            self.bootstrap,
            self.database_url,
            self.schema,
            self.topics,
            self.workdir / "service.log",
            projector=views.available(),
        )

    async def kafka_phases(self) -> None:
        await create_topics(self.bootstrap, self.topics.names, PARTITIONS)
        service = self.ledger_service()
        sender = Sender(self.bootstrap, self.topics.commands)
        reader = ResultReader(self.bootstrap, self.topics.results)
        await sender.start()
        await reader.start()
        try:
            await self._ledger_phases(service, sender, reader)
        finally:
            await asyncio.to_thread(service.stop)
            await reader.stop()
            await sender.stop()
        if self.prepared is not None:
            await self._same_topic_phases(self.prepared)

    async def _ledger_phases(self, service: Service, sender: Sender, reader: ResultReader) -> None:
        count = e2e.store_counter(self.database_url, self.schema)
        with self.phase("setup and preload"):
            world = build_world(SEED, SHAPE)
            self.prepared = await e2e.prepare(
                sender, reader, service, world, SEED, self.sizes.e2e_commands, count
            )
        if self.prepared is None:
            return
        with self.phase("ledger end to end"):
            pg_port = _port(self.database_url, 5432)
            kafka_port = _port(f"//{self.bootstrap.split(',')[0]}", 9092)
            cpu_pids = {
                "postgres (postmaster and backends)": lambda: server_pids(pg_port),
                "kafka broker": lambda: server_pids(kafka_port),
            }
            position = views.position_reader(self.database_url, self.schema)
            sustained = await e2e.sustained(
                self.prepared, reader, service, cpu_pids, count, position
            )
            self.results["e2e"] = asdict(sustained)
            print(json.dumps(self.results["e2e"], indent=1), flush=True)
        with self.phase("latency"):
            await self._latency(sender, reader)

    async def _latency(self, sender: Sender, reader: ResultReader) -> None:
        assert self.prepared is not None
        loads = [(rate, False) for rate in LATENCY_LOADS_PER_S]
        rate_max = (self.results.get("e2e") or {}).get("commands_per_s")
        if rate_max:
            loads.append((round(OF_MAX_SHARE * rate_max, -1), True))
        points = []
        for rate, of_max in sorted(loads):
            point = await e2e.latency_at(
                rate, self.sizes.latency_seconds, self.prepared.more, sender, reader
            )
            points.append({**asdict(point), "of_max": of_max})
            print(json.dumps(points[-1]), f"load average {_loadavg()}", flush=True)
        self.results["latency"] = points

    async def _same_topic_phases(self, prepared: e2e.Prepared) -> None:
        """Limits C and E and baselines A and B read the very records the ledger consumed."""
        self.results["limits"], self.results["baselines"] = {}, {}
        with self.phase("limit C: consume only"):
            run_c = await limits.consume_only(self.bootstrap, prepared.start, prepared.end)
            self.results["limits"]["c"] = {**asdict(run_c), "records_per_s": run_c.records_per_s}
        with self.phase("limit E: thinnest pipeline"):
            run_e = await limits.thin_pipeline(
                self.bootstrap,
                self.database_url,
                prepared.start,
                prepared.end,
                self.topics.limit_e,
                f"{self.schema}_e",
            )
            self.results["limits"]["e"] = {**asdict(run_e), "records_per_s": run_e.records_per_s}
            print(json.dumps(self.results["limits"]["e"]), flush=True)
        accounts = [f"{p.agent_code}:{code}" for p, code in prepared.user_codes.items()]
        with self.phase("baseline A: plain eventsourcing"):
            plain = PlainWallets.on(self.database_url, f"{self.schema}_a")
            try:
                plain.open_all(accounts)
                self.results["baselines"]["a"] = await self._baseline(prepared, plain.apply)
            finally:
                plain.close()
        with self.phase("baseline B: hand-written wallet"):
            wallets = HandWrittenWallets(self.database_url, f"{self.schema}_b")
            try:
                wallets.open_all(accounts)
                self.results["baselines"]["b"] = await self._baseline(prepared, wallets.apply)
            finally:
                wallets.close()

    async def _baseline(self, prepared: e2e.Prepared, apply: Any) -> dict[str, Any]:
        run = BaselineRun(self.sizes.baseline_seconds_max)
        await consume_range(
            self.bootstrap,
            prepared.start,
            prepared.end,
            self.sizes.baseline_commands,
            lambda records: apply_records(run, records, apply),
            self.sizes.baseline_seconds_max,
        )
        figures = {
            **{k: v for k, v in asdict(run).items() if k in ("messages", "applied", "refused")},
            "skipped": run.skipped,
            "time_bound": run.messages < self.sizes.baseline_commands,
            "seconds": run.seconds,
            "messages_per_s": run.messages_per_s,
        }
        print(json.dumps(figures), flush=True)
        return figures

    # ------------------------------------------------------------------ PostgreSQL only

    def store_phases(self) -> None:
        if self.prepared is not None and self.prepared.sustained_events:
            with self.phase("limit D: COPY of the same events"):
                run_d = limits.copy_events(
                    self.database_url,
                    f'"{self.schema}".ledger_events',
                    self.prepared.setup_events,
                    self.prepared.sustained_events,
                    f"{self.schema}_d",
                )
                self.results.setdefault("limits", {})["d"] = {
                    **asdict(run_d),
                    "rows_per_s": run_d.rows_per_s,
                }
            with self.phase("replay"):
                rebuild = views.rebuilder(self.database_url, self.replay_page_events)
                replay = core.replay(self.database_url, self.schema, rebuild)
                self.results["replay"] = asdict(replay)
                print(json.dumps(self.results["replay"]), flush=True)
        with self.phase("store growth"):
            points = core.growth(
                self.database_url, f"{self.schema}_g", self.sizes.growth_events, SHAPE
            )
            self.results["growth"] = [asdict(p) for p in points]
            print(json.dumps(self.results["growth"]), flush=True)

    def cleanup(self) -> None:
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"kept schema {self.schema}* and topics {self.topics.names}")
            return
        with contextlib.suppress(Exception):
            asyncio.run(delete_topics(self.bootstrap, self.topics.names))
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=10) as conn:
            names = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{self.schema}%",)
            ).fetchall()
            for (name,) in names:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def asdict(value: Any) -> dict[str, Any]:
    return dataclasses.asdict(value)


def _port(url: str, default: int) -> int:
    from urllib.parse import urlsplit

    return urlsplit(url).port or default


def machine(database_url: str) -> dict[str, Any]:
    """What the figures were measured on."""
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        postgres = {
            name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers")
        }
    postgres["version"] = postgres.pop("server_version")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": mem_kib / 2**20,
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "postgres": postgres,
        "packages": {
            name: metadata.version(name)
            for name in ("eventsourcing", "aiokafka", "faststream", "psycopg")
        },
    }


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' + local changes' if dirty.stdout.strip() else ''}"


def main() -> None:
    settings, sizes = Settings(), Sizes.from_env()
    bench = Bench(settings, sizes)
    started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    started = time.perf_counter()
    print(f"bench: scale {sizes.scale}, schema {bench.schema}, load average {_loadavg()}")
    broker = asyncio.run(broker_holds(bench.bootstrap))
    print(f"kafka broker holds {broker['topics']:,} topics, {broker['partitions']:,} partitions")
    if broker["topics"] > BROKER_TOPICS_WARN:
        print(
            "  many are probably left over from other runs; each costs the broker work and "
            "the figures suffer (2,423 test topics doubled the p99 at 5,000/s): delete them"
        )
    if not views.available():
        print("projections: not available")
        bench.results["projections_note"] = "TODO: projections not available in this checkout"
    try:
        asyncio.run(bench.kafka_phases())
        bench.store_phases()
    finally:
        with bench.phase("cleanup"):
            bench.cleanup()
    bench.results["run"] = {
        "started_at": started_at,
        "seconds": time.perf_counter() - started,
        "commit": _commit(),
        "machine": {**machine(settings.database_url), "kafka_before_run": broker},
    }
    bench.results["ratios"] = report.ratios(bench.results)
    _write(bench.results)


def _write(results: dict[str, Any]) -> None:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    page = report.full_page(results)
    (RESULTS_DIR / f"bench-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS_DIR / f"bench-{stamp}.md").write_text(page)
    DOCS_PAGE.parent.mkdir(exist_ok=True)
    DOCS_PAGE.write_text(page)
    updated = report.update_readme(README, results)
    print(page)
    print(f"written: {RESULTS_DIR}/bench-{stamp}.json, .md, {DOCS_PAGE}", end="")
    print(", README.md Performance section" if updated else " (README has no bench markers)")


if __name__ == "__main__":
    main()
