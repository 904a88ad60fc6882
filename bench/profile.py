"""`make bench-profile`: where the end-to-end path spends its time, sampled by py-spy.

    BENCH_SCALE=1 python -m bench.profile

Runs the setup and the preloaded sustained run of `make bench` with two py-spy
samplers on the `ledger run` process (100 Hz, non-blocking, every thread): one of the
samples on CPU, one of every thread's wall-clock time (idle threads included, so a
thread waiting for PostgreSQL or Kafka shows where it waits). Writes both raw
collapsed-stack files to bench-results/ (open them in speedscope.app, or feed
flamegraph.pl) and prints the top functions by own and total time, by thread and by
package. PostgreSQL's and Kafka's own CPU time is in `make bench`'s CPU table.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench import e2e
from bench.bounds import Sizes
from bench.kafka import ResultReader, Sender, create_topics
from bench.run import PARTITIONS, RESULTS_DIR, SEED, SHAPE, Bench
from bench.simulate import build_world
from bench.stats import child_pids, cpu_seconds
from ledger.settings import Settings

__all__ = ["Profile", "main", "parse", "summary"]

SAMPLES_PER_S = 100
TOP_FUNCTIONS = 15
OUR_PACKAGES = frozenset({"ledger", "consumers", "projections", "schemas"})
SPY_STOP_SECONDS_MAX = 30


@dataclass
class Profile:
    """Collapsed stacks: samples per (thread, stack of frames)."""

    samples: int = 0
    by_thread: Counter[str] = field(default_factory=Counter)
    own: Counter[str] = field(default_factory=Counter)  # leaf frame
    total: Counter[str] = field(default_factory=Counter)  # anywhere in the stack
    own_by_thread: dict[str, Counter[str]] = field(default_factory=dict)
    by_package: Counter[str] = field(default_factory=Counter)  # of the leaf frame


def _thread(head: str) -> str:
    """'thread (123): asyncio_0' -> 'asyncio_0' (pool threads lose their number)."""
    name = head.split(":", 1)[1].strip() if ":" in head else head
    return name.rstrip("0123456789").rstrip("_-") or name


def _package(frame: str) -> str:
    """'execute (psycopg/cursor.py:12)' -> 'psycopg'; the standard library by module."""
    where = frame[frame.rfind("(") + 1 : -1]
    path = where.rsplit(":", 1)[0]
    return path.split("/", 1)[0] if "/" in path else path.removesuffix(".py")


def parse(raw: str) -> Profile:
    profile = Profile()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        head, *frames = stack.split(";")
        if not frames:
            continue
        thread = _thread(head)
        profile.samples += count
        profile.by_thread[thread] += count
        profile.own[frames[-1]] += count
        profile.own_by_thread.setdefault(thread, Counter())[frames[-1]] += count
        profile.by_package[_package(frames[-1])] += count
        for frame in set(frames):
            profile.total[frame] += count
    return profile


def _share(counter: Counter[str], whole: int, top: int) -> list[str]:
    return [f"{100 * n / whole:5.1f}%  {name}" for name, n in counter.most_common(top)]


def summary(cpu: Profile, wall: Profile, seconds: float) -> str:
    lines = [
        f"# Profile of `ledger run` during the sustained run ({seconds:.1f} s)",
        "",
        f"## On CPU: {cpu.samples} samples at {SAMPLES_PER_S} Hz "
        f"(= {cpu.samples / SAMPLES_PER_S:.1f} CPU-seconds of Python threads)",
        "",
        "By thread:",
        *_share(cpu.by_thread, cpu.samples, 10),
        "",
        "By package of the running function:",
        *_share(cpu.by_package, cpu.samples, 12),
        "",
        "Top functions by own time:",
        *_share(cpu.own, cpu.samples, TOP_FUNCTIONS),
        "",
        "Our functions by total time (theirs and everything they call):",
        *_share(_ours(cpu.total), cpu.samples, TOP_FUNCTIONS + 10),
        "",
        "## Wall clock, idle included: where each busy thread is, all the time",
    ]
    for thread, _ in cpu.by_thread.most_common(3):
        n = wall.by_thread[thread]
        lines += ["", f"{thread} ({n} samples):", *_share(wall.own_by_thread[thread], n, 10)]
    return "\n".join(lines) + "\n"


def _ours(counter: Counter[str]) -> Counter[str]:
    return Counter({f: n for f, n in counter.items() if _package(f) in OUR_PACKAGES})


def _spy(pid: int, out: Path, idle: bool) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [py_spy, "record", "--pid", str(pid), "--rate", str(SAMPLES_PER_S)]
    command += ["--format", "raw", "--threads", "--function", "--nonblocking", "-o", str(out)]
    return subprocess.Popen(
        [*command, *(["--idle"] if idle else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _profiled_run(bench: Bench, stamp: str) -> tuple[Path, Path, float]:
    await create_topics(bench.bootstrap, bench.topics.names, PARTITIONS)
    service = bench.ledger_service()
    sender = Sender(bench.bootstrap, bench.topics.commands)
    reader = ResultReader(bench.bootstrap, bench.topics.results)
    await sender.start()
    await reader.start()
    count = e2e.store_counter(bench.database_url, bench.schema)
    paths = (RESULTS_DIR / f"profile-{stamp}-cpu.txt", RESULTS_DIR / f"profile-{stamp}-wall.txt")
    spies: list[subprocess.Popen[bytes]] = []
    try:
        world = build_world(SEED, SHAPE)
        prepared = await e2e.prepare(
            sender, reader, service, world, SEED, bench.sizes.e2e_commands, count
        )

        def attach(pid: int) -> None:
            spies.extend([_spy(pid, paths[0], idle=False), _spy(pid, paths[1], idle=True)])

        started = time.perf_counter()
        sustained = await e2e.sustained(prepared, reader, service, {}, count, None, attach)
        seconds = time.perf_counter() - started
        print(f"{sustained.commands_per_s:,.0f} commands/s while profiled", flush=True)
        print(f"ledger process CPU: {cpu_seconds([service.pid]):.1f} s in all", flush=True)
        read_side = cpu_seconds(child_pids(service.pid))
        print(f"its read side (child process, not profiled): {read_side:.1f} s", flush=True)
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=SPY_STOP_SECONDS_MAX)
        await asyncio.to_thread(service.stop)
        await reader.stop()
        await sender.stop()
    return paths[0], paths[1], seconds


def main() -> None:
    bench = Bench(Settings(), Sizes.from_env())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        cpu_path, wall_path, seconds = asyncio.run(_profiled_run(bench, stamp))
    finally:
        bench.cleanup()
    text = summary(parse(cpu_path.read_text()), parse(wall_path.read_text()), seconds)
    (RESULTS_DIR / f"profile-{stamp}.md").write_text(text)
    print(text)
    print(f"written: {cpu_path}, {wall_path}, {RESULTS_DIR}/profile-{stamp}.md")


if __name__ == "__main__":
    main()
