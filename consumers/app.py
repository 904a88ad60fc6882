"""The FastStream application of topic `ledger.commands`.

Delivery: consume a batch (topped up with what reached the topic meanwhile, see
`_topped_up`) -> decode -> `Ledger.handle_batch` (one store
transaction) -> publish every result and dead letter, awaiting the broker's
acknowledgements -> commit the batch's offsets (AckPolicy.MANUAL; the commit runs
while the next batch is fetched, see `_OffsetCommits`). A crash anywhere
in between redelivers the batch; the ledger answers each redelivered command
from its request log with the original result (`duplicate: true`), so
results are at-least-once with stable content and consumers dedupe by
requestId. An infrastructure error (PostgreSQL or Kafka down) rewinds the batch
and retries after a bounded backoff without committing past it.

Nothing a sender puts in a message may stall a partition or drop a batch: FastStream's
own parsing of headers and bodies is bypassed (it fails on a header that is not UTF-8,
or on a body that does not match a content-type header, and a failure there drops the
batch unanswered), decoding bounds what a result can echo (consumers/decode.py), a
dead letter too large to copy whole is sent with the beginning of its value only
(header `x-dlq-truncated` gives the original length), and a result that cannot be
encoded is sent with its text fields escaped rather than retried forever.

Metrics (consumers/metrics.py) are counted once a batch is acknowledged, on a
registry of this application's own, served on 127.0.0.1:METRICS_PORT.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import eventsourcing.persistence
import psycopg
import psycopg_pool
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord, TopicPartition
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from consumers.decode import MESSAGE_BYTES_MAX, DeadLetter, decode, encode_result
from consumers.metrics import Metrics, MetricsServer, next_offsets
from consumers.partition import partition_of
from ledger.application import Ledger
from ledger.commands import Command
from ledger.errors import Code
from ledger.gc_pause import collector_paused, freeze_survivors
from ledger.results import Result
from ledger.settings import Settings

__all__ = ["BATCH_RECORDS_MAX", "DLQ_RECORD_BYTES_MAX", "build_app", "send_in_record_batches"]

log = logging.getLogger("ledger.consumer")

BATCH_RECORDS_MAX = 1_000
# How long a poll waits for records. FastStream sleeps as long again after an empty poll,
# so an idle consumer answers a new command up to twice this late: at 20 ms the median
# latency at 1,000 commands/s was ~50 ms, most of it these waits. A record that arrives
# during a poll ends it at once, so a busy consumer never waits this long.
BATCH_TIMEOUT_MS = 5
# How long the broker may hold a fetch that found nothing (aiokafka's default: 500 ms).
# aiokafka leaves a partition whose records are still being handled out of the next
# fetch; a record arriving there meanwhile waits for that fetch to come back, which on
# quiet partitions was the whole 500 ms (the p99 at 1,000 commands/s was ~500 ms).
FETCH_WAIT_MS_MAX = 20
# How long a batch that is not full waits for the topic's newest records (see
# `_topped_up`): the fetch that brings them is sent when the batch is taken, and
# answers within a round trip when the broker has records (1, 2 and 5 ms measured alike).
TOP_UP_WAIT_MS = 2
RETRY_BACKOFF_SECONDS_MAX = 10.0
# How often the newest seal (the anchor `ledger audit verify --anchor` checks) is logged
# while the ledger writes; it is logged at shutdown too.
ANCHOR_LOG_SECONDS = 60.0
# At shutdown, how long the last batch's offset commit may take to land.
COMMIT_DRAIN_SECONDS_MAX = 5.0
# A batch that fails this often for a reason that is not the infrastructure's (a bug
# met by one command) is handled one command at a time, so that one command cannot
# stall its partition: that command alone is answered INTERNAL_SERVER_ERROR.
ISOLATE_AFTER_FAILURES = 3

# The producer refuses records larger than this (aiokafka's default, stated here);
# the broker's own limit (message.max.bytes, default 1,048,588) is about the same.
PRODUCER_REQUEST_BYTES_MAX = 1_048_576
# A dead letter whose key, value and headers exceed this is not copied whole: the
# copy plus our headers could pass the broker's limit, and a send refused for its
# size fails again on every retry, stalling the partition. Its value is cut to
# MESSAGE_BYTES_MAX (no command is longer) and its original headers are left out.
DLQ_RECORD_BYTES_MAX = 1_000_000
DLQ_KEY_BYTES_MAX = 1_024
assert MESSAGE_BYTES_MAX + DLQ_KEY_BYTES_MAX + 4_096 < DLQ_RECORD_BYTES_MAX
assert DLQ_RECORD_BYTES_MAX + 4_096 < PRODUCER_REQUEST_BYTES_MAX
# A result's key and value up to this size fit a request with room to spare (a record's
# own overhead is under 100 bytes); only a larger one is measured as aiokafka does.
RESULT_BYTES_CHECKED_MIN = PRODUCER_REQUEST_BYTES_MAX - 4_096

# Errors that mean "the store or the network is down": retry the batch, never isolate.
# (Isolation runs the core one command at a time; it cannot help when PostgreSQL or
# Kafka is away, it only turns a systemic failure into per-command answers.)
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    KafkaError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    eventsourcing.persistence.OperationalError,
    eventsourcing.persistence.InterfaceError,
)


def build_app(
    settings: Settings, ledger: Ledger, registry: CollectorRegistry | None = None
) -> FastStream:
    """The consumer application; its metrics go to `registry` (a new one by default)."""
    # apply_types=False: no FastDepends around the handler. It resolved the handler's
    # `KafkaMessage` parameter from FastStream's context with a synchronous call, which
    # FastDepends runs in a worker thread: a thread hop, a task group and a pydantic
    # model per batch, 1.6-2.0 ms between the parsed batch and the handler (measured at
    # 1,000 and 5,000 commands/s). The decoder hands the handler a `_Delivery`.
    # FastStream's "Received"/"Processed" lines, one pair per batch, go to DEBUG.
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id="ledger",
        apply_types=False,
        log_level=logging.DEBUG,
    )
    app = FastStream(broker)
    producer: dict[str, AIOKafkaProducer] = {}
    metrics = Metrics(
        registry if registry is not None else CollectorRegistry(), lambda: ledger.races_lost
    )
    metrics_server: dict[str, MetricsServer] = {}
    failures = 0
    isolating = False
    commits = _OffsetCommits()
    anchors = _AnchorLog(ledger)

    @app.on_startup
    async def start_metrics() -> None:
        if settings.metrics_port:  # 0 disables the endpoint
            served = metrics.serve(settings.metrics_port)
            if served is not None:
                metrics_server["s"] = served

    @app.on_startup
    async def start_producer() -> None:
        producer["p"] = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            enable_idempotence=True,  # implies acks=all
            linger_ms=2,
            max_request_size=PRODUCER_REQUEST_BYTES_MAX,
            client_id="ledger-results",
        )
        await producer["p"].start()

    @app.after_startup
    async def freeze_start_up_objects() -> None:
        log.info("%s objects alive after start-up frozen", freeze_survivors())

    @app.after_startup
    async def announce() -> None:
        log.warning(
            "ledger ready: consuming %s (group %s), answering on %s",
            settings.commands_topic,
            settings.kafka_group_id,
            settings.results_topic,
        )

    @app.on_shutdown
    async def stop_producer() -> None:
        if "p" in producer:
            await producer.pop("p").stop()

    @app.on_shutdown
    async def commit_last_offsets() -> None:
        await commits.drain()

    @app.on_shutdown
    async def log_last_anchor() -> None:
        anchors.log(force=True)

    @app.on_shutdown
    async def stop_metrics() -> None:
        if "s" in metrics_server:
            await asyncio.to_thread(metrics_server.pop("s").close)

    @broker.subscriber(
        settings.commands_topic,
        group_id=settings.kafka_group_id,
        batch=True,
        max_records=BATCH_RECORDS_MAX,
        batch_timeout_ms=BATCH_TIMEOUT_MS,
        fetch_max_wait_ms=FETCH_WAIT_MS_MAX,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        parser=_parse_without_headers,
        decoder=_delivery,
    )
    async def on_commands(delivery: _Delivery) -> None:
        nonlocal failures, isolating
        started = time.monotonic()
        consumer = delivery.consumer
        records = await _topped_up(consumer, delivery.records)
        metrics.consumed.inc(len(records))
        try:
            results, dead_letter_reasons = await _process(
                records, ledger, producer["p"], settings, isolating
            )
        except Exception as error:
            failures += 1
            isolating = failures >= ISOLATE_AFTER_FAILURES and not isinstance(
                error, INFRASTRUCTURE_ERRORS
            )
            backoff = min(RETRY_BACKOFF_SECONDS_MAX, 0.1 * 2**failures)
            log.exception("batch failed; rewinding and retrying in %.1fs", backoff)
            metrics.rewound.inc()
            _rewind(consumer, records)
            await asyncio.sleep(backoff)
            return
        seconds = time.monotonic() - started
        failures, isolating = 0, False
        commits.behind(consumer, records)
        anchors.log()
        metrics.batch_done(results, dead_letter_reasons, seconds)
        metrics.observe_lag(consumer, records)

    return app


class _AnchorLog:
    """Logs the ledger's newest seal, at most every ANCHOR_LOG_SECONDS and at shutdown:
    the anchor an auditor keeps outside the store. The store's chains cannot show a tail
    of whole transactions deleted, seals and all; `ledger audit verify --anchor` with a
    logged anchor does. Only a new anchor is logged."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.logged_at = float("-inf")
        self.last: str | None = None

    def log(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.logged_at < ANCHOR_LOG_SECONDS:
            return
        anchor = self.ledger.anchor()
        if anchor is not None and anchor != self.last:
            log.info("seal anchor (ledger audit verify --anchor): %s", anchor)
            self.last, self.logged_at = anchor, now


class _OffsetCommits:
    """Offset commits that run behind the next batch, one after the other.

    A batch's offsets are committed once its results (and dead letters) are
    acknowledged by Kafka, as before; but the handler no longer waits for the commit's
    round trip (~7 ms a batch) before the next poll: the commit runs while the next
    batch is fetched and handled (end to end 6.6-7.1k -> 7.3-7.5k commands/s, median
    latency at 1,000/s 39-56 -> 31 ms). Each commit names the offsets of its own
    batch (never the consumer's position, which may already be past the next batch)
    and waits for the one before it, so committed offsets only move forward. A commit
    that fails (a rebalance took the partition) is logged: the records are delivered
    again and answered again, identically, as after a crash.
    """

    def __init__(self) -> None:
        self.last: asyncio.Future[None] | None = None

    def behind(self, consumer: Any, records: tuple[Any, ...]) -> None:
        offsets = next_offsets(records)
        self.last = asyncio.ensure_future(self._commit(consumer, offsets, self.last))

    @staticmethod
    async def _commit(
        consumer: Any, offsets: dict[TopicPartition, int], previous: asyncio.Future[None] | None
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            await consumer.commit(offsets)
        except Exception:
            log.warning("offset commit failed; its records will be answered again", exc_info=True)

    async def drain(self) -> None:
        """Wait for the last commit (at shutdown), at most COMMIT_DRAIN_SECONDS_MAX."""
        if self.last is not None:
            await asyncio.wait([self.last], timeout=COMMIT_DRAIN_SECONDS_MAX)


async def _topped_up(consumer: Any, records: tuple[Any, ...]) -> tuple[Any, ...]:
    """The batch with the records that reached the topic since it was fetched.

    aiokafka fetches a partition again only once its buffered records are taken, and
    only when the fetch in flight comes back: the records a batch is handed were
    fetched while the batch before it was handled, and the ones that arrived since
    wait for the next batch. Under load every command waited about one batch longer
    than it had to. Taking the batch sends the fetch of its partitions; this waits
    up to TOP_UP_WAIT_MS for that fetch and adds what it brought after the batch's
    own records (each partition stays in order; a rewind seeks back to the earliest
    record of each partition in the whole batch). Measured with `make bench`'s
    latency phase: median command to result at 1,000/s 29 -> 20 ms, at 5,000/s
    85-99 -> 57-76 ms. A full batch is not topped up; a failing poll leaves the
    batch as it was (the records it did not return stay where they are).
    """
    room = BATCH_RECORDS_MAX - len(records)
    if room <= 0:
        return records
    try:
        fetched = await consumer.getmany(timeout_ms=TOP_UP_WAIT_MS, max_records=room)
    except Exception:  # the next poll meets the same error and FastStream handles it
        log.debug("topping up a batch failed", exc_info=True)
        return records
    more = [record for partition_records in fetched.values() for record in partition_records]
    return (*records, *more) if more else records


async def _parse_without_headers(records: Any, original: Any) -> Any:
    """FastStream's batch parser decodes every header value as UTF-8 and fails on a
    header that is not (or has no value); its failure drops the whole batch unanswered
    and the next batch commits past it. It parses header-less copies here; the handler
    gets the records as they came (decode() reads the request id header itself)."""
    batch = records if isinstance(records, tuple) else (records,)
    with collector_paused():
        bare = tuple([_without_headers(record) for record in batch])
    message = await original(bare if isinstance(records, tuple) else bare[0])
    message.raw_message = records
    return message


# `_without_headers` rebuilds aiokafka's records by position: a field added or moved in
# another aiokafka release must fail here, at import, not corrupt records.
assert [field.name for field in dataclasses.fields(ConsumerRecord)] == [
    "topic",
    "partition",
    "offset",
    "timestamp",
    "timestamp_type",
    "key",
    "value",
    "checksum",
    "serialized_key_size",
    "serialized_value_size",
    "headers",
]


def _without_headers(record: Any) -> Any:
    """The record with no headers: itself when it has none. aiokafka's records are
    rebuilt field by field, ~4 times cheaper than `dataclasses.replace` (which inspects
    the fields on every call); other records (FastStream's test broker) are replaced."""
    if record.headers is not None and not record.headers:
        return record
    if type(record) is not ConsumerRecord:
        return dataclasses.replace(record, headers=[])
    return ConsumerRecord(
        record.topic,
        record.partition,
        record.offset,
        record.timestamp,
        record.timestamp_type,
        record.key,
        record.value,
        record.checksum,
        record.serialized_key_size,
        record.serialized_value_size,
        [],
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Delivery:
    """What the handler takes of FastStream's message: its consumer and its records.

    Not the message itself: FastStream keeps the decoder's result on the message, and a
    message holding itself made every batch, its records included, garbage that only the
    cyclic collector frees (71,282 records in a 30-second probe at 1,000 commands/s)."""

    consumer: Any
    records: tuple[Any, ...]


async def _delivery(message: Any) -> _Delivery:
    """The handler decodes the raw records itself (consumers/decode.py). FastStream's
    decoder would JSON-parse every body first, or follow a sender's content-type header
    into a failure that, again, drops the batch."""
    raw = message.raw_message
    return _Delivery(message.consumer, raw if isinstance(raw, tuple) else (raw,))


def _rewind(consumer: Any, records: tuple[Any, ...]) -> None:
    """Seek each partition of the batch back to its earliest record, so that the next
    poll delivers the whole batch again (topped-up records included) and nothing is
    committed past a record that was not answered."""
    earliest: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        if record.offset < earliest.get(partition, record.offset + 1):
            earliest[partition] = record.offset
    for partition, offset in earliest.items():
        consumer.seek(partition, offset)


async def _process(
    records: tuple[Any, ...],
    ledger: Ledger,
    producer: AIOKafkaProducer,
    settings: Settings,
    isolating: bool = False,
) -> tuple[list[Result], list[str]]:
    """Answer and dead-letter one batch; returns its results and its dead letters' reasons
    once Kafka acknowledged every one of them."""
    commands: list[Command] = []
    dead_letter_reasons: list[str] = []
    sends = []
    with collector_paused():  # see ledger/gc_pause.py: 7.1k -> 7.4k commands/s end to end
        decoded_records = [(record, _decoded(record)) for record in records]
    for record, decoded in decoded_records:
        if isinstance(decoded, DeadLetter):
            key, value, headers = _dead_letter(record, decoded.reason)
            sends.append(await producer.send(settings.dlq_topic, value, key=key, headers=headers))
            dead_letter_reasons.append(decoded.reason)
        else:
            commands.append(decoded)
    handle = _handle_one_by_one if isolating else _handle_batch
    results = await asyncio.to_thread(handle, ledger, commands) if commands else []
    if results:
        sends.extend(await _send_results(producer, settings.results_topic, results))
    await asyncio.gather(*sends)
    return results, dead_letter_reasons


def _decoded(record: Any) -> Command | DeadLetter:
    try:
        return decode(record.value, list(record.headers or ()))
    except Exception:  # a bug in decoding must not stall the partition
        log.exception("undecodable message %s/%s", record.partition, record.offset)
        return DeadLetter("internal error while decoding")


async def _send_results(
    producer: AIOKafkaProducer, topic: str, results: list[Result]
) -> list[asyncio.Future[Any]]:
    """Queue the results, in order, keyed by requestId, on the partitions aiokafka's
    default partitioner would pick; returns the futures of their delivery.

    One record batch per partition is filled and handed over whole (`send_batch`):
    `send` cost ~15 µs of event loop per record (metadata lookup, the pure-Python
    partitioner, a future per record). A full batch is handed over and a new one
    started, so each partition keeps the results' order.
    """
    # The same wait and the same partition list that `send` takes for each record.
    all_partitions = list(await producer.partitions_for(topic))
    with collector_paused():
        encoded = [(result.request_id.encode(), _encoded(result)) for result in results]

    def placed() -> Iterator[tuple[int, bytes, bytes]]:
        for key, value in encoded:
            _refuse_oversized(key, value)
            yield partition_of(key, all_partitions), key, value

    return await send_in_record_batches(producer, topic, placed())


async def send_in_record_batches(
    producer: AIOKafkaProducer, topic: str, records: Iterable[tuple[int, bytes, bytes]]
) -> list[asyncio.Future[Any]]:
    """Queue (partition, key, value) records, in order, one record batch per partition
    filled and handed over whole; a full batch goes at once and a new one is started, so
    each partition keeps the records' order. Returns the futures of their delivery."""
    open_batches: dict[int, Any] = {}
    sent: list[asyncio.Future[Any]] = []
    for partition, key, value in records:
        batch = open_batches.get(partition)
        if batch is not None and batch.append(key=key, value=value, timestamp=None) is not None:
            continue
        if batch is not None:  # full: it goes now, the next one takes this record
            sent.append(await _hand_over(producer, batch, topic, partition))
        batch = open_batches[partition] = producer.create_batch()
        appended = batch.append(key=key, value=value, timestamp=None)
        assert appended is not None, "an empty batch takes a record of any size"
    for partition, batch in open_batches.items():
        sent.append(await _hand_over(producer, batch, topic, partition))
    return sent


def _refuse_oversized(key: bytes, value: bytes) -> None:
    """Refuse a result as `send` did: an empty batch takes a record of any size, the
    broker would not. Unreachable in practice (decoding keeps results small)."""
    if len(key) + len(value) <= RESULT_BYTES_CHECKED_MIN:
        return
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])
    if size > PRODUCER_REQUEST_BYTES_MAX:
        raise MessageSizeTooLargeError(f"a result of {size} bytes is over the request limit")


async def _hand_over(
    producer: AIOKafkaProducer, batch: Any, topic: str, partition: int
) -> asyncio.Future[Any]:
    """Queue a filled batch; closed, it goes out without lingering (nothing more is
    added to it, and every result is awaited before the offsets are committed)."""
    batch.close()
    future: asyncio.Future[Any] = await producer.send_batch(batch, topic, partition=partition)
    return future


def _dead_letter(record: Any, reason: str) -> tuple[bytes | None, bytes | None, list[Any]]:
    """Key, value and headers of a record's dead letter: the record unchanged plus our
    headers, unless it is too large to copy (see DLQ_RECORD_BYTES_MAX)."""
    ours = [
        ("x-dlq-reason", reason.encode()),
        ("x-dlq-source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
    ]
    value: bytes | None = record.value
    # Kafka takes a record with neither key nor value; aiokafka refuses to send one
    # (an assertion, on every retry): its dead letter gets an empty key.
    key: bytes | None = record.key if record.key is not None or value is not None else b""
    original = list(record.headers or ())
    size = len(key or b"") + len(value or b"")
    size += sum(len(name) + len(content or b"") for name, content in original)
    if size <= DLQ_RECORD_BYTES_MAX:
        return key, value, [*original, *ours]
    log.warning("dead letter %s has %s bytes: sent truncated", ours[1][1].decode(), size)
    truncated = ("x-dlq-truncated", str(len(value or b"")).encode())
    cut_key = None if key is None else key[:DLQ_KEY_BYTES_MAX]
    return cut_key, (value or b"")[:MESSAGE_BYTES_MAX], [*ours, truncated]


def _encoded(result: Result) -> bytes:
    """The result's bytes; text the encoder refuses is escaped rather than failing the
    batch on every retry (decoding keeps such text out, this is the last guard)."""
    try:
        return encode_result(result)
    except Exception:
        log.exception("result of %r cannot be encoded: text fields escaped", result.request_id)

        def safe(text: str | None) -> str | None:
            return None if text is None else text.encode("utf-8", "backslashreplace").decode()

        return encode_result(
            dataclasses.replace(
                result,
                type=safe(result.type) or "",
                agent_code=safe(result.agent_code) or "",
                message=safe(result.message) or "",
                txn_id=safe(result.txn_id),
            )
        )


def _handle_batch(ledger: Ledger, commands: list[Command]) -> list[Result]:
    return ledger.handle_batch(commands)


def _handle_one_by_one(ledger: Ledger, commands: list[Command]) -> list[Result]:
    """The batch keeps failing: find the command that fails and answer it alone with
    INTERNAL_SERVER_ERROR (not remembered: it may be retried once fixed).

    When every command of a batch of several fails, the failure is not one command's:
    it is raised (the batch is rewound and retried) rather than answered 1001 for all.
    """
    results: list[Result] = []
    failed = 0
    for command in commands:
        try:
            results.extend(ledger.handle_batch([command]))
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception:
            failed += 1
            if failed == len(commands) > 1:
                log.error("all %s commands fail on their own: not isolated", len(commands))
                raise
            log.exception("command %s fails on its own; answered 1001", command.request_id)
            results.append(
                Result(
                    request_id=command.request_id,
                    type=command.type_name,
                    agent_code=command.agent_code,
                    code=Code.INTERNAL_SERVER_ERROR,
                    message="internal error: the command was not applied; retry later",
                    processed_at_ms=int(time.time() * 1000),
                )
            )
    return results
