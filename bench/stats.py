"""Small statistics for benchmark figures (nearest-rank percentiles, CPU time of processes)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["child_pids", "cpu_seconds", "percentile", "server_pids"]

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank q-th percentile (0 < q <= 100) of `values`; None when empty."""
    assert 0 < q <= 100
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return float(ordered[int(rank) - 1])


def cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU seconds the processes used so far: their threads, and their
    children that ended (a PostgreSQL backend's time goes to the postmaster when it
    exits). Processes that are gone count zero."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        total += sum(int(n) for n in fields[11:15])  # utime, stime, cutime, cstime
    return total / CLOCK_TICKS_PER_S


def server_pids(port: int) -> list[int]:
    """The process listening on 127.0.0.1:`port` (or any address) and its children,
    e.g. the PostgreSQL postmaster and its backends; empty when not found."""
    inodes = _listening_inodes(port)
    listener = None
    for pid, _, _ in _processes():
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if any(link[8:-1] in inodes for link in links if link.startswith("socket:[")):
            listener = pid
            break
    if listener is None:
        return []
    return [listener, *(pid for pid in child_pids(listener))]


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "0A":  # LISTEN
                inodes.add(cols[9])
    return inodes


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is `parent` (e.g. the read side of `ledger run`)."""
    found = []
    for pid, _, _ in _processes():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent:
            found.append(pid)
    return found


def _processes() -> list[tuple[int, str, bytes]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # it ended meanwhile
        found.append((int(entry.name), comm, cmdline))
    return found
