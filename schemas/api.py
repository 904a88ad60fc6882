"""Bodies of the read-model HTTP API (CONTRACT.md section 6).

Every body is `{"code", "message", "data"}`; nulls are omitted on the wire
(`dump` drops them). Amounts are decimal strings with exactly the currency's
exponent digits. These models are also the OpenAPI document's schemas.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AgentData",
    "BalanceData",
    "ChildrenData",
    "Envelope",
    "ErrorEnvelope",
    "GgrData",
    "GgrDay",
    "HealthData",
    "TransactionItem",
    "TransactionPage",
    "UserData",
    "dump",
]

DataT = TypeVar("DataT")

_SEQUENCE = "How fresh the answer is: the read model reflects every event up to this sequence."


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def dump(model: BaseModel) -> dict[str, Any]:
    """The JSON-ready body of a model, nulls omitted."""
    return model.model_dump(mode="json", exclude_none=True)


class Envelope(_Wire, Generic[DataT]):
    """A successful answer."""

    code: int = Field(description="0, or an error code of contract section 5", examples=[0])
    message: str = Field(examples=["OK"])
    data: DataT


class ErrorEnvelope(_Wire):
    """An error answer: `data` is empty. The HTTP status follows from `code`."""

    code: int = Field(examples=[2001])
    message: str = Field(examples=["agent not found"])
    data: dict[str, Any] = Field(default_factory=dict, examples=[{}])


class AgentData(_Wire):
    code: str = Field(description="The agent's code", examples=["CASINO_1"])
    name: str | None = Field(default=None, examples=["Casino One"])
    parentCode: str | None = Field(
        default=None, description="Absent for a broker (a root)", examples=["OPERATOR_1"]
    )
    currency: str = Field(description="ISO 4217", examples=["USD"])
    mode: str = Field(description="transfer or seamless", examples=["transfer"])
    balance: str = Field(description="The agent's points (agent:<code>)", examples=["1000.00"])
    house: str = Field(
        description="The agent's house account (house:<code>): its players' GGR",
        examples=["-12.50"],
    )
    userCount: int = Field(description="Players registered directly at this agent", examples=[42])
    asOfSequence: int | None = Field(default=None, description=_SEQUENCE, examples=[1234])


class ChildrenData(_Wire):
    items: list[AgentData] = Field(description="Direct children, ordered by code")
    nextCursor: str | None = Field(
        default=None, description="Present only when more children follow", examples=["Q0FTSU5PXzI"]
    )
    asOfSequence: int = Field(description=_SEQUENCE, examples=[1234])


class UserData(_Wire):
    userCode: int = Field(examples=[1001])
    name: str = Field(examples=["alice"])
    agentCode: str = Field(examples=["CASINO_1"])
    currency: str = Field(examples=["USD"])
    balance: str | None = Field(
        default=None,
        description="The player's balance; transfer-mode agents only (absent for seamless)",
        examples=["87.50"],
    )
    asOfSequence: int = Field(description=_SEQUENCE, examples=[1234])


class TransactionItem(_Wire):
    transId: str = Field(
        description="Id of the event that recorded it: the command result's eventId",
        examples=["e857fb38-a089-5922-9c8e-3485c8c79728"],
    )
    sequence: int = Field(description="Global sequence of that event", examples=[1234])
    type: str = Field(
        description="bet, win, refund, deposit, withdraw, transferPoints or issuePoints",
        examples=["bet"],
    )
    transType: int = Field(
        description=(
            "Vendor number: 1 bet, 2 game win, 4 deposit, 8 withdraw, 16 refund, "
            "32 bonus/jackpot/freespin/promotion win, 64 point transfer, 128 point issue"
        ),
        examples=[1],
    )
    txnId: str | None = Field(default=None, examples=["txn-778"])
    roundId: str | None = Field(default=None, examples=["round-91"])
    userCode: int | None = Field(default=None, examples=[1001])
    amount: str = Field(examples=["12.50"])
    balanceBefore: str | None = Field(
        default=None,
        description="Agent history: the agent's points; user history: the player's balance "
        "(absent for seamless players)",
        examples=["100.00"],
    )
    balanceAfter: str | None = Field(default=None, examples=["87.50"])
    createdAtMs: int = Field(description="When the ledger recorded it (epoch ms)", examples=[1])


class TransactionPage(_Wire):
    items: list[TransactionItem] = Field(description="Oldest first")
    nextCursor: str | None = Field(
        default=None, description="Present only when more items follow", examples=["czEyMzQ"]
    )
    asOfSequence: int = Field(description=_SEQUENCE, examples=[1234])


class GgrDay(_Wire):
    date: str = Field(description="UTC day", examples=["2025-01-31"])
    bets: str = Field(examples=["1200.00"])
    wins: str = Field(
        description="Every kind of win (game, bonus, jackpot ...)", examples=["950.00"]
    )
    refunds: str = Field(examples=["50.00"])
    ggr: str = Field(description="bets - wins - refunds", examples=["200.00"])


class GgrData(_Wire):
    agentCode: str = Field(examples=["CASINO_1"])
    currency: str = Field(examples=["USD"])
    items: list[GgrDay] = Field(description="Days with activity, oldest first")
    asOfSequence: int = Field(description=_SEQUENCE, examples=[1234])


class BalanceData(_Wire):
    account: str = Field(examples=["player:1001"])
    currency: str = Field(examples=["USD"])
    balance: str | None = Field(
        default=None,
        description="The balance at that point (absent for a seamless agent's player)",
        examples=["87.50"],
    )
    sequence: int | None = Field(
        default=None,
        description="The stored event that set this balance (absent: never changed by then)",
        examples=[1200],
    )
    asOfSequence: int = Field(
        description="Every event up to this sequence was considered", examples=[1234]
    )


class HealthData(_Wire):
    status: str = Field(examples=["ok"])
    projectionPosition: int = Field(examples=[1234])
    storePosition: int = Field(examples=[1240])
