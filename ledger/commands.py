"""Commands: what a platform asks the ledger to do (imperative, frozen).

These are the core's own types, decoded from the wire by the edge. Values are
kept as the caller sent them (amounts as decimal text, codes as strings) and
validated by the handlers, which know the agent's currency. `timestamp_ms` is
the caller's clock, informational only, and not part of the idempotency
fingerprint: a retry with a fresher timestamp is the same request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

__all__ = [
    "Bet",
    "Command",
    "CreateAgent",
    "CreateUser",
    "Deposit",
    "InvalidCommand",
    "IssuePoints",
    "Refund",
    "TransferPoints",
    "Win",
    "Withdraw",
]

_NOT_FINGERPRINTED = frozenset({"timestamp_ms"})
# Fields whose case does not make another payload: the requestId is a UUID, `mode` and
# `kind` are enum values (contract section 3), `currency` an ISO 4217 code.
_CASE_BLIND = frozenset({"request_id", "mode", "kind", "currency"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """Common fields of every command; `type_name` is the canonical wire `type`."""

    type_name: ClassVar[str] = ""
    request_id: str
    agent_code: str
    timestamp_ms: int | None = None

    def fingerprint(self) -> str:
        """SHA-256 over the canonical payload: equal for an exact retry, different otherwise.

        Amounts are compared by value ("12.5" equals "12.50"); the requestId and the
        enum values (`mode`, `kind`: matched case-insensitively) and the currency code
        without regard to case; other text as sent.
        """
        payload: dict[str, Any] = {"type": self.type_name}
        for name in _fingerprinted_fields(type(self)):
            value = getattr(self, name)
            if name == "amount" and isinstance(value, str):
                value = _normalised_amount(value)
            elif name in _CASE_BLIND and isinstance(value, str):
                value = value.lower()
            elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
                value = str(value)  # no such user; orjson writes 64-bit integers only
            payload[name] = value
        try:
            canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # text that is not valid UTF-8 (a lone surrogate): escape it
            canonical = json.dumps(payload, sort_keys=True, ensure_ascii=True).encode()
        return hashlib.sha256(canonical).hexdigest()


_PLAIN_DECIMAL = re.compile(r"(\d+)(?:\.(\d+))?")


_FINGERPRINTED_FIELDS: dict[type[Command], tuple[str, ...]] = {}


def _fingerprinted_fields(cls: type[Command]) -> tuple[str, ...]:
    names = _FINGERPRINTED_FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.name not in _NOT_FINGERPRINTED)
        _FINGERPRINTED_FIELDS[cls] = names
    return names


def _normalised_amount(text: str) -> str:
    """A plain decimal without redundant zeros ("012.50" -> "12.5"); other text as sent.

    Exact string work: "1e2", "+100" or a 40-digit fraction stay different payloads.
    """
    match = _PLAIN_DECIMAL.fullmatch(text) if text.isascii() else None
    if match is None:
        return text
    whole = match.group(1).lstrip("0") or "0"
    fraction = (match.group(2) or "").rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateAgent(Command):
    type_name: ClassVar[str] = "createAgent"
    parent_code: str | None = None
    currency: str
    mode: str
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateUser(Command):
    type_name: ClassVar[str] = "createUser"
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuePoints(Command):
    type_name: ClassVar[str] = "issuePoints"
    amount: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferPoints(Command):
    type_name: ClassVar[str] = "transferPoints"
    to_agent_code: str
    amount: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Deposit(Command):
    type_name: ClassVar[str] = "deposit"
    user_code: int
    amount: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Withdraw(Command):
    """Withdraw `amount`, or everything the player holds when `amount` is None."""

    type_name: ClassVar[str] = "withdraw"
    user_code: int
    amount: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Bet(Command):
    type_name: ClassVar[str] = "bet"
    user_code: int
    txn_id: str
    round_id: str
    amount: str
    game_code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Win(Command):
    """A win; `kind` is one of game, bonus, jackpot, freespin, promotion (lower case).

    `round_id` is required for game wins only; other kinds need no bet or round.
    """

    type_name: ClassVar[str] = "win"
    user_code: int
    txn_id: str
    round_id: str | None = None
    amount: str
    kind: str = "game"
    completed: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Refund(Command):
    """Refund of the bet `txn_id`; `amount`, when given, must equal the bet."""

    type_name: ClassVar[str] = "refund"
    user_code: int
    txn_id: str
    amount: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidCommand(Command):
    """A message with a usable requestId that the edge could not decode into a command.

    It is answered with `code` and remembered like any other rejection, so that
    a later different payload under the same requestId is an idempotency conflict.
    `payload_digest` is the SHA-256 of the message's canonical form (see
    `consumers/decode.py::_payload_digest`).

    A message that does not say which request it is (its `X-MGP-REQ-ID` header names
    another requestId than its body) is not `remembered`: it is answered `code` every
    time, whatever the request log holds under either id, and it records nothing, so
    it neither answers for the request it names nor blocks its corrected retry.
    """

    type_name: ClassVar[str] = ""
    raw_type: str
    code: int
    message: str
    payload_digest: str
    remembered: bool = True

    def fingerprint(self) -> str:
        return self.payload_digest
