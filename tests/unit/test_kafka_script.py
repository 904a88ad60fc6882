"""deploy/local/kafka.sh's start, with a stand-in `java` so that no broker is needed.

CI once failed at its first step: `kafka.sh start` read the new pid's command line before
the forked shell had exec'd java, took "not kafka.Kafka yet" for "exited", and gave up
with an empty log. These cases pin what start tells apart: a process still starting, one
that died, and a stale pid file left by a killed broker.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy/local/kafka.sh"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A LEDGER_LOCAL_HOME whose jars count as installed and whose storage as formatted."""
    kdir = tmp_path / "home/kafka"
    (kdir / "libs").mkdir(parents=True)
    (kdir / "libs/stand-in.jar").write_bytes(b"")
    pom = (REPO / "deploy/local/kafka/pom.xml").read_bytes()
    (kdir / "pom.sha256").write_text(hashlib.sha256(pom).hexdigest() + "\n")
    (kdir / "data").mkdir()
    (kdir / "data/meta.properties").write_text("cluster.id=stand-in\n")
    yield tmp_path / "home"
    pid_file = kdir / "kafka.pid"
    if pid_file.exists():  # whatever the stand-in left running
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _start(home: Path, tmp_path: Path, java_body: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("java", java_body), ("mvn", "exit 1")):
        (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "LEDGER_LOCAL_HOME": str(home),
        "KAFKA_PORT": str(_free_port()),
        "KAFKA_CONTROLLER_PORT": str(_free_port()),
        "KAFKA_START_TIMEOUT": "3",
    }
    return subprocess.run(
        ["bash", str(SCRIPT), "start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_process_still_starting_is_waited_for_not_taken_for_dead(
    home: Path, tmp_path: Path
) -> None:
    """Alive under another command line (as before its exec of java): wait until the timeout."""
    done = _start(home, tmp_path, "exec -a not-yet-kafka sleep 30")
    assert done.returncode != 0
    assert "not ready after 3s" in done.stderr
    assert "broker exited" not in done.stderr


def test_a_broker_that_dies_is_reported_at_once_with_its_log(home: Path, tmp_path: Path) -> None:
    done = _start(home, tmp_path, 'echo "stand-in broker: cannot start" >&2; exit 1')
    assert done.returncode != 0
    assert "broker exited" in done.stderr
    assert "stand-in broker: cannot start" in done.stderr
    assert "not ready after" not in done.stderr


def test_a_stale_pid_file_is_replaced_without_noise(home: Path, tmp_path: Path) -> None:
    """A broker killed with the session leaves its pid file: start says nothing about it."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    (home / "kafka/kafka.pid").write_text(f"{gone.pid}\n")
    done = _start(home, tmp_path, "exec -a not-yet-kafka sleep 30")
    assert "No such file" not in done.stderr
    assert "not ready after 3s" in done.stderr
    assert int((home / "kafka/kafka.pid").read_text()) != gone.pid
