"""Kafka and PostgreSQL of the fault suite's own, started and stopped with deploy/local.

The fault tests restart PostgreSQL and the Kafka broker. They must never touch the
shared instances (127.0.0.1:19092 / 55432) that other test runs are using, so this
module starts a second pair with the same scripts on other ports and other data
directories, and stops exactly that pair again (the scripts act on their own pid file
and data directory only):

- Kafka: `LEDGER_LOCAL_HOME=<session dir>/home`, `KAFKA_PORT`, `KAFKA_CONTROLLER_PORT`.
  The broker jars are linked from the shared cache (`~/.cache/ledger-local/kafka/libs`)
  together with its `pom.sha256`, so `kafka.sh install` finds them and downloads nothing.
- PostgreSQL: `LEDGER_PG_HOME=/var/tmp/ledger-faults-pg/<session>` (the `postgres` OS
  user must reach it; /tmp of pytest may be private to root), `PG_PORT`.

Ports: 29092 / 29093 / 25432 when free, else the next free ones above them, so two
sessions on one machine never share (and never restart each other's) instances. They
stay below the kernel's ephemeral range (ip_local_port_range, 32768+ by default): while a
server is down, its clients keep connecting to its port, and a connect from an ephemeral
port that happens to equal the (unbound) destination port connects the socket to itself
(a TCP simultaneous open), holding the port, so the restarted server cannot bind it.
(Seen with 39092: "Address already in use" after a broker restart.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DedicatedServices"]

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "deploy" / "local"
SHARED_KAFKA_HOME = Path(
    os.environ.get("LEDGER_SHARED_LOCAL_HOME", str(Path.home() / ".cache/ledger-local"))
)
PG_HOMES = Path("/var/tmp/ledger-faults-pg")
SCRIPT_SECONDS_MAX = 180
PORT_SEARCH_MAX = 200
KAFKA_PORT_PREFERRED = 29092
PG_PORT_PREFERRED = 25432
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_ports(first: int, count: int, taken: set[int]) -> list[int]:
    """`count` consecutive free ports from `first` on, below the ephemeral range."""
    for start in range(first, first + PORT_SEARCH_MAX, count):
        ports = list(range(start, start + count))
        if ports[-1] >= _ephemeral_low():
            break
        if not taken.intersection(ports) and all(_free(p) for p in ports):
            return ports
    raise RuntimeError(f"no {count} free ports from {first} below the ephemeral range")


class DedicatedServices:
    """A Kafka broker and a PostgreSQL cluster that only this test session uses."""

    def __init__(self, workdir: Path) -> None:
        session = uuid.uuid4().hex[:8]
        self.kafka_port, self.controller_port = _free_ports(KAFKA_PORT_PREFERRED, 2, set())
        taken = {self.kafka_port, self.controller_port}
        (self.pg_port,) = _free_ports(PG_PORT_PREFERRED, 1, taken)
        self.home = workdir / "home"
        self.pg_home = PG_HOMES / session
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.database_url = f"postgresql://ledger:ledger@127.0.0.1:{self.pg_port}/ledger"
        self.restarts = {"postgres": 0, "kafka": 0}
        self._started: list[str] = []

    @property
    def env(self) -> dict[str, str]:
        """The scripts' environment: our ports and homes, never the shared ones."""
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        env.update(
            KAFKA_PORT=str(self.kafka_port),
            KAFKA_CONTROLLER_PORT=str(self.controller_port),
            PG_PORT=str(self.pg_port),
            LEDGER_LOCAL_HOME=str(self.home),
            LEDGER_PG_HOME=str(self.pg_home),
        )
        return env

    def _script(self, name: str, action: str) -> None:
        done = subprocess.run(
            ["bash", str(LOCAL / name), action],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=SCRIPT_SECONDS_MAX,
            check=False,
        )
        assert done.returncode == 0, f"{name} {action} failed:\n{done.stderr[-3000:]}"

    def _link_kafka_jars(self) -> None:
        """Reuse the shared cache's jars: kafka.sh installs only when its pom hash differs."""
        shared = SHARED_KAFKA_HOME / "kafka"
        if not (shared / "pom.sha256").exists() or not list((shared / "libs").glob("*.jar")):
            # A fresh machine: fetch the jars once into the shared cache (install only,
            # nothing is started), exactly as `make services-up` would.
            subprocess.run(
                ["bash", str(LOCAL / "kafka.sh"), "install"],
                check=True,
                timeout=SCRIPT_SECONDS_MAX * 3,
                capture_output=True,
            )
        libs = self.home / "kafka" / "libs"
        libs.mkdir(parents=True, exist_ok=True)
        for jar in (shared / "libs").glob("*.jar"):
            target = libs / jar.name
            if not target.exists():
                target.symlink_to(jar)
        shutil.copyfile(shared / "pom.sha256", self.home / "kafka" / "pom.sha256")

    def start(self) -> None:
        self._link_kafka_jars()
        self._script("postgres.sh", "start")
        self._started.append("postgres")
        self._script("kafka.sh", "start")
        self._started.append("kafka")

    def restart_postgres(self, down_seconds: float = 1.0) -> None:
        """Stop the cluster (fast mode: clients are disconnected), wait, start it again."""
        self._script("postgres.sh", "stop")
        time.sleep(down_seconds)
        self._script("postgres.sh", "start")
        self.restarts["postgres"] += 1

    def restart_kafka(self, down_seconds: float = 1.0) -> None:
        """Stop the broker (SIGTERM, a clean shutdown), wait, start it again."""
        self._script("kafka.sh", "stop")
        time.sleep(down_seconds)
        self._script("kafka.sh", "start")
        self.restarts["kafka"] += 1

    def stop(self) -> None:
        """Stop what we started, by the scripts (pid file / data dir), then drop its data."""
        for name in reversed(self._started):
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self._script(f"{name}.sh", "stop")
        self._started.clear()
        shutil.rmtree(self.pg_home, ignore_errors=True)
        shutil.rmtree(self.home / "kafka" / "data", ignore_errors=True)


@contextlib.contextmanager
def dedicated_services(workdir: Path) -> Iterator[DedicatedServices]:
    services = DedicatedServices(workdir)
    try:
        services.start()
        yield services
    finally:
        services.stop()
