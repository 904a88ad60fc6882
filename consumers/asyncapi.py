"""The AsyncAPI 3.0 document of the ledger's Kafka interface (documentation only).

    faststream docs gen consumers.asyncapi:app --out docs/asyncapi.json   # make asyncapi

This FastStream app is never run: it connects to nothing, opens no database,
and its handler has no body. It exists so that the wire models of `schemas/`
become the published contract of the three topics. The real service
(consumers/app.py) decodes raw bytes itself, because it must answer even a
command that fails validation; nothing here changes that.

The command models get a `type` field here: on the wire it selects the
model (matched case-insensitively), while `schemas/` keeps it out of the
models because decode reads it before choosing one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import Field

from consumers.decode import REQUEST_ID_HEADER
from ledger.settings import Settings
from schemas import ResultMessage
from schemas.commands import (
    BetModel,
    CreateAgentModel,
    CreateUserModel,
    DepositModel,
    IssuePointsModel,
    RefundModel,
    TransferPointsModel,
    WinModel,
    WithdrawModel,
)

__all__ = ["DOC_COMMAND_MODELS", "app", "broker"]

_TYPE = "Command type; matched case-insensitively on the wire."
_TOPICS = Settings.model_fields
COMMANDS_TOPIC = str(_TOPICS["commands_topic"].default)
RESULTS_TOPIC = str(_TOPICS["results_topic"].default)
DLQ_TOPIC = str(_TOPICS["dlq_topic"].default)


class CreateAgent(CreateAgentModel):
    """Create an agent: a broker (no parentCode) or a child of an existing agent."""

    type: Literal["createAgent"] = Field(description=_TYPE)


class CreateUser(CreateUserModel):
    """Create a player under the agent; the result carries its userCode."""

    type: Literal["createUser"] = Field(description=_TYPE)


class IssuePoints(IssuePointsModel):
    """Create points on a root agent (issuance -> agent)."""

    type: Literal["issuePoints"] = Field(description=_TYPE)


class TransferPoints(TransferPointsModel):
    """Move points between a parent and its direct child, either way."""

    type: Literal["transferPoints"] = Field(description=_TYPE)


class Deposit(DepositModel):
    """Agent points -> player balance (transfer mode)."""

    type: Literal["deposit"] = Field(description=_TYPE)


class Withdraw(WithdrawModel):
    """Player balance -> agent points (transfer mode); no amount withdraws all."""

    type: Literal["withdraw"] = Field(description=_TYPE)


class Bet(BetModel):
    """A stake: player (transfer) or agent (seamless) -> house; opens the round."""

    type: Literal["bet"] = Field(description=_TYPE)


class Win(WinModel):
    """A payout: house -> player (transfer) or agent (seamless)."""

    type: Literal["win"] = Field(description=_TYPE)


class Refund(RefundModel):
    """Reverse a bet of an open round, in full."""

    type: Literal["refund"] = Field(description=_TYPE)


DOC_COMMAND_MODELS = (
    CreateAgent,
    CreateUser,
    IssuePoints,
    TransferPoints,
    Deposit,
    Withdraw,
    Bet,
    Win,
    Refund,
)
LedgerCommand = Annotated[
    CreateAgent
    | CreateUser
    | IssuePoints
    | TransferPoints
    | Deposit
    | Withdraw
    | Bet
    | Win
    | Refund,
    Field(discriminator="type"),
]

broker = KafkaBroker(
    "127.0.0.1:19092",
    description="Kafka of the ledger (deploy/local; production brokers are configured by "
    "KAFKA_BOOTSTRAP_SERVERS).",
)
app = FastStream(
    broker,
    specification=AsyncAPI(
        title="ledger",
        version="1.0.0",
        description="Event-sourced double-entry ledger for casino platforms: commands in, "
        "exactly one result per consumed command out (at-least-once, identical content; "
        "dedupe by the requestId key), unusable messages to the DLQ. Contract: CONTRACT.md.",
    ),
)

results = broker.publisher(
    RESULTS_TOPIC,
    schema=ResultMessage,
    title=RESULTS_TOPIC,
    description="One result per consumed command, duplicates included. Key: the requestId "
    "(UTF-8). A redelivered command is answered again with its original content and "
    "`duplicate: true`. Nulls are omitted; amounts are strings with the currency's digits.",
)
dead_letters = broker.publisher(
    DLQ_TOPIC,
    schema=bytes,
    title=DLQ_TOPIC,
    description="Messages without a usable requestId (not JSON, not an object, requestId "
    "missing or not a UUID), unchanged: same key, value and headers, plus header "
    "`x-dlq-reason` (why) and `x-dlq-source` (`topic/partition/offset` of the original).",
)


@broker.subscriber(
    COMMANDS_TOPIC,
    group_id="ledger",
    title=COMMANDS_TOPIC,
    description="Commands of casino platforms, one JSON object each (camelCase; unknown "
    "fields ignored). Key: the UTF-8 agentCode, so one agent's commands stay ordered on one "
    f"partition. Optional header `{REQUEST_ID_HEADER}`: if present it must equal requestId, "
    "else the answer is PARAMETERS_INVALID. A command that fails validation is still "
    "answered (VALIDATION_ERROR) when it has a UUID requestId; otherwise it is dead-lettered.",
)
async def ledger_commands(command: LedgerCommand) -> None:
    """Documentation only: consumers/app.py is the real handler."""
