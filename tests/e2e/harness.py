"""Run the ledger service as real processes on a test's own topics and schema."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests import topics

__all__ = ["Stack", "produce", "read_all"]

READY_SECONDS_MAX = 60
STOP_SECONDS_MAX = 30


class ServiceProcess:
    """One `ledger run` process; killed with SIGKILL or stopped with SIGINT."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ledger.cli", "run"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + READY_SECONDS_MAX
        while b"ledger ready: consuming" not in self.log.read_bytes()[offset:]:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the service did not get ready"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_SECONDS_MAX)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=STOP_SECONDS_MAX)


class Stack:
    """Topics (commands, results, dlq), a schema, and service processes sharing them."""

    def __init__(
        self, bootstrap: str, database_url: str, schema: str, workdir: Path, partitions: int = 8
    ) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.bootstrap = bootstrap
        self.commands = f"t.{suffix}.commands"
        self.results = f"t.{suffix}.results"
        self.dlq = f"t.{suffix}.dlq"
        self.database_url, self.schema, self.workdir = database_url, schema, workdir
        self.processes: list[ServiceProcess] = []
        self.topics = [self.commands, self.results, self.dlq]
        topics.create_sync(bootstrap, self.topics, partitions)

    def env(self, group: str = "ledger", results: str | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "DATABASE_URL": self.database_url,
            "DATABASE_SCHEMA": self.schema,
            "COMMANDS_TOPIC": self.commands,
            "RESULTS_TOPIC": results or self.results,
            "DLQ_TOPIC": self.dlq,
            "KAFKA_GROUP_ID": f"{group}-{self.commands}",
            "METRICS_PORT": "0",  # several services run at once: no port to fight over
            "API_PORT": "0",
        }

    def service(self, group: str = "ledger", results: str | None = None) -> ServiceProcess:
        log = self.workdir / f"service-{len(self.processes)}.log"
        process = ServiceProcess(self.env(group, results), log)
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        topics.delete_sync(self.bootstrap, self.topics)

    def create_topic(self, name: str, partitions: int = 8) -> None:
        topics.create_sync(self.bootstrap, [name], partitions)
        self.topics.append(name)


async def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
) -> int:
    """Send (key, value, headers) messages in order; returns how many were sent."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    sent = []
    try:
        for key, value, headers in messages:
            sent.append(await producer.send(topic, value, key=key, headers=headers))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return len(sent)


async def read_all(bootstrap: str, topic: str, done: Any, seconds_max: float) -> list[Any]:
    """Read `topic` from the start until `done(records)` is true or time runs out."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + seconds_max
        while not done(records) and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def results_by_request(records: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """Every result read, grouped by requestId in arrival order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        result = json.loads(record.value)
        grouped.setdefault(result["requestId"], []).append(result)
    return grouped
