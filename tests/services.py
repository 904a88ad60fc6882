"""Where the tests' Kafka and PostgreSQL come from: one switch, three sources.

1. `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` set: use those servers as they are.
2. Else, a Docker daemon answers: testcontainers starts apache/kafka and postgres images.
3. Else: `deploy/local/services.sh up` starts (or finds running) local processes.
Each source is resolved lazily, the first time a test asks for it.
"""

from __future__ import annotations

import gc
import os
import subprocess
import warnings
from contextlib import ExitStack
from pathlib import Path

__all__ = ["Services"]

REPO = Path(__file__).resolve().parent.parent
SERVICES_UP_SECONDS_MAX = 600


DOCKER_SOCKET = Path("/var/run/docker.sock")


def _docker_answers() -> bool:
    if not os.environ.get("DOCKER_HOST") and not DOCKER_SOCKET.exists():
        return False  # no engine to ask (and no half-opened client left to the GC)
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
    except Exception:
        # A client that failed to connect leaves its socket to the garbage collector,
        # whose ResourceWarning would surface in whichever test runs next.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


class Services:
    """Lazily resolved endpoints of the real Kafka and PostgreSQL the tests use."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._kafka: str | None = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None
        self._database: str | None = os.environ.get("DATABASE_URL") or None
        self._local_env: dict[str, str] | None = None
        self._docker: bool | None = None

    def close(self) -> None:
        self._stack.close()

    def _use_docker(self) -> bool:
        if self._docker is None:
            self._docker = (
                os.environ.get("LEDGER_TEST_DOCKER", "auto") != "no" and _docker_answers()
            )
        return self._docker

    def _local(self) -> dict[str, str]:
        """Start (or find running) the local processes; parse the env line they print."""
        if self._local_env is None:
            done = subprocess.run(
                ["bash", str(REPO / "deploy/local/services.sh"), "up"],
                check=True,
                capture_output=True,
                text=True,
                timeout=SERVICES_UP_SECONDS_MAX,
            )
            last = done.stdout.strip().splitlines()[-1]
            self._local_env = dict(pair.split("=", 1) for pair in last.split())
        return self._local_env

    @property
    def database_url(self) -> str:
        if self._database is None:
            if self._use_docker():
                from testcontainers.postgres import PostgresContainer

                pg = self._stack.enter_context(PostgresContainer("postgres:16", driver=None))
                self._database = pg.get_connection_url()
            else:
                self._database = self._local()["DATABASE_URL"]
        return self._database

    @property
    def kafka_bootstrap(self) -> str:
        if self._kafka is None:
            if self._use_docker():
                self._kafka = self._start_kafka_container()
            else:
                self._kafka = self._local()["KAFKA_BOOTSTRAP_SERVERS"]
        return self._kafka

    def _start_kafka_container(self) -> str:
        # testcontainers' KafkaContainer targets Confluent images; apache/kafka 4.x
        # runs as a generic container configured by environment (KRaft, one node).
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs

        port = 19092
        container = (
            DockerContainer("apache/kafka:4.1.2")
            .with_bind_ports(port, port)
            .with_env("KAFKA_NODE_ID", "1")
            .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
            .with_env("KAFKA_LISTENERS", f"PLAINTEXT://0.0.0.0:{port},CONTROLLER://0.0.0.0:9093")
            .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
            .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
            .with_env(
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
            )
            .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
            .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
            .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
            .with_env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR", "1")
            .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        )
        self._stack.enter_context(container)
        wait_for_logs(container, "Kafka Server started", timeout=120)
        return f"127.0.0.1:{port}"
