"""A reference model of the ledger's wire contract, written to be obviously correct.

Independent of `ledger/` except for the command and code types: plain dicts of
balances per account, rounds, transactions and request records. It answers every
command with a `ModelResult`, the part of a `Result` the contract pins down.

Sources, in order: CONTRACT.md sections 1, 2, 3 and 5; where the contract is
silent, the decisions the implementation documents (README):
- non-game win kinds never open or close a round and need no roundId;
- a game win on a round whose bets were all refunded is TRANSACTION_NOT_FOUND;
- a refund naming the txnId of a win is TRANSACTION_NOT_FOUND and is not remembered;
- requestIds are UUIDs: two spellings that differ only in case are one request;
- a refund whose userCode differs from the bet's is PARAMETERS_INVALID;
- withdraw-all of a zero balance is BALANCE_NOT_ENOUGH;
- every balance stays within +-922,337,203,685,477 minor units; only house and
  issuance may be negative; issuance is one account per currency;
- the idempotency fingerprint ignores timestampMs and compares amounts by value
  ("12.5" equals "12.50"), every other field as sent;
- a bet repeating the content of a bet that was refunded since is
  TRANSACTION_ROLLED_BACK (other content: DUPLICATE_TRANSACTION);
- amount text longer than 40 characters is PARAMETERS_INVALID;
- a txnId, roundId or gameCode that is empty or longer than 128 characters is
  PARAMETERS_INVALID, checked before anything but a win's kind and roundId presence;
- checks run in this order: agent exists -> (deposit/withdraw: mode) -> user belongs
  to the agent -> amount parses -> transaction rules -> balances, debit before credit.

Every command checks everything first and only then changes state, so a refused
command changes nothing.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from ledger.commands import (
    Bet,
    Command,
    CreateAgent,
    CreateUser,
    Deposit,
    IssuePoints,
    Refund,
    TransferPoints,
    Win,
    Withdraw,
)
from ledger.errors import Code

__all__ = ["BALANCE_MAX_MINOR", "CURRENCY_EXPONENTS", "ModelResult", "ReferenceModel"]

BALANCE_MAX_MINOR = 922_337_203_685_477
AMOUNT_TEXT_CHARS_MAX = 40
AGENT_NAME_CHARS_MAX = 200
USER_CODE_FIRST = 1001
CURRENCY_EXPONENTS = {"USD": 2, "KRW": 0, "BHD": 3}
MODES = ("transfer", "seamless")
WIN_KINDS = ("game", "bonus", "jackpot", "freespin", "promotion")

_AGENT_CODE = re.compile(r"[A-Za-z0-9_-]{2,50}")
_USER_NAME = re.compile(r"[A-Za-z0-9_]{2,50}")
_PLAIN_DECIMAL = re.compile(r"([0-9]+)(?:\.([0-9]+))?")


@dataclass(frozen=True, slots=True)
class ModelResult:
    """What the contract says a result carries; None where the ledger omits the field."""

    code: int
    balance_minor: int | None = None
    agent_balance_minor: int | None = None
    user_code: int | None = None
    duplicate: bool = False


@dataclass
class ModelTxn:
    kind: str  # "bet", "win", or "void" (a refund that came before its bet)
    request_id: str
    user_code: int
    round_id: str | None
    amount_minor: int
    refund_request_id: str | None = None


@dataclass
class ModelAgent:
    code: str
    parent_code: str | None
    currency: str
    mode: str
    name: str | None
    request_id: str
    points_minor: int = 0
    house_minor: int = 0
    players: dict[int, int] = field(default_factory=dict)  # userCode -> balance
    user_by_name: dict[str, int] = field(default_factory=dict)
    user_request: dict[int, str] = field(default_factory=dict)  # userCode -> createUser request
    rounds: dict[str, bool] = field(default_factory=dict)  # roundId -> open
    standing_bets: dict[str, set[str]] = field(default_factory=dict)  # roundId -> txnIds
    txns: dict[str, ModelTxn] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, code: Code) -> None:
        super().__init__(code.name)
        self.code = code


class _SameAs(Exception):
    """The command repeats an earlier request by content: answer with that request's result."""

    def __init__(self, request_id: str) -> None:
        super().__init__(request_id)
        self.request_id = request_id


