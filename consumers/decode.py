"""From Kafka bytes to core commands, and from core results to Kafka bytes.

A message is dead-lettered (never answered) only when it has no usable
requestId: not JSON, not an object, or no UUID string under `requestId`.
Everything else gets a result, schema violations included (VALIDATION_ERROR),
so a sender always learns what happened to a request it can name.

What the edge refuses before the core sees it, so that every answer can be
stored and published (PARAMETERS_INVALID, never applied):
- a message value over MESSAGE_BYTES_MAX bytes: no command needs it, and its
  echoed fields would make a result too large for Kafka (the partition would stall);
- a text field of the command holding NUL or an unpaired surrogate ("\\ud800" is
  valid JSON syntax but no Unicode text): neither can be encoded as UTF-8 or
  stored in a PostgreSQL text column.
A JSON number where the schema wants text (`"txnId": 1e400`) is VALIDATION_ERROR, like
any ill-typed field; only `amount` takes numbers.
Fields echoed from a refused message (`agentCode`, `type`) are echoed only when
they are short and encodable, else as "".

A requestId is usable when it is a UUID in its canonical text form
(8-4-4-4-12 hexadecimal digits, any case); `uuid.UUID` alone would also take
braces, "urn:uuid:", missing hyphens, underscores and non-ASCII digits.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from ledger import commands as core
from ledger.errors import Code
from ledger.money import currency_exponent, format_minor
from ledger.results import Result
from schemas import COMMAND_MODELS, JsonNumber, ResultMessage, loads_exact

__all__ = [
    "ECHO_CHARS_MAX",
    "MESSAGE_BYTES_MAX",
    "REQUEST_ID_HEADER",
    "DeadLetter",
    "decode",
    "encode_result",
    "result_message",
]

REQUEST_ID_HEADER = "X-MGP-REQ-ID"

# A command is a few hundred bytes; a value above this is refused (answered, never
# applied), which bounds every field a result echoes and every record we store.
MESSAGE_BYTES_MAX = 64 * 1024
# `agentCode` and `type` of a refused message are echoed up to this length.
ECHO_CHARS_MAX = 200

_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why a message cannot be answered; it goes to the DLQ unchanged."""

    reason: str


def _header(headers: list[tuple[str, bytes | None]] | None, name: str) -> str | None:
    """The first header of that name (case-insensitive); a header without a value is ""."""
    for key, value in headers or ():
        if key.lower() == name.lower():
            return (value or b"").decode("utf-8", "replace")
    return None


def _storable(text: str) -> bool:
    """Text that UTF-8 can encode and a PostgreSQL text column can hold."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate
        return False
    return True


def _echo(value: Any) -> str:
    """A field of a refused message as its result may carry it: short, storable text."""
    if isinstance(value, str) and len(value) <= ECHO_CHARS_MAX and _storable(value):
        return value
    return ""


def decode(
    value: bytes | None, headers: list[tuple[str, bytes | None]] | None = None
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

    def invalid(code: Code, message: str, *, remembered: bool = True) -> core.InvalidCommand:
        return core.InvalidCommand(
            request_id=request_id,
            agent_code=_echo(agent_code),
            raw_type=_echo(raw_type),
            code=code,
            message=message,
            payload_digest=_payload_digest(payload, value or b""),
            remembered=remembered,
        )

    header = _header(headers, REQUEST_ID_HEADER)
    if header is not None and header != request_id:
        return invalid(
            Code.PARAMETERS_INVALID,
            f"header {REQUEST_ID_HEADER} differs from requestId",
            remembered=False,
        )
    if len(value or b"") > MESSAGE_BYTES_MAX:
        return invalid(Code.PARAMETERS_INVALID, f"the message is over {MESSAGE_BYTES_MAX} bytes")
    if not isinstance(raw_type, str) or raw_type.lower() not in COMMAND_MODELS:
        return invalid(Code.VALIDATION_ERROR, "type is missing or unknown")
    model = COMMAND_MODELS[raw_type.lower()]
    for name in model.model_fields:
        text = payload.get(name)
        if isinstance(text, JsonNumber) and name != "amount":
            # JsonNumber is a str (it keeps an amount's exact text): the model's strict
            # `str` fields would take 1.5 or 1e400 for a txnId or an agentCode.
            return invalid(Code.VALIDATION_ERROR, f"{name}: a JSON number is not text")
        if isinstance(text, str) and not _storable(text):
            return invalid(
                Code.PARAMETERS_INVALID, f"{name}: NUL or an unpaired surrogate is not text"
            )
    try:
        fields = model.model_validate(payload).model_dump(exclude_none=True)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return invalid(Code.VALIDATION_ERROR, f"{where}: {first['msg']}")
    return _to_core(model.type_name, fields)


def _payload_digest(payload: dict[str, Any], value: bytes) -> str:
    """The fingerprint of a message the edge refuses: SHA-256 of its JSON object written
    with sorted keys, without `timestampMs` and with the requestId in lower case, so that
    a retry that differs only there, in key order or in spacing gets the same rejection
    (as a valid command's fingerprint ignores them). Numbers keep their text and stay
    apart from strings ("1.5" is not 1.5). A message too deep to write again falls back
    to its raw bytes."""
    try:
        canonical = {k: _tagged(v) for k, v in payload.items() if k != "timestampMs"}
        canonical["requestId"] = str(payload["requestId"]).lower()
        text = json.dumps(canonical, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    except (ValueError, RecursionError):
        return hashlib.sha256(value).hexdigest()
    return hashlib.sha256(text.encode()).hexdigest()


def _tagged(value: Any) -> Any:
    """`value` with every number kept as text (JsonNumber) marked as a number."""
    if isinstance(value, JsonNumber):
        return {"__number__": str(value)}
    if isinstance(value, dict):
        return {k: _tagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tagged(v) for v in value]
    return value


def _is_uuid(text: str) -> bool:
    return _CANONICAL_UUID.fullmatch(text) is not None


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
    """The wire form of a result: camelCase, amounts with the currency's digits, no nulls.

    Byte for byte what `result_message(result).to_json()` (the documented wire model)
    writes, keys in the model's order, but written by orjson from a dict: building and
    dumping a pydantic model per result cost the event loop ~6 µs. What orjson refuses
    (an integer beyond 64 bits, text with an unpaired surrogate) goes through the model
    as before, which writes it or raises as it always did."""
    exponent = currency_exponent(result.currency) if result.currency else 0
    body: dict[str, Any] = {
        "requestId": result.request_id,
        "type": result.type,
        "agentCode": result.agent_code,
        "code": int(result.code),
        "status": result.status,
        "message": result.message,
        "duplicate": result.duplicate,
    }
    if result.user_code is not None:
        body["userCode"] = result.user_code
    if result.txn_id is not None:
        body["txnId"] = result.txn_id
    if result.balance_minor is not None:
        body["balance"] = format_minor(result.balance_minor, exponent)
    if result.agent_balance_minor is not None:
        body["agentBalance"] = format_minor(result.agent_balance_minor, exponent)
    if result.event_id is not None:
        body["eventId"] = result.event_id
    if result.sequence is not None:
        body["sequence"] = result.sequence
    body["processedAtMs"] = result.processed_at_ms
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        return result_message(result).to_json()


def result_message(result: Result) -> ResultMessage:
    """The result as the documented wire model (schemas.ResultMessage)."""
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
    )
