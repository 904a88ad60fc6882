"""Kafka plumbing of the simulator and the benchmarks (aiokafka, loopback only).

- `Sender` produces commands keyed by agentCode, with the `X-MGP-REQ-ID` header and a
  `timestampMs` taken at send time, optionally paced at a fixed rate.
- `ResultReader` reads a results topic from where it stood at start and keeps, per
  requestId, the first result's code, userCode, processedAtMs and arrival time.
- `build_world` sends a world's setup wave by wave, each after the previous one was
  answered, and returns the userCodes the ledger handed out.
- `topic_offsets` and `consume_range` read a span of a topic back (baselines, limits).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.bounds import RESULTS_WAIT_SECONDS_MAX
from bench.simulate import Player, World, deposits, to_wire
from ledger.commands import Command, CreateUser

__all__ = [
    "Arrival",
    "Pacer",
    "ResultReader",
    "Sender",
    "SetupError",
    "broker_holds",
    "build_world",
    "codes_of",
    "consume_range",
    "create_topics",
    "delete_topics",
    "now_ms",
    "partitions_of",
    "topic_offsets",
]

REQUEST_ID_HEADER = "X-MGP-REQ-ID"
PACING_SLACK_SECONDS = 0.002  # the sender sleeps only when this far ahead of schedule
READ_POLL_MS = 100
READ_RECORDS_MAX = 10_000  # per poll
ADMIN_TIMEOUT_MS = 30_000


def now_ms() -> float:
    """Wall-clock milliseconds: comparable with processedAtMs (same host)."""
    return time.time() * 1000


class SetupError(Exception):
    """A setup wave was not answered, or not accepted."""


# ------------------------------------------------------------------ topics


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


Offsets = dict[TopicPartition, int]


async def topic_offsets(bootstrap: str, topic: str) -> Offsets:
    """The end offset of every partition of `topic` now."""
    partitions = await partitions_of(bootstrap, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        ends: Offsets = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


async def broker_holds(bootstrap: str) -> dict[str, int]:
    """How many topics and partitions the broker holds (every one costs it some work,
    used or not: left-over test topics doubled the p99 at 5,000 commands/s)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return {
        "topics": len(described),
        "partitions": sum(len(t["partitions"]) for t in described),
    }


async def partitions_of(bootstrap: str, topic: str) -> list[TopicPartition]:
    """Every partition of `topic` (from the broker's metadata; the topic must exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    numbers = [p["partition"] for t in described if t["error_code"] == 0 for p in t["partitions"]]
    if not numbers:
        raise SetupError(f"topic {topic} does not exist")
    return [TopicPartition(topic, n) for n in sorted(numbers)]


async def consume_range(
    bootstrap: str,
    start: Offsets,
    end: Offsets,
    records_max: int,
    on_records: Callable[[list[Any]], Awaitable[None] | None],
    seconds_max: float = RESULTS_WAIT_SECONDS_MAX,
) -> int:
    """Read the records between `start` and `end` (at most `records_max`, for at most
    `seconds_max`), handing each fetched list to `on_records`; returns how many were
    handed over."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    handed = 0
    try:
        pending = {tp for tp in start if end[tp] > start[tp]}
        consumer.assign(list(pending))
        for tp in pending:
            consumer.seek(tp, start[tp])
        deadline = time.monotonic() + seconds_max
        while pending and handed < records_max and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=READ_POLL_MS, max_records=READ_RECORDS_MAX)
            for tp, records in fetched.items():
                wanted = [r for r in records if r.offset < end[tp]][: records_max - handed]
                handed += len(wanted)
                if wanted:
                    done = on_records(wanted)
                    if done is not None:
                        await done
                if records and records[-1].offset + 1 >= end[tp]:
                    pending.discard(tp)
                    consumer.pause(tp)  # reassigning would lose the others' positions
    finally:
        await consumer.stop()
    return handed


# ------------------------------------------------------------------ sending


class Pacer:
    """Spaces sends at a fixed rate, counted from the first send."""

    def __init__(self, rate_per_s: float) -> None:
        assert rate_per_s > 0
        self.rate_per_s = rate_per_s
        self.started: float | None = None
        self.count = 0

    async def wait(self) -> None:
        now = time.perf_counter()
        if self.started is None:
            self.started = now
        due = self.started + self.count / self.rate_per_s
        self.count += 1
        if due - now > PACING_SLACK_SECONDS:
            await asyncio.sleep(due - now)