def amount_value(text: str) -> tuple[int, str] | None:
    """The value of plain decimal text as (whole, fraction without trailing zeros), else None."""
    match = _PLAIN_DECIMAL.fullmatch(text)
    if match is None:
        return None
    return int(match.group(1)), (match.group(2) or "").rstrip("0")


def fingerprint(command: Command) -> tuple[Any, ...]:
    """Equal for two payloads that are the same request: timestampMs is ignored, amounts
    with a value compare by value, the requestId, mode, kind and currency in any case;
    everything else compares as sent."""
    parts: list[Any] = [type(command).__name__]
    for item in dataclasses.fields(command):
        if item.name == "timestamp_ms":
            continue
        value = getattr(command, item.name)
        if item.name == "amount" and isinstance(value, str):
            valued = amount_value(value)
            value = ("value", valued) if valued is not None else ("text", value)
        elif item.name in ("request_id", "mode", "kind", "currency") and isinstance(value, str):
            value = value.lower()
        parts.append((item.name, value))
    return tuple(parts)


def _check_ids(*ids: str | None) -> None:
    """txnId, roundId, gameCode: 1 to 128 characters when present (README decision)."""
    if any(text is not None and not 0 < len(text) <= 128 for text in ids):
        raise _Refused(Code.PARAMETERS_INVALID)


def parse_amount(text: str, currency: str, *, zero_allowed: bool) -> int:
    """Minor units of decimal text; PARAMETERS_INVALID for anything else (section 1)."""
    if len(text) > AMOUNT_TEXT_CHARS_MAX:
        raise _Refused(Code.PARAMETERS_INVALID)
    match = _PLAIN_DECIMAL.fullmatch(text)
    if match is None:
        raise _Refused(Code.PARAMETERS_INVALID)
    exponent = CURRENCY_EXPONENTS[currency]
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > exponent:
        raise _Refused(Code.PARAMETERS_INVALID)
    amount_minor = int(whole + fraction.ljust(exponent, "0"))
    if amount_minor == 0 and not zero_allowed:
        raise _Refused(Code.PARAMETERS_INVALID)
    return amount_minor


def plus(balance_minor: int, amount_minor: int) -> int:
    if balance_minor + amount_minor > BALANCE_MAX_MINOR:
        raise _Refused(Code.BALANCE_LIMIT_EXCEEDED)
    return balance_minor + amount_minor


def minus(balance_minor: int, amount_minor: int, shortfall: Code | None) -> int:
    """`shortfall` is the code when the result is below zero; None for accounts that may
    go negative (house, issuance), which still stop at minus the ceiling."""
    after = balance_minor - amount_minor
    if shortfall is not None and after < 0:
        raise _Refused(shortfall)
    if after < -BALANCE_MAX_MINOR:
        raise _Refused(Code.BALANCE_LIMIT_EXCEEDED)
    return after


