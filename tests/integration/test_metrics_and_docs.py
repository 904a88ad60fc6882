"""The consumer's Prometheus metrics (a real `ledger run` on Kafka and PostgreSQL) and
the AsyncAPI document that `make asyncapi` writes."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import prometheus_client
import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from consumers.app import build_app
from consumers.metrics import Metrics
from ledger.application import Ledger
from ledger.settings import Settings
from schemas import COMMAND_MODELS
from tests.e2e.harness import ServiceProcess, Stack, produce, read_all

ROOT = Path(__file__).resolve().parents[2]
SECONDS_MAX = 60
ASYNCAPI_GEN = [sys.executable, "-m", "faststream", "docs", "gen", "consumers.asyncapi:app"]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def command(type_: str, **fields: Any) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    request_id = str(fields.pop("requestId", uuid.uuid4()))
    body = {"type": type_, "requestId": request_id, "agentCode": "BR", **fields}
    return b"BR", json.dumps(body).encode(), [("X-MGP-REQ-ID", request_id.encode())]


@pytest.fixture
def stack(
    kafka_bootstrap: str, database_url: str, pg_schema: str, tmp_path: Path
) -> Iterator[Stack]:
    built = Stack(kafka_bootstrap, database_url, pg_schema, tmp_path, partitions=4)
    yield built
    built.close()


def test_the_metrics_endpoint_counts_every_outcome_of_the_consumed_commands_exactly(
    stack: Stack,
) -> None:
    port = free_port()
    service = ServiceProcess(
        {**stack.env(), "METRICS_PORT": str(port)}, stack.workdir / "metrics-service.log"
    )
    stack.processes.append(service)
    service.start()
    issue = command("issuePoints", amount="1000.00")
    # One key, so one partition: the ledger sees these in this order.
    messages = [
        command("createAgent", currency="USD", mode="transfer", name="Broker"),
        issue,
        command("createUser", name="alice"),
        command("deposit", userCode=1001, amount="100.00"),
        command("bet", userCode=1001, txnId="t1", roundId="r1", amount="12.345"),
        command("withdraw", userCode=1001, amount="500.00"),
        issue,
        (b"BR", b"{not json", []),
        (b"BR", json.dumps({"type": "bet", "requestId": 7}).encode(), []),
    ]
    asyncio.run(produce(stack.bootstrap, stack.commands, messages))
    results = asyncio.run(read_all(stack.bootstrap, stack.results, lambda r: len(r) >= 7, 60))
    dead = asyncio.run(read_all(stack.bootstrap, stack.dlq, lambda r: len(r) >= 2, 60))
    assert sorted(json.loads(r.value)["code"] for r in results) == [0, 0, 0, 0, 0, 1012, 2006]
    assert len(dead) == 2

    # Metrics are counted just after the batch is acknowledged: wait for all nine records.
    deadline = time.monotonic() + SECONDS_MAX
    while True:
        samples = scrape(port)
        outcomes = {
            outcome: value(samples, "ledger_commands_total", outcome=outcome)
            for outcome in ("applied", "duplicate", "rejected", "dead_lettered")
        }
        if sum(outcomes.values()) >= 9 or time.monotonic() > deadline:
            break
        time.sleep(0.1)

    assert value(samples, "ledger_commands_consumed_total") == 9
    assert outcomes == {"applied": 4, "duplicate": 1, "rejected": 2, "dead_lettered": 2}
    rejected = {
        dict(labels)["status"]: count
        for (name, labels), count in samples.items()
        if name == "ledger_commands_rejected_total" and count
    }
    assert rejected == {"PARAMETERS_INVALID": 1, "BALANCE_NOT_ENOUGH": 1}
    dead_lettered = {
        dict(labels)["reason"]: count
        for (name, labels), count in samples.items()
        if name == "ledger_commands_dead_lettered_total"
    }
    assert dead_lettered == {"value is not JSON": 1, "no usable requestId (a UUID string)": 1}
    batches = value(samples, "ledger_batch_records_count")
    assert batches >= 1
    assert value(samples, "ledger_batch_records_sum") == 9
    assert value(samples, "ledger_batch_seconds_count") == batches
    assert value(samples, "ledger_command_seconds_count") == 9
    assert 0 < value(samples, "ledger_batch_seconds_sum") < SECONDS_MAX
    assert value(samples, "ledger_batches_rewound_total") == 0
    assert value(samples, "ledger_races_lost_total") == 0
    lags = {
        dict(labels)["partition"]: lag
        for (name, labels), lag in samples.items()
        if name == "ledger_consumer_lag_records" and dict(labels)["topic"] == stack.commands
    }
    assert len(lags) == 1 and set(lags.values()) == {0}, lags  # every record was processed


def test_an_endpoint_serves_only_its_own_registry_and_a_taken_port_does_not_stop_the_ledger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mine = Metrics(CollectorRegistry(), lambda: 3)
    port = free_port()
    server = mine.serve(port)
    assert server is not None
    try:
        samples = scrape(port)
        assert value(samples, "ledger_races_lost_total") == 3
        assert value(samples, "ledger_commands_total", outcome="applied") == 0
        assert not any(name.startswith("python_gc") for name, _ in samples)  # not the global one
        other = Metrics(CollectorRegistry(), lambda: 0)
        assert other.serve(port) is None
        assert "cannot listen" in caplog.text
    finally:
        server.close()
    with pytest.raises(urllib.error.URLError):
        scrape(port)


def test_two_apps_built_in_one_process_keep_their_metrics_apart() -> None:
    settings = Settings(metrics_port=0, database_url="memory")
    first, second = Ledger(), Ledger()
    registries = [CollectorRegistry(), CollectorRegistry()]
    build_app(settings, first, registries[0])
    build_app(settings, second, registries[1])
    build_app(settings, first)  # a registry of its own, not the process-wide one
    second.races_lost = 2

    assert registries[0].get_sample_value("ledger_races_lost_total") == 0
    assert registries[1].get_sample_value("ledger_races_lost_total") == 2
    assert prometheus_client.REGISTRY.get_sample_value("ledger_commands_consumed_total") is None


def test_consumer_lag_is_highwater_minus_last_offset_minus_one_and_never_raises() -> None:
    metrics = Metrics(CollectorRegistry(), lambda: 0)
    records = [
        SimpleNamespace(topic="c", partition=p, offset=o) for p, o in [(0, 3), (0, 6), (1, 0)]
    ]

    class Consumer:
        def highwater(self, tp: TopicPartition) -> int | None:
            return {0: 10, 1: None}[tp.partition]

    class Revoked:
        def highwater(self, tp: TopicPartition) -> int:
            raise AssertionError("Partition is not assigned")

    metrics.observe_lag(Consumer(), records)
    metrics.observe_lag(Revoked(), records)
    metrics.observe_lag(object(), records)

    lag = metrics.registry.get_sample_value
    assert lag("ledger_consumer_lag_records", {"topic": "c", "partition": "0"}) == 3
    assert lag("ledger_consumer_lag_records", {"topic": "c", "partition": "1"}) is None


def generate_asyncapi(out: Path) -> dict[str, Any]:
    """What `make asyncapi` runs, written to `out`."""
    subprocess.run(
        [*ASYNCAPI_GEN, "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def test_the_asyncapi_document_describes_the_three_topics_with_the_wire_schemas(
    tmp_path: Path,
) -> None:
    document = generate_asyncapi(tmp_path / "asyncapi.json")
    schemas = document["components"]["schemas"]

    assert document["asyncapi"] == "3.0.0"
    addresses = {name: channel["address"] for name, channel in document["channels"].items()}
    assert sorted(addresses.values()) == [
        "ledger.commands",
        "ledger.commands.dlq",
        "ledger.results",
    ]
    actions = {
        addresses[op["channel"]["$ref"].rsplit("/", 1)[1]]: op["action"]
        for op in document["operations"].values()
    }
    assert actions == {
        "ledger.commands": "receive",
        "ledger.results": "send",
        "ledger.commands.dlq": "send",
    }
    commands_payload = next(s for name, s in schemas.items() if name.startswith("ledger.commands:"))
    variants = [schemas[ref["$ref"].rsplit("/", 1)[1]] for ref in commands_payload["oneOf"]]
    assert {v["properties"]["type"]["const"].lower() for v in variants} == set(COMMAND_MODELS)
    assert all({"requestId", "agentCode", "type"} <= set(v["required"]) for v in variants)
    bet = next(v for v in variants if v["properties"]["type"]["const"] == "bet")
    assert {"userCode", "txnId", "roundId", "amount"} <= set(bet["required"])
    assert bet["properties"]["amount"]["type"] == "string"
    result = schemas["ResultMessage"]["properties"]
    assert {"requestId", "code", "status", "duplicate", "balance", "agentBalance"} <= set(result)
    descriptions = json.dumps(document["channels"])
    for header in ("X-MGP-REQ-ID", "x-dlq-reason", "x-dlq-source", "agentCode"):
        assert header in descriptions


def test_the_committed_asyncapi_document_is_what_make_asyncapi_generates(tmp_path: Path) -> None:
    generated = generate_asyncapi(tmp_path / "asyncapi.json")
    committed = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    assert committed == generated, "docs/asyncapi.json is stale: run `make asyncapi`"
