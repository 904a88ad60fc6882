"""A small typed async client for producers of `ledger.commands`.

    async with LedgerClient("127.0.0.1:19092") as ledger:
        await ledger.create_agent("BR", currency="USD", mode="transfer", wait=True)
        result = await ledger.bet("CA", user_code=1001, txn_id="t1", round_id="r1",
                                  amount="12.50", wait=True)

Every method sends one command keyed by its agentCode with the `X-MGP-REQ-ID`
header, and returns the requestId, or the matching result from
`ledger.results` when `wait=True`. A requestId is generated unless given:
give the same one to retry safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas import ResultMessage

__all__ = ["LedgerClient"]

RESULT_WAIT_SECONDS_DEFAULT = 30.0


class LedgerClient:
    """Sends commands; optionally waits for their results (read from the topic's end)."""

    def __init__(
        self,
        bootstrap_servers: str,
        commands_topic: str = "ledger.commands",
        results_topic: str = "ledger.results",
    ) -> None:
        self.commands_topic = commands_topic
        self.results_topic = results_topic
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers, enable_idempotence=True, linger_ms=1
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None
        )
        self._waiting: dict[str, asyncio.Future[ResultMessage]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        await self._producer.start()
        await self._consumer.start()
        partitions = await self._producer.partitions_for(self.results_topic)  # waits for metadata
        assigned = [TopicPartition(self.results_topic, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_end(*assigned)
        for tp in assigned:  # resolve positions now, before any command is sent
            await self._consumer.position(tp)
        self._reader = asyncio.create_task(self._read_results())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._consumer.stop()
        await self._producer.stop()

    async def _read_results(self) -> None:
        async for record in self._consumer:
            result = ResultMessage.model_validate_json(record.value)
            waiter = self._waiting.pop(result.requestId, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(result)

    async def send(
        self,
        body: dict[str, Any],
        *,
        wait: bool = False,
        timeout: float = RESULT_WAIT_SECONDS_DEFAULT,
    ) -> str | ResultMessage:
        """Send one command object (camelCase); returns its requestId or, with wait, its result."""
        body = {key: value for key, value in body.items() if value is not None}
        request_id = str(body.setdefault("requestId", str(uuid.uuid4())))
        waiter: asyncio.Future[ResultMessage] | None = None
        if wait:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting[request_id] = waiter
        await self._producer.send_and_wait(
            self.commands_topic,
            json.dumps(body).encode(),
            key=str(body["agentCode"]).encode(),
            headers=[("X-MGP-REQ-ID", request_id.encode())],
        )
        if waiter is None:
            return request_id
        try:
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self._waiting.pop(request_id, None)

    async def create_agent(
        self,
        agent_code: str,
        *,
        currency: str,
        mode: str,
        parent_code: str | None = None,
        name: str | None = None,
        request_id: str | None = None,
        wait: bool = False,
    ) -> Any:
        return await self.send(
            {
                "type": "createAgent",
                "requestId": request_id,
                "agentCode": agent_code,
                "parentCode": parent_code,
                "currency": currency,
                "mode": mode,
                "name": name,
            },
            wait=wait,
        )

    async def create_user(
        self, agent_code: str, *, name: str, request_id: str | None = None, wait: bool = False
    ) -> Any:
        return await self.send(
            {"type": "createUser", "requestId": request_id, "agentCode": agent_code, "name": name},
            wait=wait,
        )

    async def issue_points(
        self, agent_code: str, *, amount: str, request_id: str | None = None, wait: bool = False
    ) -> Any:
        return await self.send(
            {
                "type": "issuePoints",
                "requestId": request_id,
                "agentCode": agent_code,
                "amount": amount,
            },
            wait=wait,
        )

    async def transfer_points(
        self,
        agent_code: str,
        *,
        to_agent_code: str,
        amount: str,
        request_id: str | None = None,
        wait: bool = False,
    ) -> Any:
        return await self.send(
            {
                "type": "transferPoints",
                "requestId": request_id,
                "agentCode": agent_code,
                "toAgentCode": to_agent_code,
                "amount": amount,
            },
            wait=wait,
        )

    async def deposit(
        self,
        agent_code: str,
        *,
        user_code: int,
        amount: str,
        request_id: str | None = None,
        wait: bool = False,
    ) -> Any:
        return await self.send(
            {
                "type": "deposit",
                "requestId": request_id,
                "agentCode": agent_code,
                "userCode": user_code,
                "amount": amount,
            },
            wait=wait,
        )

    async def withdraw(
        self,
        agent_code: str,
        *,
        user_code: int,
        amount: str | None = None,
        request_id: str | None = None,
        wait: bool = False,
    ) -> Any:
        return await self.send(
            {
                "type": "withdraw",
                "requestId": request_id,
                "agentCode": agent_code,
                "userCode": user_code,
                "amount": amount,
            },
            wait=wait,
        )

    async def bet(
        self,
        agent_code: str,
        *,
        user_code: int,
        txn_id: str,
        round_id: str,
        amount: str,
        game_code: str | None = None,
        request_id: str | None = None,
        wait: bool = False,
    ) -> Any:
        return await self.send(
            {
                "type": "bet",
                "requestId": request_id,
                "agentCode": agent_code,
                "userCode": user_code,
                "txnId": txn_id,
                "roundId": round_id,
                "amount": amount,
                "gameCode": game_code,
            },
            wait=wait,
        )

    async def win(
        self,
        agent_code: str,
        *,
        user_code: int,
        txn_id: str,
        amount: str,
        round_id: str | None = None,
        kind: str = "game",
        completed: bool = True,
        request_id: str | None = None,
        wait: bool = False,
    ) -> Any:
        return await self.send(
            {
                "type": "win",
                "requestId": request_id,
                "agentCode": agent_code,
                "userCode": user_code,
                "txnId": txn_id,
                "roundId": round_id,
                "amount": amount,
                "kind": kind,
                "completed": completed,
            },
            wait=wait,
        )

    async def refund(
        self,
        agent_code: str,
        *,
        user_code: int,
        txn_id: str,
        amount: str | None = None,
        request_id: str | None = None,
        wait: bool = False,
    ) -> Any:
        return await self.send(
            {
                "type": "refund",
                "requestId": request_id,
                "agentCode": agent_code,
                "userCode": user_code,
                "txnId": txn_id,
                "amount": amount,
            },
            wait=wait,
        )
