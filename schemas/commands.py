"""Command messages of topic `ledger.commands` (CONTRACT.md section 3).

Field names are camelCase and case-sensitive; unknown fields are ignored.
Types are strict (a userCode of "1001" is ill-typed). Amounts are decimal
strings or JSON numbers, and a JSON number keeps its exact source text.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt

__all__ = ["COMMAND_MODELS", "CommandModel", "JsonNumber", "loads_exact"]

JSON_INT_DIGITS_MAX = 40


class JsonNumber(str):
    """The source text of a JSON number that is not a small integer, kept exactly."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_int(text: str) -> int | JsonNumber:
    # Huge integers stay text: int() of 5,000 digits raises, and amounts want text anyway.
    return int(text) if len(text.lstrip("-")) <= JSON_INT_DIGITS_MAX else JsonNumber(text)


# Values of a command as orjson and `_loads_exact` read them alike: a flat object of
# these is taken from orjson as is (its integers fit 64 bits, far below the digit limit).
_EXACT_TYPES = frozenset({str, int, bool, type(None)})
assert len(str(2**64)) <= JSON_INT_DIGITS_MAX


def loads_exact(raw: bytes) -> Any:
    """Parse JSON without floats: decimals stay as JsonNumber text, NaN/Infinity are refused.

    A command is a flat object of text, integers and booleans: orjson reads it ~4 times
    faster than `json` with hooks, and its reading is exact then. Anything else (a
    number with a fraction or beyond 64 bits, nesting, a message orjson refuses) is
    read again by the exact parser, which gives the answer or the error as before.
    """
    try:
        fast = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _loads_exact(raw)
    if type(fast) is dict and all(type(value) in _EXACT_TYPES for value in fast.values()):
        return fast
    return _loads_exact(raw)


def _loads_exact(raw: bytes) -> Any:
    return json.loads(
        raw, parse_float=JsonNumber, parse_int=_parse_int, parse_constant=_reject_constant
    )


def _amount_text(value: Any) -> Any:
    """An amount is a decimal string or a JSON number (kept as its exact text)."""
    if isinstance(value, bool):
        raise ValueError("amount must be a decimal string or a JSON number")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return str(value)
    raise ValueError("amount must be a decimal string or a JSON number")


Amount = Annotated[
    str,
    BeforeValidator(_amount_text),
    Field(
        description='Decimal amount in the agent\'s currency, e.g. "12.50"; '
        "at most the currency's minor-unit digits; no sign, no exponent.",
        examples=["12.50", "1000"],
    ),
]
Code = Annotated[str, Field(description="Agent code, [A-Za-z0-9_-]{2,50}", examples=["casino-01"])]
UserCode = Annotated[
    StrictInt, Field(description="Integer userCode the ledger assigned", examples=[1001])
]
TxnId = Annotated[
    str, Field(description="Transaction id, unique per agent forever", examples=["tx-1"])
]


class CommandModel(BaseModel):
    """Fields every command has."""

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=False)
    type_name: ClassVar[str] = ""

    requestId: str = Field(
        description="UUID, the idempotency key", examples=["0b9b6f7e-2f64-4f59-9f1a-8d0c2b7e1a11"]
    )
    agentCode: Code
    timestampMs: StrictInt | None = Field(default=None, description="Sender's clock, epoch ms")


class CreateAgentModel(CommandModel):
    type_name: ClassVar[str] = "createAgent"
    parentCode: Code | None = Field(default=None, description="Absent for a broker (a root)")
    currency: str = Field(description="ISO 4217 code", examples=["USD", "KRW"])
    mode: str = Field(description="transfer or seamless (any case)", examples=["transfer"])
    name: str | None = Field(default=None, examples=["Casino One"])


class CreateUserModel(CommandModel):
    type_name: ClassVar[str] = "createUser"
    name: str = Field(description="[A-Za-z0-9_]{2,50}", examples=["alice_01"])


class IssuePointsModel(CommandModel):
    type_name: ClassVar[str] = "issuePoints"
    amount: Amount


class TransferPointsModel(CommandModel):
    type_name: ClassVar[str] = "transferPoints"
    toAgentCode: Code
    amount: Amount


class DepositModel(CommandModel):
    type_name: ClassVar[str] = "deposit"
    userCode: UserCode
    amount: Amount


class WithdrawModel(CommandModel):
    type_name: ClassVar[str] = "withdraw"
    userCode: UserCode
    amount: Amount | None = Field(default=None, description="Absent: withdraw everything")


class BetModel(CommandModel):
    type_name: ClassVar[str] = "bet"
    userCode: UserCode
    txnId: TxnId
    roundId: str = Field(examples=["round-9"])
    amount: Amount
    gameCode: str | None = None


class WinModel(CommandModel):
    type_name: ClassVar[str] = "win"
    userCode: UserCode
    txnId: TxnId
    roundId: str | None = Field(default=None, description="Required for kind game")
    amount: Amount
    kind: str = Field(default="game", description="game, bonus, jackpot, freespin or promotion")
    completed: StrictBool = Field(default=True, description="A completed game win closes the round")


class RefundModel(CommandModel):
    type_name: ClassVar[str] = "refund"
    userCode: UserCode
    txnId: TxnId = Field(description="The txnId of the bet to refund")
    amount: Amount | None = Field(default=None, description="If given, must equal the bet")


# Wire `type` (matched case-insensitively) -> its model.
COMMAND_MODELS: dict[str, type[CommandModel]] = {
    model.type_name.lower(): model
    for model in (
        CreateAgentModel,
        CreateUserModel,
        IssuePointsModel,
        TransferPointsModel,
        DepositModel,
        WithdrawModel,
        BetModel,
        WinModel,
        RefundModel,
    )
}
