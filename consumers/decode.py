"""From Kafka bytes to core commands, and from core results to Kafka bytes.

A message is dead-lettered (never answered) only when it has no usable
requestId: not JSON, not an object, or no UUID string under `requestId`.
Everything else gets a result, schema violations included (VALIDATION_ERROR),
so a sender always learns what happened to a request it can name.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ledger import commands as core
from ledger.errors import Code
from ledger.money import currency_exponent, format_minor
from ledger.results import Result
from schemas import COMMAND_MODELS, ResultMessage, loads_exact

__all__ = ["REQUEST_ID_HEADER", "DeadLetter", "decode", "encode_result"]

REQUEST_ID_HEADER = "X-MGP-REQ-ID"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why a message cannot be answered; it goes to the DLQ unchanged."""

    reason: str


def _header(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key.lower() == name.lower():
            return value.decode("utf-8", "replace")
    return None


def decode(
    value: bytes | None, headers: list[tuple[str, bytes]] | None = None
) -> core.Command | DeadLetter:
    """Decode one message value (and its headers) into a core command or a dead letter."""
    try:
        payload = loads_exact(value or b"")
    except (ValueError, RecursionError, UnicodeDecodeError):
        return DeadLetter("value is not JSON")
    if not isinstance(payload, dict):
        return DeadLetter("value is not a JSON object")
    request_id = payload.get("requestId")
    if not isinstance(request_id, str) or not _is_uuid(request_id):
        return DeadLetter("no usable requestId (a UUID string)")
    raw_type = payload.get("type")
    agent_code = payload.get("agentCode")

    def invalid(code: Code, message: str) -> core.InvalidCommand:
        return core.InvalidCommand(
            request_id=request_id,
            agent_code=agent_code if isinstance(agent_code, str) else "",
            raw_type=raw_type if isinstance(raw_type, str) else "",
            code=code,
            message=message,
            payload_digest=hashlib.sha256(value or b"").hexdigest(),
        )

    header = _header(headers, REQUEST_ID_HEADER)
    if header is not None and header != request_id:
        return invalid(
            Code.PARAMETERS_INVALID, f"header {REQUEST_ID_HEADER} differs from requestId"
        )
    if not isinstance(raw_type, str) or raw_type.lower() not in COMMAND_MODELS:
        return invalid(Code.VALIDATION_ERROR, "type is missing or unknown")
    model = COMMAND_MODELS[raw_type.lower()]
    try:
        fields = model.model_validate(payload).model_dump(exclude_none=True)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return invalid(Code.VALIDATION_ERROR, f"{where}: {first['msg']}")
    return _to_core(model.type_name, fields)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


_CORE_TYPES: dict[str, type[core.Command]] = {
    cls.type_name: cls
    for cls in (
        core.CreateAgent,
        core.CreateUser,
        core.IssuePoints,
        core.TransferPoints,
        core.Deposit,
        core.Withdraw,
        core.Bet,
        core.Win,
        core.Refund,
    )
}
_FIELD_NAMES = {
    "requestId": "request_id",
    "agentCode": "agent_code",
    "timestampMs": "timestamp_ms",
    "parentCode": "parent_code",
    "toAgentCode": "to_agent_code",
    "userCode": "user_code",
    "txnId": "txn_id",
    "roundId": "round_id",
    "gameCode": "game_code",
}


def _to_core(type_name: str, fields: dict[str, Any]) -> core.Command:
    return _CORE_TYPES[type_name](**{_FIELD_NAMES.get(k, k): v for k, v in fields.items()})


def encode_result(result: Result) -> bytes:
    """The wire form of a result: camelCase, amounts with the currency's digits, no nulls."""
    exponent = currency_exponent(result.currency) if result.currency else 0

    def amount(minor: int | None) -> str | None:
        return None if minor is None else format_minor(minor, exponent)

    return ResultMessage(
        requestId=result.request_id,
        type=result.type,
        agentCode=result.agent_code,
        code=result.code,
        status=result.status,
        message=result.message,
        duplicate=result.duplicate,
        userCode=result.user_code,
        txnId=result.txn_id,
        balance=amount(result.balance_minor),
        agentBalance=amount(result.agent_balance_minor),
        eventId=result.event_id,
        sequence=result.sequence,
        processedAtMs=result.processed_at_ms,
    ).to_json()
