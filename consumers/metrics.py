"""Prometheus metrics of the Kafka edge, on a registry of the application's own.

Every record consumed from `ledger.commands` ends, once its batch is
acknowledged, in exactly one outcome of `ledger_commands_total`:

- `applied`: answered with code 0 for the first time (events were appended);
- `duplicate`: answered with an earlier answer (`duplicate: true`), whatever
  its code, so a retried rejection counts here and not as a rejection;
- `rejected`: answered with a non-zero code for the first time (also counted
  by status in `ledger_commands_rejected_total`);
- `dead_lettered`: sent to the DLQ (also counted by reason in
  `ledger_commands_dead_lettered_total`).

`ledger_commands_consumed_total` counts records as they are read, so a batch
rewound after an infrastructure error is counted again when it is redelivered;
with no rewind, consumed equals the sum of the outcomes. Latencies run from the
moment a batch reaches the handler to the moment Kafka acknowledged every
result and dead letter of it; a command's latency is its batch's.

Metrics never break processing: the lag gauge reads the consumer behind a
guard, and the HTTP server that fails to bind logs the error and leaves the
ledger running without it.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIServer

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from ledger.errors import Code
from ledger.results import Result

__all__ = [
    "BATCH_RECORDS_BUCKETS",
    "LATENCY_SECONDS_BUCKETS",
    "METRICS_HOST",
    "Metrics",
    "MetricsServer",
    "next_offsets",
    "outcome_of",
]

log = logging.getLogger("ledger.metrics")

METRICS_HOST = "127.0.0.1"  # Scraped by a local agent or a sidecar; never exposed.
BATCH_RECORDS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000)
LATENCY_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OUTCOMES = ("applied", "duplicate", "rejected", "dead_lettered")


def outcome_of(result: Result) -> str:
    """The outcome of an answered command: applied, duplicate or rejected."""
    if result.duplicate:
        return "duplicate"
    return "applied" if result.ok else "rejected"


class _RacesLost(Collector):
    """`ledger_races_lost_total`, read from the ledger at scrape time."""

    def __init__(self, races_lost: Callable[[], int]) -> None:
        self._races_lost = races_lost

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "ledger_races_lost",
            "Batches rerun because another writer changed a book first (optimistic concurrency).",
            value=self._races_lost(),
        )


class MetricsServer:
    """The HTTP endpoint serving one registry at /metrics, on METRICS_HOST only."""

    def __init__(self, server: WSGIServer, thread: Thread) -> None:
        self._server, self._thread = server, thread

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        """Stop serving; blocks up to the server's poll interval (0.5 s)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class Metrics:
    """The ledger consumer's metrics. One instance per application and registry."""

    def __init__(self, registry: CollectorRegistry, races_lost: Callable[[], int]) -> None:
        self.registry = registry
        self.consumed = Counter(
            "ledger_commands_consumed",
            "Records read from the commands topic (a rewound batch counts again).",
            registry=registry,
        )
        self.commands = Counter(
            "ledger_commands",
            "Records whose answer or dead letter Kafka acknowledged, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.rejected = Counter(
            "ledger_commands_rejected",
            "Commands refused for the first time, by contract status.",
            ["status"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "ledger_commands_dead_lettered",
            "Records sent to the DLQ, by reason (the x-dlq-reason header).",
            ["reason"],
            registry=registry,
        )
        self.batch_records = Histogram(
            "ledger_batch_records",
            "Records per consumed batch.",
            buckets=BATCH_RECORDS_BUCKETS,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "ledger_batch_seconds",
            "From a batch reaching the handler to Kafka acknowledging all its results.",
            buckets=LATENCY_SECONDS_BUCKETS,
            registry=registry,
        )
        self.command_seconds = Histogram(
            "ledger_command_seconds",
            "Per record, from consumption to its acknowledged answer (its batch's latency).",
            buckets=LATENCY_SECONDS_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "ledger_consumer_lag_records",
            "Records behind the partition's high watermark after the last processed batch.",
            ["topic", "partition"],
            registry=registry,
        )
        self.rewound = Counter(
            "ledger_batches_rewound",
            "Batches rewound for redelivery after an infrastructure error.",
            registry=registry,
        )
        registry.register(_RacesLost(races_lost))
        # Known label values start at zero, so that rate() sees their first increment.
        for outcome in OUTCOMES:
            self.commands.labels(outcome)
        for code in Code:
            if code != Code.OK:
                self.rejected.labels(code.name)

    def batch_done(
        self, results: Sequence[Result], dead_letter_reasons: Sequence[str], seconds: float
    ) -> None:
        """Count an acknowledged batch: its outcomes, its size and its latency."""
        # Counted per label, not per result: `labels()` costs ~3 µs per call, which was
        # 4% of the service's CPU when it ran once per result.
        outcomes = collections.Counter(outcome_of(result) for result in results)
        rejected = collections.Counter(r.status for r in results if outcome_of(r) == "rejected")
        for outcome, count in outcomes.items():
            self.commands.labels(outcome).inc(count)
        for status, count in rejected.items():
            self.rejected.labels(status).inc(count)
        if dead_letter_reasons:
            self.commands.labels("dead_lettered").inc(len(dead_letter_reasons))
        for reason, count in collections.Counter(dead_letter_reasons).items():
            self.dead_lettered.labels(reason).inc(count)
        records = len(results) + len(dead_letter_reasons)
        self.batch_records.observe(records)
        self.batch_seconds.observe(seconds)
        for _ in range(records):  # About 1 us each: negligible beside the batch.
            self.command_seconds.observe(seconds)

    def observe_lag(self, consumer: Any, records: Iterable[Any]) -> None:
        """Set the lag of every partition of the batch: highwater - last offset - 1.

        Never raises: a consumer without `highwater` (an in-memory test broker),
        a partition revoked meanwhile or an unknown highwater leave the gauge as
        it was.
        """
        try:
            for partition, offset in next_offsets(records).items():
                highwater = consumer.highwater(partition)
                if highwater is not None:
                    self.lag.labels(partition.topic, str(partition.partition)).set(
                        highwater - offset
                    )
        except Exception:
            log.debug("consumer lag not observed", exc_info=True)

    def serve(self, port: int) -> MetricsServer | None:
        """Serve /metrics on METRICS_HOST:port; None when it cannot bind (logged)."""
        try:
            server, thread = start_http_server(port, addr=METRICS_HOST, registry=self.registry)
        except OSError as error:
            log.error("metrics not served: cannot listen on %s:%d: %s", METRICS_HOST, port, error)
            return None
        log.info("metrics served on http://%s:%d/metrics", METRICS_HOST, port)
        return MetricsServer(server, thread)


def next_offsets(records: Iterable[Any]) -> dict[TopicPartition, int]:
    """Per partition of the records, the offset after its last one: what a commit of
    them names, and what the lag is counted from."""
    last: dict[tuple[str, int], int] = {}  # a TopicPartition per partition, not per record
    for record in records:
        key = (record.topic, record.partition)
        if record.offset >= last.get(key, -1):
            last[key] = record.offset
    return {TopicPartition(topic, partition): o + 1 for (topic, partition), o in last.items()}
