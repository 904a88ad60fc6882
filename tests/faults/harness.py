"""A fault run: a Stack of `ledger run` processes, a Kafka client that keeps sending and
reading while faults happen, and the closing comparison with an independent reference.

- `KafkaClient` owns one event loop in a thread: an idempotent producer (plain or paced
  sends) and a reader that follows the results and dead-letter topics from offset zero
  the whole time, through broker restarts. Tests wait on what it has read.
- `build_world` sends a casino world's setup wave by wave (a child after its parent, a
  deposit after the createUser that told its userCode) and returns it in ledger order.
- `verify_run` compares every answer and every final balance with the reference model
  (`tests/unit/reference_model.py`, which shares no code with `ledger/`), counts what was
  lost, doubled or answered inconsistently, checks the store for requests applied twice,
  and runs `audit verify` over the whole store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from psycopg import sql

from ledger.application import Ledger
from ledger.audit import verify
from ledger.commands import Command, CreateAgent, CreateUser, Deposit, TransferPoints
from ledger.settings import Settings, store_env
from tests.bench.workload import World, world_as_built
from tests.unit.reference_model import ModelResult, ReferenceModel
from tests.wire import wire_bytes

__all__ = [
    "KafkaClient",
    "Message",
    "ReadSide",
    "RunFigures",
    "accounts_differing",
    "build_world",
    "message",
    "serve_hostile_world",
    "verify_run",
]

Message = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]
T = TypeVar("T")

CALL_SECONDS_MAX = 120.0
BURST_SLICE_MESSAGES = 2_000  # a burst's record batches are built this much of the stream at a time
SETUP_SECONDS_MAX = 120.0
PACE_TICK_SECONDS = 0.05
PRODUCER_REQUEST_TIMEOUT_MS = 120_000  # outlasts a broker restart: sends wait, in order
VIEWS_CATCH_UP_SECONDS_MAX = 120.0


def message(command: Command) -> Message:
    """A command as a platform sends it: keyed by agentCode, with the request id header."""
    return (
        command.agent_code.encode(),
        wire_bytes(command),
        [("X-MGP-REQ-ID", command.request_id.encode())],
    )


class KafkaClient:
    """Producer and reader of one test, on an event loop of their own (a thread)."""

    def __init__(self, bootstrap: str, commands: str, results: str, dlq: str) -> None:
        self.bootstrap, self.commands, self.results_topic, self.dlq_topic = (
            bootstrap,
            commands,
            results,
            dlq,
        )
        self.answers: dict[str, list[dict[str, Any]]] = {}
        self.results_read = 0
        self.dead: list[Any] = []
        self.sent = 0
        self.pacing_done = threading.Event()
        self._arrived = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._pacer: asyncio.Future[None] | None = None
        self._reading: asyncio.Future[None] | None = None
        try:
            self._call(self._start())
        except BaseException:
            self.close()
            raise

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float = CALL_SECONDS_MAX) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _start(self) -> None:
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=256 * 1024,
            request_timeout_ms=PRODUCER_REQUEST_TIMEOUT_MS,
            max_request_size=2 * 1024 * 1024,
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=8 * 1024 * 1024,
            max_partition_fetch_bytes=2 * 1024 * 1024,
        )
        await self._producer.start()
        await self._consumer.start()
        assigned = []
        for topic in (self.results_topic, self.dlq_topic):
            partitions = await self._producer.partitions_for(topic)
            assigned.extend(TopicPartition(topic, p) for p in sorted(partitions))
        self._consumer.assign(assigned)
        await self._consumer.seek_to_beginning(*assigned)
        self._reading = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=5_000)
            except KafkaError:  # the broker is restarting: read on once it is back
                await asyncio.sleep(0.5)
                continue
            with self._arrived:
                for tp, records in batches.items():
                    if tp.topic == self.dlq_topic:
                        self.dead.extend(records)
                        continue
                    for record in records:
                        answer = json.loads(record.value)
                        self.answers.setdefault(answer["requestId"], []).append(answer)
                        self.results_read += 1
                if batches:
                    self._arrived.notify_all()

    # ------------------------------------------------------------------ sending

    async def _send(self, messages: Iterable[Message]) -> None:
        sent = []
        for key, value, headers in messages:
            sent.append(await self._producer.send(self.commands, value, key=key, headers=headers))
            self.sent += 1
        await asyncio.gather(*sent)

    def send(self, messages: Sequence[Message]) -> None:
        """Send in order and wait until the broker has every message."""
        self._call(self._send(messages))

    def send_burst(self, messages: Sequence[Message]) -> float:
        """Send in order as fast as the broker takes them, wait until everything was
        delivered; returns the seconds it took.

        The record batches are built before the clock starts (partitions chosen by the
        producer's own default partitioner, murmur2 of the key, as `send` would), one
        slice of BURST_SLICE_MESSAGES of the stream at a time, so partitions stay as
        interleaved as the producer's own batching leaves them. Timed, the producer only
        hands batches to the broker: what the ledger sees arrive. Sent one by one,
        messages arrived at ~47,000/s, no longer ten times the ledger's 6,600/s."""

        async def burst() -> float:
            assert self._producer is not None
            producer = self._producer
            partitions = sorted(await producer.partitions_for(self.commands))
            choose = DefaultPartitioner()
            built: list[tuple[int, Any]] = []  # (partition, batch), in stream order
            for start in range(0, len(messages), BURST_SLICE_MESSAGES):
                open_batches: dict[int, Any] = {}
                for key, value, headers in messages[start : start + BURST_SLICE_MESSAGES]:
                    partition = choose(key, partitions, partitions)
                    record = {"key": key, "value": value, "timestamp": None, "headers": headers}
                    batch = open_batches.get(partition)
                    if batch is None or batch.append(**record) is None:
                        if batch is not None:  # full: it goes out, a new one follows it
                            built.append((partition, batch))
                        batch = open_batches[partition] = producer.create_batch()
                        appended = batch.append(**record)
                        assert appended is not None, "one message exceeds a whole batch"
                built.extend(open_batches.items())
            started = self._loop.time()
            delivered = []
            for partition, batch in built:
                sent = await producer.send_batch(batch, self.commands, partition=partition)
                delivered.append(sent)
                self.sent += batch.record_count()
            await asyncio.gather(*delivered)
            return self._loop.time() - started

        return self._call(burst(), timeout=CALL_SECONDS_MAX * 5)

    def send_null_record(self, partition: int) -> None:
        """A record with neither key nor value: Kafka and other clients allow it, aiokafka's
        `send` refuses it, so it goes through the producer's accumulator directly."""

        async def null() -> None:
            assert self._producer is not None
            await self._producer.client._wait_on_metadata(self.commands)
            delivered = await self._producer._message_accumulator.add_message(
                TopicPartition(self.commands, partition), None, None, 30.0, timestamp_ms=None
            )
            await delivered
            self.sent += 1

        self._call(null())

    def send_paced(self, messages: Sequence[Message], per_second: float) -> None:
        """Start sending in the background, `per_second` messages a second, in order."""
        assert self._pacer is None, "one paced stream at a time"
        self.pacing_done.clear()

        async def pace() -> None:
            started = self._loop.time()
            done = 0
            try:
                while done < len(messages):
                    due = min(len(messages), int((self._loop.time() - started) * per_second) + 1)
                    if due > done:
                        await self._send(messages[done:due])
                        done = due
                    await asyncio.sleep(PACE_TICK_SECONDS)
            finally:
                self.pacing_done.set()

        self._pacer = asyncio.run_coroutine_threadsafe(pace(), self._loop)  # type: ignore[assignment]

    def wait_paced(self, seconds: float) -> None:
        assert self._pacer is not None
        self._pacer.result(seconds)  # type: ignore[union-attr]
        self._pacer = None

    # ------------------------------------------------------------------ reading

    def answered(self, request_ids: Iterable[str]) -> int:
        with self._arrived:
            return sum(1 for r in request_ids if r in self.answers)

    def wait_for(self, done: Callable[[], bool], seconds: float) -> bool:
        """Wait until `done()` (called under the reader's lock) holds; False on time-out."""
        with self._arrived:
            return self._arrived.wait_for(done, seconds)

    def wait_answered(self, request_ids: set[str], seconds: float) -> dict[str, list[Any]]:
        """Every answer of the given requestIds once each has one; fails on time-out."""
        missing: list[int] = []

        def done() -> bool:
            missing[:] = [sum(1 for r in request_ids if r not in self.answers)]
            return missing[0] == 0

        assert self.wait_for(done, seconds), f"{missing[0]} of {len(request_ids)} unanswered"
        with self._arrived:
            return {r: list(self.answers[r]) for r in request_ids}

    def snapshot(self) -> tuple[dict[str, list[dict[str, Any]]], list[Any]]:
        """Copies of every answer (by requestId, in arrival order) and dead letter read so far."""
        with self._arrived:
            return {r: list(a) for r, a in self.answers.items()}, list(self.dead)

    def close(self) -> None:
        async def stop() -> None:
            if self._reading is not None:
                self._reading.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._reading
            for client in (getattr(self, "_consumer", None), getattr(self, "_producer", None)):
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.stop()

        with contextlib.suppress(Exception):
            self._call(stop(), timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


# ------------------------------------------------------------------ the world


def _setup_wave(command: Command) -> int:
    """A command may depend on agents of other partitions only from an earlier wave."""
    if isinstance(command, CreateAgent):
        return 0 if command.parent_code is None else 1 if command.parent_code == "BROKER" else 2
    if isinstance(command, TransferPoints):
        return 2 if command.agent_code == "BROKER" else 3
    if isinstance(command, CreateUser):
        return 3
    return 4 if isinstance(command, Deposit) else 0


def build_world(client: KafkaClient, world: World) -> World:
    """Send the setup wave by wave; return the world as the ledger built it (userCodes are
    handed out in the order the ledger saw the createUser commands)."""
    setup = [c for c in world.setup if _setup_wave(c) < 4]
    for wave in range(4):
        commands = [c for c in setup if _setup_wave(c) == wave]
        client.send([message(c) for c in commands])
        answers = client.wait_answered({c.request_id for c in commands}, SETUP_SECONDS_MAX)
        assert all(answers[c.request_id][0]["code"] == 0 for c in commands)
    creations = [c for c in setup if isinstance(c, CreateUser)]
    answers = client.wait_answered({c.request_id for c in creations}, SETUP_SECONDS_MAX)
    code_of = {
        planned: answers[command.request_id][0]["userCode"]
        for command, planned in zip(creations, world.players, strict=True)
    }
    deposits = [
        replace(c, user_code=code_of[(c.agent_code, c.user_code)])
        for c in world.setup
        if isinstance(c, Deposit)
    ]
    client.send([message(c) for c in deposits])
    answers = client.wait_answered({c.request_id for c in deposits}, SETUP_SECONDS_MAX)
    assert all(answers[c.request_id][0]["code"] == 0 for c in deposits)
    return world_as_built(world, code_of, deposits)


# ------------------------------------------------------------------ the verdict


@dataclass
class RunFigures:
    """What one run did and what the comparison found; every count after `lost` must be 0."""

    scenario: str
    commands: int = 0  # distinct requestIds of play (setup excluded)
    messages: int = 0  # play messages sent (wire duplicates included)
    results: int = 0  # results read for them (redeliveries included)
    redelivered: int = 0  # results beyond the first per requestId
    faults: dict[str, int] = field(default_factory=dict)
    lost: int = 0  # requestIds without any result
    inconsistent: int = 0  # requestIds whose results differ beyond duplicate/processedAtMs
    wrong: int = 0  # results that differ from the reference
    doubled: int = 0  # requestIds whose money event is in the store more than once
    balances_wrong: int = 0  # accounts whose final balance differs from the reference
    audit_findings: int = 0
    crashes: int = 0  # service processes that exited on their own during the run
    events: int = 0
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.inconsistent
            or self.wrong
            or self.doubled
            or self.balances_wrong
            or self.audit_findings
            or self.crashes
        )


def _money(minor: int | None) -> str | None:
    """USD text with two digits (every fault world is in USD)."""
    if minor is None:
        return None
    whole, cents = divmod(minor, 100)
    return f"{whole}.{cents:02d}"


def _same(wire: dict[str, Any], expected: ModelResult, agent_points: bool) -> bool:
    return (
        wire["code"] == expected.code
        and wire.get("balance") == _money(expected.balance_minor)
        and (not agent_points or wire.get("agentBalance") == _money(expected.agent_balance_minor))
        and wire.get("userCode") == expected.user_code
    )


def _comparable(wire: dict[str, Any]) -> str:
    return json.dumps(
        {k: v for k, v in wire.items() if k not in ("duplicate", "processedAtMs")}, sort_keys=True
    )


def verify_run(
    figures: RunFigures,
    stack: Any,
    world: World,
    play: Sequence[Command],
    answers: dict[str, list[dict[str, Any]]],
    agent_points_exact: bool = True,
    prelude: Sequence[Command] = (),
) -> RunFigures:
    """Compare the run with the reference model and the store; fill in `figures`.

    `play` is every play message in the order sent (wire duplicates included). With
    `agent_points_exact` false the agents' points in results are not compared: they
    depend on how transfers from other partitions interleave (final points still are).
    `prelude` ran before the world's setup (its agents are not compared here).
    """
    model = ReferenceModel()
    for command in [*prelude, *world.setup]:
        model.apply(command)
    expected: dict[str, ModelResult] = {}
    for command in play:
        result = model.apply(command)
        expected.setdefault(command.request_id, result)
    figures.commands = len(expected)
    figures.messages = len(play)
    mismatches: list[Any] = []
    for request_id, reference in expected.items():
        wires = answers.get(request_id, [])
        if not wires:
            figures.lost += 1
            continue
        figures.results += len(wires)
        figures.redelivered += len(wires) - 1
        if len({_comparable(w) for w in wires}) != 1:
            figures.inconsistent += 1
            mismatches.append(("inconsistent", wires))
        if not all(_same(w, reference, agent_points_exact) for w in wires):
            figures.wrong += 1
            mismatches.append(("wrong", wires[0], reference))
    figures.doubled = _requests_applied_twice(stack.database_url, stack.schema)
    others = {c.agent_code for c in prelude if isinstance(c, CreateAgent)}
    figures.balances_wrong, figures.audit_findings, figures.events = _store_checks(
        stack, model, others
    )
    assert figures.clean, (figures, mismatches[:5])
    return figures


def _requests_applied_twice(database_url: str, schema: str) -> int:
    """requestIds whose primary book event is in the store more than once."""
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        row = conn.execute(
            sql.SQL(
                """SELECT count(*) FROM (
                     SELECT convert_from(state, 'UTF8')::jsonb->>'request_id' AS r
                     FROM {}.ledger_events
                     WHERE topic LIKE 'ledger.book:AgentBook.%%'
                       AND topic NOT LIKE '%%PointsReceived'
                     GROUP BY r HAVING count(*) > 1) AS twice"""
            ).format(sql.Identifier(schema))
        ).fetchone()
    return int(row[0]) if row else 0


def accounts_differing(ledger: Ledger, model: ReferenceModel, codes: Iterable[str]) -> int:
    """How many accounts of these agents hold another balance in `ledger` than in `model`."""
    wrong = 0
    for code in codes:
        agent, book = model.agents[code], ledger.book(code)
        assert book is not None, code
        wrong += book.points_minor != agent.points_minor
        wrong += book.house_minor != agent.house_minor
        stored = {int(user): entry[1] for user, entry in book.players.items()}
        wrong += sum(1 for u, b in agent.players.items() if stored.get(u) != b)
        wrong += len(set(stored) - set(agent.players))
    return wrong


def _store_checks(stack: Any, model: ReferenceModel, others: set[str]) -> tuple[int, int, int]:
    """(accounts that differ from the model, audit findings, events audited)."""
    ledger = Ledger(store_env(stack.database_url, stack.schema, pool_size=1))
    try:
        wrong = accounts_differing(ledger, model, set(model.agents) - others)
        report = verify(ledger.recorder, ledger.mapper.transcoder)
        return wrong, len(report.findings), report.events
    finally:
        ledger.close()


def views_position(database_url: str, schema: str) -> tuple[int, int]:
    """(the views' position, the store's last sequence)."""
    with psycopg.connect(database_url, connect_timeout=10, autocommit=True) as conn:
        views = conn.execute(
            sql.SQL("SELECT coalesce(max(position), 0) FROM {}.view_tracking").format(
                sql.Identifier(schema)
            )
        ).fetchone()
        store = conn.execute(
            sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}.ledger_events").format(
                sql.Identifier(schema)
            )
        ).fetchone()
    return int(views[0] if views else 0), int(store[0] if store else 0)


