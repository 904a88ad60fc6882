"""A Ledger look-alike whose commands travel through Kafka and the running service.

The contract's rule tests take a `ledger`; given this one, every command they
send is encoded as the JSON a platform would send, published to the commands
topic keyed by agentCode, handled by a real `ledger run` process, and its
answer read back from the results topic and decoded into a `Result`. Reads of
state (books, the issuance, the recorder) come fresh from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any, TypeVar
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from eventsourcing.domain import Aggregate

from ledger.application import Ledger, RequestRecord
from ledger.book import AgentBook
from ledger.commands import Command, InvalidCommand
from ledger.results import Result
from tests.e2e.harness import Stack
from tests.wire import wire_bytes

__all__ = ["KafkaLedger"]

ANSWER_SECONDS_MAX = 30.0
A = TypeVar("A", bound=Aggregate)


def _minor(text: str | None) -> int | None:
    """Wire amounts always have exactly the currency's digits: "12.50" is 1250 minor units."""
    return None if text is None else int(text.replace(".", ""))


class KafkaLedger:
    """Sends commands to the service over Kafka; reads state from the store."""

    def __init__(self, stack: Stack, reader: Ledger) -> None:
        self.stack, self.reader = stack, reader
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._answers: dict[str, list[dict[str, Any]]] = {}
        self._arrived = threading.Condition()
        self._sent: Counter[str] = Counter()
        self._run(self._start())

    def _run(self, coroutine: Any, timeout: float = ANSWER_SECONDS_MAX) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.stack.bootstrap, enable_idempotence=True
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.stack.bootstrap, group_id=None, enable_auto_commit=False
        )
        await self._producer.start()
        await self._consumer.start()
        parts = await self._producer.partitions_for(self.stack.results)  # waits for metadata
        assigned = [TopicPartition(self.stack.results, p) for p in sorted(parts)]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_end(*assigned)
        for tp in assigned:
            await self._consumer.position(tp)
        self._reading = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for record in self._consumer:
            answer = json.loads(record.value)
            with self._arrived:
                self._answers.setdefault(answer["requestId"], []).append(answer)
                self._arrived.notify_all()

    async def _send(self, commands: Sequence[Command]) -> None:
        for command in commands:
            await self._producer.send_and_wait(
                self.stack.commands,
                wire_bytes(command),
                key=command.agent_code.encode(),
                headers=[("X-MGP-REQ-ID", command.request_id.encode())],
            )

    def handle(self, command: Command) -> Result:
        return self.handle_batch([command])[0]

    def handle_batch(self, commands: Sequence[Command]) -> list[Result]:
        """Publish in order and wait for each command's own answer. Commands of
        different agents may be handled in another order (other partitions)."""
        assert not any(isinstance(c, InvalidCommand) for c in commands), "not a wire message"
        wanted = []
        for command in commands:
            wanted.append((command.request_id, self._sent[command.request_id]))
            self._sent[command.request_id] += 1
        self._run(self._send(commands))
        with self._arrived:
            assert self._arrived.wait_for(
                lambda: all(len(self._answers.get(r, ())) > n for r, n in wanted),
                ANSWER_SECONDS_MAX,
            ), "the service did not answer in time"
            return [self._result(self._answers[r][n]) for r, n in wanted]

    def _result(self, wire: dict[str, Any]) -> Result:
        currency = None
        if "agentBalance" in wire:
            book = self.book(wire["agentCode"])
            currency = None if book is None else book.currency
        return Result(
            request_id=wire["requestId"],
            type=wire["type"],
            agent_code=wire["agentCode"],
            code=wire["code"],
            message=wire["message"],
            duplicate=wire["duplicate"],
            user_code=wire.get("userCode"),
            txn_id=wire.get("txnId"),
            currency=currency,
            balance_minor=_minor(wire.get("balance")),
            agent_balance_minor=_minor(wire.get("agentBalance")),
            event_id=wire.get("eventId"),
            sequence=wire.get("sequence"),
            processed_at_ms=wire["processedAtMs"],
        )

    # Reads: always from the store, as the service wrote it.

    def book(self, code: str) -> AgentBook | None:
        self.reader.clear_caches()
        return self.reader.book(code)

    def aggregate(self, stream_id: UUID, cls: type[A]) -> A | None:
        self.reader.clear_caches()
        return self.reader.aggregate(stream_id, cls)

    def request(self, request_id: str) -> RequestRecord | None:
        self.reader.clear_caches()
        return self.reader.request(request_id)

    @property
    def recorder(self) -> Any:
        return self.reader.recorder

    @property
    def mapper(self) -> Any:
        return self.reader.mapper

    def close(self) -> None:
        async def stop() -> None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
            await self._consumer.stop()
            await self._producer.stop()

        self._run(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self.reader.close()
