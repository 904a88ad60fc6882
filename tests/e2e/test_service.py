"""The running service over real Kafka and PostgreSQL: commands in, one result each out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ledger.application import Ledger
from ledger.audit import parse_anchor, verify
from ledger.settings import store_env
from tests import topics

READY_SECONDS_MAX = 60
RESULTS_SECONDS_MAX = 60


@dataclass
class Service:
    commands: str
    results: str
    dlq: str
    bootstrap: str
    process: subprocess.Popen[bytes]
    log: Path
    database_url: str
    schema: str


@pytest.fixture
def service(
    kafka_bootstrap: str, database_url: str, pg_schema: str, tmp_path: Path
) -> Iterator[Service]:
    """`ledger run` as its own process on this test's topics and schema."""
    suffix = uuid.uuid4().hex[:10]
    names = [f"e2e.{suffix}.commands", f"e2e.{suffix}.results", f"e2e.{suffix}.dlq"]
    topics.create_sync(kafka_bootstrap, names, partitions=4)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": database_url,
        "DATABASE_SCHEMA": pg_schema,
        "COMMANDS_TOPIC": names[0],
        "RESULTS_TOPIC": names[1],
        "DLQ_TOPIC": names[2],
        "KAFKA_GROUP_ID": f"ledger-{suffix}",
    }
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ledger.cli", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + READY_SECONDS_MAX
    while b"ledger ready: consuming" not in log.read_bytes():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the service did not get ready"
        time.sleep(0.1)
    yield Service(
        *names,
        bootstrap=kafka_bootstrap,
        process=process,
        log=log,
        database_url=database_url,
        schema=pg_schema,
    )
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    topics.delete_sync(kafka_bootstrap, names)


async def _send(
    service: Service, messages: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=service.bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send_and_wait(service.commands, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def _read(bootstrap: str, topic: str, count: int) -> AsyncIterator[object]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
    )
    await consumer.start()
    try:
        seen = 0
        deadline = time.monotonic() + RESULTS_SECONDS_MAX
        while seen < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    seen += 1
                    yield record
    finally:
        await consumer.stop()


def command(
    type_: str, agent: str, **fields: object
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    rid = str(fields.pop("requestId", uuid.uuid4()))
    body = {"type": type_, "requestId": rid, "agentCode": agent, **fields}
    return agent.encode(), json.dumps(body).encode(), [("X-MGP-REQ-ID", rid.encode())]


async def test_commands_sent_to_kafka_get_one_result_each_and_poison_goes_to_the_dlq(
    service: Service,
) -> None:
    repeat = command("issuePoints", "BR", amount="1000.5")
    messages = [
        command("createAgent", "BR", currency="USD", mode="transfer", name="Broker"),
        command("createAgent", "CA", parentCode="BR", currency="USD", mode="Seamless", name="Site"),
        repeat,
        command("transferPoints", "BR", toAgentCode="CA", amount=250),
        command("createUser", "CA", name="alice"),
        command("bet", "CA", userCode=1001, txnId="t1", roundId="r1", amount="12.345"),
        command("bet", "CA", userCode=1001, txnId="t1", roundId="r1", amount="12.34"),
        repeat,
        (b"CA", b"{not json", []),
        (b"CA", json.dumps({"type": "bet", "requestId": 7}).encode(), []),
    ]
    await _send(service, messages)

    results = [json.loads(r.value) async for r in _read(service.bootstrap, service.results, 8)]
    dead = [r async for r in _read(service.bootstrap, service.dlq, 2)]

    # Results are keyed by requestId, so the two answers to `repeat` arrive in order.
    by_request: dict[str, list[dict[str, object]]] = {}
    for result in results:
        by_request.setdefault(str(result["requestId"]), []).append(result)
    ordered = [by_request[json.loads(m[1])["requestId"]].pop(0) for m in messages[:8]]
    assert [r["code"] for r in ordered] == [0, 0, 0, 0, 0, 1012, 0, 0]
    assert ordered[2]["agentBalance"] == "1000.50" and ordered[2]["duplicate"] is False
    assert ordered[7]["duplicate"] is True and ordered[7]["sequence"] == ordered[2]["sequence"]
    assert ordered[3]["agentBalance"] == "750.50"
    assert ordered[4]["userCode"] == 1001 and "balance" not in ordered[4]  # seamless
    assert ordered[6]["agentBalance"] == "237.66" and ordered[6]["status"] == "OK"
    assert sorted(r.value for r in dead) == sorted([b"{not json", messages[9][1]])
    reasons = {dict(r.headers)["x-dlq-reason"] for r in dead}
    assert reasons == {b"value is not JSON", b"no usable requestId (a UUID string)"}


async def test_the_service_logs_seal_anchors_that_the_audit_finds_in_the_store(
    service: Service,
) -> None:
    """The newest seal, logged while the service writes (and at shutdown), is the anchor
    `ledger audit verify --anchor` checks against the store."""
    messages = [command("createAgent", "BR", currency="USD", mode="transfer", name="Broker")]
    await _send(service, messages)
    assert len([r async for r in _read(service.bootstrap, service.results, 1)]) == 1
    deadline = time.monotonic() + RESULTS_SECONDS_MAX
    marker = b"seal anchor (ledger audit verify --anchor): "
    while marker not in service.log.read_bytes():
        assert time.monotonic() < deadline, service.log.read_text()
        time.sleep(0.1)
    lines = [line for line in service.log.read_bytes().splitlines() if marker in line]
    anchor = parse_anchor(lines[-1].split(marker)[1].decode())
    ledger = Ledger(store_env(service.database_url, service.schema))
    try:
        report = verify(ledger.recorder, ledger.mapper.transcoder, anchors=[anchor])
    finally:
        ledger.close()
    assert report.findings == [] and report.seals >= 1