def wait_views_caught_up(database_url: str, schema: str) -> int:
    """The projector survived the run: the views reach the store's last sequence."""
    deadline = time.monotonic() + VIEWS_CATCH_UP_SECONDS_MAX
    while True:
        views, store = views_position(database_url, schema)
        if views >= store:
            return views
        assert time.monotonic() < deadline, f"the views stay at {views} of {store}"
        time.sleep(0.2)


def rid() -> str:
    return str(uuid.uuid4())


@dataclass
class ReadSide:
    """A store holding `setup`, its views, the API over them, and tokens by agent."""

    settings: Settings
    ledger: Ledger
    server: Any  # tests.integration.read_side.ApiServer
    tokens: dict[str, str]


@contextlib.contextmanager
def serve_hostile_world(
    database_url: str, schema: str, wait_ms: int, setup: Sequence[Command] | None = None
) -> Iterator[ReadSide]:
    """The hostile world (or `setup`) written to `schema`, projected once, and the API
    served over it; tokens for HB (the root) and HC."""
    from tests.faults.hostile import HOSTILE_WORLD
    from tests.integration.read_side import (
        ApiServer,
        new_ledger,
        projector,
        settings_for,
        token_for,
    )

    settings = settings_for(database_url, schema, api_min_sequence_wait_ms=wait_ms)
    ledger = new_ledger(settings)
    try:
        commands = list(HOSTILE_WORLD if setup is None else setup)
        assert all(r.code == 0 for r in ledger.handle_batch(commands))
        projector(settings, ledger).catch_up()
        tokens = {code: token_for(settings, code)[0] for code in ("HB", "HC")}
        server = ApiServer(settings)
        try:
            yield ReadSide(settings, ledger, server, tokens)
        finally:
            server.stop()
    finally:
        ledger.close()