class Sender:
    """An idempotent producer of commands; delivery errors surface at `flush`."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=True,  # implies acks=all
            linger_ms=5,
            max_batch_size=256 * 1024,
            request_timeout_ms=30_000,
            client_id="ledger-simulate",
        )
        self.sent = 0
        self._error: BaseException | None = None

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    def _delivered(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None and self._error is None:
            self._error = future.exception()

    async def send(self, command: Command) -> float:
        """Hand one command to the producer; returns its send time (wall ms)."""
        sent_ms = now_ms()
        body = orjson.dumps(to_wire(command, int(sent_ms)))
        future = await self.producer.send(
            self.topic,
            body,
            key=command.agent_code.encode(),
            headers=[(REQUEST_ID_HEADER, command.request_id.encode())],
        )
        future.add_done_callback(self._delivered)
        self.sent += 1
        return sent_ms

    async def send_all(
        self,
        commands: Iterable[Command],
        pacer: Pacer | None = None,
        sent_ms: dict[str, float] | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> int:
        """Send every command, spaced by `pacer` (none: as fast as possible); the first
        send time of each requestId goes into `sent_ms`. Returns how many were sent."""
        count = 0
        for command in commands:
            if pacer is not None:
                await pacer.wait()
            at_ms = await self.send(command)
            if sent_ms is not None:
                sent_ms.setdefault(command.request_id, at_ms)
            count += 1
        if on_sent is not None:
            on_sent(count)
        return count

    async def flush(self) -> None:
        await self.producer.flush()
        if self._error is not None:
            raise self._error


# ------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class Arrival:
    """The first result of one requestId, as a reader saw it."""

    received_ms: float
    code: int
    status: str
    duplicate: bool
    processed_at_ms: int
    user_code: int | None


class ResultReader:
    """Reads a results topic from its end at `start()`; first arrival per requestId."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_uncommitted",
            fetch_max_wait_ms=10,  # latency is measured at this reader
        )
        self.arrivals: dict[str, Arrival] = {}
        self.received = 0  # every result record, repeats included
        self.last_received_ms = 0.0
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        partitions = await partitions_of(self.bootstrap, self.topic)
        await self.consumer.start()
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve positions now, before any command is sent
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()

    def reset(self) -> None:
        """Forget what arrived so far (between benchmark phases)."""
        self.arrivals.clear()
        self.received = 0

    async def _read(self) -> None:
        while True:
            fetched = await self.consumer.getmany(
                timeout_ms=READ_POLL_MS, max_records=READ_RECORDS_MAX
            )
            received_ms = now_ms()
            for records in fetched.values():
                for record in records:
                    self._take(record.value, received_ms)
            if fetched:
                self.last_received_ms = received_ms
                self._progress.set()

    def _take(self, value: bytes, received_ms: float) -> None:
        self.received += 1
        result = orjson.loads(value)
        request_id = result["requestId"]
        if request_id not in self.arrivals:
            self.arrivals[request_id] = Arrival(
                received_ms,
                result["code"],
                result["status"],
                result.get("duplicate", False),
                result["processedAtMs"],
                result.get("userCode"),
            )

    async def wait_for(
        self, request_ids: Collection[str], seconds_max: float = RESULTS_WAIT_SECONDS_MAX
    ) -> set[str]:
        """Wait until every requestId was answered; returns those still missing."""
        missing = {r for r in request_ids if r not in self.arrivals}
        deadline = time.monotonic() + seconds_max
        while missing and time.monotonic() < deadline:
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
            missing = {r for r in missing if r not in self.arrivals}
        return missing

    async def wait_for_count(
        self, records: int, seconds_max: float = RESULTS_WAIT_SECONDS_MAX
    ) -> bool:
        """Wait until `records` results (repeats included) arrived since the last reset."""
        deadline = time.monotonic() + seconds_max
        while self.received < records and time.monotonic() < deadline:
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        return self.received >= records


# ------------------------------------------------------------------ the world's setup


async def build_world(
    world: World,
    sender: Sender,
    reader: ResultReader,
    on_sent: Callable[[int], None] | None = None,
) -> dict[Player, int]:
    """Send the setup wave by wave, as a platform must (a child after its parent, a
    deposit after the createUser that told its userCode); returns the userCodes."""
    for wave in world.waves:
        await _send_wave(wave, sender, reader, on_sent)
    creations = {
        (command.agent_code, command.name): command.request_id
        for wave in world.waves
        for command in wave
        if isinstance(command, CreateUser)
    }
    user_codes: dict[Player, int] = {}
    for player in world.players:
        code = reader.arrivals[creations[(player.agent_code, player.name)]].user_code
        assert code is not None, "an accepted createUser carries its userCode"
        user_codes[player] = code
    await _send_wave(deposits(world, user_codes), sender, reader, on_sent)
    return user_codes


async def _send_wave(
    wave: list[Command],
    sender: Sender,
    reader: ResultReader,
    on_sent: Callable[[int], None] | None,
) -> None:
    await sender.send_all(wave, on_sent=on_sent)
    await sender.flush()
    missing = await reader.wait_for([c.request_id for c in wave])
    if missing:
        raise SetupError(f"{len(missing)} setup commands unanswered: is the ledger running?")
    refused = {
        reader.arrivals[c.request_id].status for c in wave if reader.arrivals[c.request_id].code
    }
    if refused:
        raise SetupError(f"setup refused: {sorted(refused)}")


def codes_of(arrivals: Mapping[str, Arrival], request_ids: Iterable[str]) -> dict[str, int]:
    """How many of `request_ids` got each status ("OK (repeat)": answered from the
    request log, as a duplicate)."""
    counts: dict[str, int] = {}
    for request_id in request_ids:
        arrival = arrivals.get(request_id)
        status = "UNANSWERED" if arrival is None else arrival.status
        if arrival is not None and arrival.duplicate:
            status += " (repeat)"
        counts[status] = counts.get(status, 0) + 1
    return dict(sorted(counts.items()))