class ReferenceModel:
    """The whole ledger as plain dicts. `apply` answers one command."""

    def __init__(self) -> None:
        self.agents: dict[str, ModelAgent] = {}
        self.agent_of_user: dict[int, str] = {}
        self.next_user_code = USER_CODE_FIRST
        self.issuance: dict[str, int] = {}  # currency -> balance (zero or negative)
        self.requests: dict[str, tuple[tuple[Any, ...], ModelResult]] = {}

    # ------------------------------------------------------------ entry point

    def apply(self, command: Command) -> ModelResult:
        seen = self.requests.get(command.request_id.lower())  # a UUID: any case
        if seen is not None:
            if seen[0] != fingerprint(command):
                return ModelResult(Code.IDEMPOTENCY_CONFLICT)  # not remembered
            return dataclasses.replace(seen[1], duplicate=True)
        handler = {
            CreateAgent: self.create_agent,
            CreateUser: self.create_user,
            IssuePoints: self.issue_points,
            TransferPoints: self.transfer_points,
            Deposit: self.deposit,
            Withdraw: self.withdraw,
            Bet: self.bet,
            Win: self.win,
            Refund: self.refund,
        }[type(command)]
        try:
            result = handler(command)
        except _Refused as refused:
            result = ModelResult(refused.code)
        except _SameAs as same:
            result = dataclasses.replace(self.requests[same.request_id.lower()][1], duplicate=True)
        self.requests[command.request_id.lower()] = (fingerprint(command), result)
        return result

    # ---------------------------------------------------------------- lookups

    def _agent(self, code: str) -> ModelAgent:
        if not _AGENT_CODE.fullmatch(code):
            raise _Refused(Code.PARAMETERS_INVALID)
        agent = self.agents.get(code)
        if agent is None:
            raise _Refused(Code.AGENT_NOT_FOUND)
        return agent

    def _check_player(self, agent: ModelAgent, user_code: int) -> None:
        if user_code in agent.players:
            return
        if user_code in self.agent_of_user:
            raise _Refused(Code.PERMISSION_ERROR)
        raise _Refused(Code.USER_NOT_FOUND)

    @staticmethod
    def _answer(
        agent: ModelAgent, user_code: int | None = None, code: Code = Code.OK
    ) -> ModelResult:
        balance = None
        if user_code is not None and agent.mode == "transfer":
            balance = agent.players[user_code]
        return ModelResult(code, balance, agent.points_minor, user_code)

    @staticmethod
    def _stake(agent: ModelAgent, user_code: int) -> tuple[int, Code]:
        """The balance a stake comes from and the code when it is short: the player's in
        transfer mode, the agent's points in seamless mode."""
        if agent.mode == "transfer":
            return agent.players[user_code], Code.BALANCE_NOT_ENOUGH
        return agent.points_minor, Code.POINT_NOT_ENOUGH

    @staticmethod
    def _set_stake(agent: ModelAgent, user_code: int, balance_minor: int) -> None:
        if agent.mode == "transfer":
            agent.players[user_code] = balance_minor
        else:
            agent.points_minor = balance_minor

    # --------------------------------------------------------------- commands

    def create_agent(self, cmd: CreateAgent) -> ModelResult:
        if not _AGENT_CODE.fullmatch(cmd.agent_code):
            raise _Refused(Code.PARAMETERS_INVALID)
        mode = cmd.mode.lower()
        if mode not in MODES:
            raise _Refused(Code.VALIDATION_ERROR)
        currency = cmd.currency.upper()
        if currency not in CURRENCY_EXPONENTS:
            raise _Refused(Code.CURRENCY_NOT_SUPPORTED)
        if cmd.name is not None and not 1 <= len(cmd.name) <= AGENT_NAME_CHARS_MAX:
            raise _Refused(Code.PARAMETERS_INVALID)
        existing = self.agents.get(cmd.agent_code)
        if existing is not None:
            definition = (cmd.parent_code, currency, mode, cmd.name)
            if (
                existing.parent_code,
                existing.currency,
                existing.mode,
                existing.name,
            ) == definition:
                raise _SameAs(existing.request_id)
            raise _Refused(Code.AGENT_EXISTS)
        if cmd.parent_code is not None and self._agent(cmd.parent_code).currency != currency:
            raise _Refused(Code.CURRENCY_NOT_SUPPORTED)
        agent = ModelAgent(
            cmd.agent_code, cmd.parent_code, currency, mode, cmd.name, cmd.request_id
        )
        self.agents[agent.code] = agent
        return self._answer(agent)

    def create_user(self, cmd: CreateUser) -> ModelResult:
        agent = self._agent(cmd.agent_code)
        if not _USER_NAME.fullmatch(cmd.name):
            raise _Refused(Code.PARAMETERS_INVALID)
        if cmd.name in agent.user_by_name:
            raise _SameAs(agent.user_request[agent.user_by_name[cmd.name]])
        user_code = self.next_user_code
        self.next_user_code += 1
        self.agent_of_user[user_code] = agent.code
        agent.players[user_code] = 0
        agent.user_by_name[cmd.name] = user_code
        agent.user_request[user_code] = cmd.request_id
        return self._answer(agent, user_code)

    def issue_points(self, cmd: IssuePoints) -> ModelResult:
        agent = self._agent(cmd.agent_code)
        amount_minor = parse_amount(cmd.amount, agent.currency, zero_allowed=False)
        if agent.parent_code is not None:
            raise _Refused(Code.PERMISSION_ERROR)
        points = plus(agent.points_minor, amount_minor)
        source = minus(self.issuance.get(agent.currency, 0), amount_minor, None)
        agent.points_minor = points
        self.issuance[agent.currency] = source
        return self._answer(agent)

    def transfer_points(self, cmd: TransferPoints) -> ModelResult:
        sender = self._agent(cmd.agent_code)
        receiver = self._agent(cmd.to_agent_code)
        amount_minor = parse_amount(cmd.amount, sender.currency, zero_allowed=False)
        if receiver.parent_code != sender.code and sender.parent_code != receiver.code:
            raise _Refused(Code.PERMISSION_ERROR)
        sender_after = minus(sender.points_minor, amount_minor, Code.POINT_NOT_ENOUGH)
        receiver_after = plus(receiver.points_minor, amount_minor)
        sender.points_minor = sender_after
        receiver.points_minor = receiver_after
        return self._answer(sender)

    def deposit(self, cmd: Deposit) -> ModelResult:
        agent = self._agent(cmd.agent_code)
        if agent.mode != "transfer":
            raise _Refused(Code.PERMISSION_ERROR)
        self._check_player(agent, cmd.user_code)
        amount_minor = parse_amount(cmd.amount, agent.currency, zero_allowed=False)
        points = minus(agent.points_minor, amount_minor, Code.POINT_NOT_ENOUGH)
        balance = plus(agent.players[cmd.user_code], amount_minor)
        agent.points_minor = points
        agent.players[cmd.user_code] = balance
        return self._answer(agent, cmd.user_code)

    def withdraw(self, cmd: Withdraw) -> ModelResult:
        agent = self._agent(cmd.agent_code)
        if agent.mode != "transfer":
            raise _Refused(Code.PERMISSION_ERROR)
        self._check_player(agent, cmd.user_code)
        if cmd.amount is None:
            amount_minor = agent.players[cmd.user_code]
            if amount_minor == 0:
                raise _Refused(Code.BALANCE_NOT_ENOUGH)
        else:
            amount_minor = parse_amount(cmd.amount, agent.currency, zero_allowed=False)
        balance = minus(agent.players[cmd.user_code], amount_minor, Code.BALANCE_NOT_ENOUGH)
        points = plus(agent.points_minor, amount_minor)
        agent.points_minor = points
        agent.players[cmd.user_code] = balance
        return self._answer(agent, cmd.user_code)

    @staticmethod
    def _txn_reuse(
        agent: ModelAgent,
        txn_id: str,
        kind: str,
        user_code: int,
        round_id: str | None,
        amount_minor: int,
    ) -> None:
        """A txnId is used once per agent, forever (section 3, game rules)."""
        txn = agent.txns.get(txn_id)
        if txn is None:
            return
        if txn.kind == "void" and kind == "bet":
            raise _Refused(Code.TRANSACTION_ROLLED_BACK)
        content = (kind, user_code, round_id, amount_minor)
        if (txn.kind, txn.user_code, txn.round_id, txn.amount_minor) != content:
            raise _Refused(Code.DUPLICATE_TRANSACTION)
        if txn.refund_request_id is not None:
            raise _Refused(Code.TRANSACTION_ROLLED_BACK)
        raise _SameAs(txn.request_id)

    def bet(self, cmd: Bet) -> ModelResult:
        _check_ids(cmd.txn_id, cmd.round_id, cmd.game_code)
        agent = self._agent(cmd.agent_code)
        self._check_player(agent, cmd.user_code)
        amount_minor = parse_amount(cmd.amount, agent.currency, zero_allowed=True)
        self._txn_reuse(agent, cmd.txn_id, "bet", cmd.user_code, cmd.round_id, amount_minor)
        if agent.rounds.get(cmd.round_id) is False:
            raise _Refused(Code.ROUND_CLOSED)
        stake, shortfall = self._stake(agent, cmd.user_code)
        stake_after = minus(stake, amount_minor, shortfall)
        house_after = plus(agent.house_minor, amount_minor)
        self._set_stake(agent, cmd.user_code, stake_after)
        agent.house_minor = house_after
        agent.rounds[cmd.round_id] = True
        agent.standing_bets.setdefault(cmd.round_id, set()).add(cmd.txn_id)
        agent.txns[cmd.txn_id] = ModelTxn(
            "bet", cmd.request_id, cmd.user_code, cmd.round_id, amount_minor
        )
        return self._answer(agent, cmd.user_code)

    def win(self, cmd: Win) -> ModelResult:
        kind = cmd.kind.lower()
        if kind not in WIN_KINDS or (kind == "game" and cmd.round_id is None):
            raise _Refused(Code.VALIDATION_ERROR)
        _check_ids(cmd.txn_id, cmd.round_id)
        agent = self._agent(cmd.agent_code)
        self._check_player(agent, cmd.user_code)
        amount_minor = parse_amount(cmd.amount, agent.currency, zero_allowed=True)
        self._txn_reuse(agent, cmd.txn_id, "win", cmd.user_code, cmd.round_id, amount_minor)
        if kind == "game":
            assert cmd.round_id is not None
            if cmd.round_id not in agent.rounds:
                raise _Refused(Code.TRANSACTION_NOT_FOUND)
            if agent.rounds[cmd.round_id] is False:
                raise _Refused(Code.ROUND_CLOSED)
            if not agent.standing_bets.get(cmd.round_id):  # every bet was refunded
                raise _Refused(Code.TRANSACTION_NOT_FOUND)
        stake, _ = self._stake(agent, cmd.user_code)
        house_after = minus(agent.house_minor, amount_minor, None)
        stake_after = plus(stake, amount_minor)
        agent.house_minor = house_after
        self._set_stake(agent, cmd.user_code, stake_after)
        if kind == "game" and cmd.completed:
            assert cmd.round_id is not None
            agent.rounds[cmd.round_id] = False
        agent.txns[cmd.txn_id] = ModelTxn(
            "win", cmd.request_id, cmd.user_code, cmd.round_id, amount_minor
        )
        return self._answer(agent, cmd.user_code)

    def refund(self, cmd: Refund) -> ModelResult:
        _check_ids(cmd.txn_id)
        agent = self._agent(cmd.agent_code)
        self._check_player(agent, cmd.user_code)
        amount_minor = None
        if cmd.amount is not None:
            amount_minor = parse_amount(cmd.amount, agent.currency, zero_allowed=True)
        txn = agent.txns.get(cmd.txn_id)
        if txn is None:
            # The refund overtook its bet: answered not found, and remembered.
            agent.txns[cmd.txn_id] = ModelTxn("void", cmd.request_id, cmd.user_code, None, 0)
            return ModelResult(Code.TRANSACTION_NOT_FOUND, None, None, None)
        if txn.kind != "bet":
            raise _Refused(Code.TRANSACTION_NOT_FOUND)
        if txn.user_code != cmd.user_code:
            raise _Refused(Code.PARAMETERS_INVALID)
        if txn.refund_request_id is not None:
            raise _SameAs(txn.refund_request_id)
        assert txn.round_id is not None
        if agent.rounds[txn.round_id] is False:
            raise _Refused(Code.ROUND_CLOSED)
        if amount_minor is not None and amount_minor != txn.amount_minor:
            raise _Refused(Code.PARAMETERS_INVALID)
        stake, _ = self._stake(agent, cmd.user_code)
        house_after = minus(agent.house_minor, txn.amount_minor, None)
        stake_after = plus(stake, txn.amount_minor)
        agent.house_minor = house_after
        self._set_stake(agent, cmd.user_code, stake_after)
        txn.refund_request_id = cmd.request_id
        agent.standing_bets[txn.round_id].discard(cmd.txn_id)
        return self._answer(agent, cmd.user_code)
