"""The ledger service as a real process (`ledger run`) on a benchmark's own topics and schema."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.bounds import SERVICE_READY_SECONDS_MAX, SERVICE_STOP_SECONDS_MAX

__all__ = ["Service", "Topics"]

READY_LINE = b"ledger ready: consuming"


@dataclass(frozen=True, slots=True)
class Topics:
    """A run's own commands, results and dead-letter topics, and limit E's results."""

    commands: str
    results: str
    dlq: str
    limit_e: str  # the results of limit E (bench/limits.py::thin_pipeline)

    @classmethod
    def fresh(cls, tag: str) -> Topics:
        prefix = f"bench.{tag}-{uuid.uuid4().hex[:8]}"
        return cls(f"{prefix}.commands", f"{prefix}.results", f"{prefix}.dlq", f"{prefix}.limit-e")

    @property
    def names(self) -> list[str]:
        return [self.commands, self.results, self.dlq, self.limit_e]


class Service:
    """One `ledger run` process; metrics and the HTTP API are off (no ports to share),
    the projector runs inside it as in production unless `projector` is False."""

    def __init__(
        self,
        bootstrap: str,
        database_url: str,
        schema: str,
        topics: Topics,
        log: Path,
        projector: bool = True,
    ) -> None:
        self.log = log
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DATABASE_URL": database_url,
            "DATABASE_SCHEMA": schema,
            "COMMANDS_TOPIC": topics.commands,
            "RESULTS_TOPIC": topics.results,
            "DLQ_TOPIC": topics.dlq,
            "KAFKA_GROUP_ID": f"ledger-{topics.commands}",
            "METRICS_PORT": "0",
            "API_PORT": "0",
            "PROJECTOR_ENABLED": "true" if projector else "false",
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def start(self) -> None:
        """Start and wait for the ready line (bounded)."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ledger.cli", "run"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + SERVICE_READY_SECONDS_MAX
        while READY_LINE not in self.log.read_bytes()[offset:]:
            if self.process.poll() is not None:
                raise RuntimeError(f"ledger run exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("ledger run did not get ready")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM (FastStream stops cleanly on it, even where SIGINT is ignored, as in
        background jobs), then SIGKILL if it does not end in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=SERVICE_STOP_SECONDS_MAX)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=SERVICE_STOP_SECONDS_MAX)
