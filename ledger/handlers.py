"""Use cases: one plain function per command type, listed in HANDLERS.

A handler loads what it needs through the batch (a unit of work), checks the
rules that need more than one aggregate, calls the aggregate's command method
and answers with a Result. It raises `ledger.errors` to refuse, or
`SameAsOriginal` to answer with an earlier request's result.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

from ledger.book import AgentBook
from ledger.bounds import ID_CHARS_MAX, NAME_CHARS_MAX
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
from ledger.domain import MODES, USER_NAME, WIN_KINDS, Issuance, SameAsOriginal, UserDirectory
from ledger.errors import (
    AgentExists,
    AgentNotFound,
    BalanceNotEnough,
    Code,
    CurrencyNotSupported,
    ParametersInvalid,
    PermissionError_,
    UserNotFound,
    ValidationError,
)
from ledger.money import currency_exponent, parse_minor
from ledger.results import Result

__all__ = ["AGENT_CODE", "HANDLERS", "UnitOfWork"]

AGENT_CODE = re.compile(r"[A-Za-z0-9_-]{2,50}")


class UnitOfWork(Protocol):
    """What a handler may load and create; the batch saves it all at once."""

    def book(self, code: str) -> AgentBook | None: ...
    def add_book(self, book: AgentBook) -> None: ...
    def directory(self) -> UserDirectory: ...
    def issuance(self, currency: str) -> Issuance: ...


def _answer(
    cmd: Command, book: AgentBook, user_code: int | None = None, txn_id: str | None = None
) -> Result:
    """An accepted command's answer: the player's balance (transfer mode) and the
    agent's points after it."""
    balance = None
    if user_code is not None and book.transfer_mode and book.has_player(user_code):
        balance = book.player_balance(user_code)
    return Result(
        request_id=cmd.request_id,
        type=cmd.type_name,
        agent_code=book.code,
        code=Code.OK,
        message="OK",
        user_code=user_code,
        txn_id=txn_id,
        currency=book.currency,
        balance_minor=balance,
        agent_balance_minor=book.points_minor,
    )


def _require_book(uow: UnitOfWork, code: str) -> AgentBook:
    if not AGENT_CODE.fullmatch(code):
        raise ParametersInvalid(f"agent code {code[:60]!r} must match [A-Za-z0-9_-]{{2,50}}")
    book = uow.book(code)
    if book is None:
        raise AgentNotFound(f"agent {code!r} does not exist")
    return book


def _player_book(uow: UnitOfWork, cmd: Deposit | Withdraw | Bet | Win | Refund) -> AgentBook:
    """The command's agent book, which must hold the command's player."""
    book = _require_book(uow, cmd.agent_code)
    if not book.has_player(cmd.user_code):
        if str(cmd.user_code) in uow.directory().agent_of:
            raise PermissionError_(f"user {cmd.user_code} belongs to another agent")
        raise UserNotFound(f"user {cmd.user_code} does not exist")
    return book


def _amount(book: AgentBook, text: str, *, zero_allowed: bool) -> int:
    amount_minor = parse_minor(text, currency_exponent(book.currency))
    if amount_minor == 0 and not zero_allowed:
        raise ParametersInvalid("the amount must be greater than zero")
    return amount_minor


def _require_ids(**ids: str | None) -> None:
    """txnId, roundId and gameCode, when given, have 1 to ID_CHARS_MAX characters."""
    for name, text in ids.items():
        if text is not None and not 1 <= len(text) <= ID_CHARS_MAX:
            raise ParametersInvalid(f"{name} must have 1 to {ID_CHARS_MAX} characters")


def create_agent(uow: UnitOfWork, cmd: CreateAgent) -> Result:
    if not AGENT_CODE.fullmatch(cmd.agent_code):
        raise ParametersInvalid("agentCode must match [A-Za-z0-9_-]{2,50}")
    mode = cmd.mode.lower()
    if mode not in MODES:
        raise ValidationError(f"mode must be one of {', '.join(MODES)}")
    currency = cmd.currency.upper()
    currency_exponent(currency)
    if cmd.name is not None and not 1 <= len(cmd.name) <= NAME_CHARS_MAX:
        raise ParametersInvalid(f"name must have 1 to {NAME_CHARS_MAX} characters")
    existing = uow.book(cmd.agent_code)
    if existing is not None:
        payload = {
            "parent_code": cmd.parent_code,
            "currency": currency,
            "mode": mode,
            "name": cmd.name,
        }
        if existing.same_request(payload):
            raise SameAsOriginal(existing.created_request_id)
        raise AgentExists(f"agent {cmd.agent_code!r} exists with another definition")
    if cmd.parent_code is not None:
        parent = _require_book(uow, cmd.parent_code)
        if parent.currency != currency:
            raise CurrencyNotSupported(f"currency must equal the parent's ({parent.currency})")
    book = AgentBook(
        code=cmd.agent_code,
        parent_code=cmd.parent_code,
        currency=currency,
        mode=mode,
        name=cmd.name,
        request_id=cmd.request_id,
    )
    uow.add_book(book)
    return _answer(cmd, book)


def create_user(uow: UnitOfWork, cmd: CreateUser) -> Result:
    book = _require_book(uow, cmd.agent_code)
    if not USER_NAME.fullmatch(cmd.name):
        raise ParametersInvalid("name must match [A-Za-z0-9_]{2,50}")
    existing = book.user_code_by_name.get(cmd.name)
    if existing is not None:
        raise SameAsOriginal(book.players[str(existing)][2])
    user_code = uow.directory().assign(cmd.request_id, book.code)
    book.register_user(cmd.request_id, cmd.name, user_code)
    return _answer(cmd, book, user_code)


def issue_points(uow: UnitOfWork, cmd: IssuePoints) -> Result:
    book = _require_book(uow, cmd.agent_code)
    amount_minor = _amount(book, cmd.amount, zero_allowed=False)
    if book.parent_code is not None:
        raise PermissionError_("only a root agent (a broker) may issue points")
    book.issue(cmd.request_id, amount_minor, uow.issuance(book.currency))
    return _answer(cmd, book)


def transfer_points(uow: UnitOfWork, cmd: TransferPoints) -> Result:
    book = _require_book(uow, cmd.agent_code)
    to = _require_book(uow, cmd.to_agent_code)
    amount_minor = _amount(book, cmd.amount, zero_allowed=False)
    book.send_points(cmd.request_id, to, amount_minor)
    return _answer(cmd, book)


def deposit(uow: UnitOfWork, cmd: Deposit) -> Result:
    book = _require_book(uow, cmd.agent_code)
    book.require_transfer_mode()
    book = _player_book(uow, cmd)
    book.deposit(cmd.request_id, cmd.user_code, _amount(book, cmd.amount, zero_allowed=False))
    return _answer(cmd, book, cmd.user_code)


def withdraw(uow: UnitOfWork, cmd: Withdraw) -> Result:
    book = _require_book(uow, cmd.agent_code)
    book.require_transfer_mode()
    book = _player_book(uow, cmd)
    if cmd.amount is None:
        amount_minor = book.player_balance(cmd.user_code)
        if amount_minor == 0:
            raise BalanceNotEnough("there is nothing to withdraw")
    else:
        amount_minor = _amount(book, cmd.amount, zero_allowed=False)
    book.withdraw(cmd.request_id, cmd.user_code, amount_minor)
    return _answer(cmd, book, cmd.user_code)


def bet(uow: UnitOfWork, cmd: Bet) -> Result:
    _require_ids(txnId=cmd.txn_id, roundId=cmd.round_id, gameCode=cmd.game_code)
    book = _player_book(uow, cmd)
    amount_minor = _amount(book, cmd.amount, zero_allowed=True)
    book.bet(cmd.request_id, cmd.user_code, cmd.txn_id, cmd.round_id, amount_minor, cmd.game_code)
    return _answer(cmd, book, cmd.user_code, cmd.txn_id)


def win(uow: UnitOfWork, cmd: Win) -> Result:
    kind = cmd.kind.lower()
    if kind not in WIN_KINDS:
        raise ValidationError(f"kind must be one of {', '.join(WIN_KINDS)}")
    if kind == "game" and cmd.round_id is None:
        raise ValidationError("roundId is required for a game win")
    _require_ids(txnId=cmd.txn_id, roundId=cmd.round_id)
    book = _player_book(uow, cmd)
    amount_minor = _amount(book, cmd.amount, zero_allowed=True)
    book.win(
        cmd.request_id, cmd.user_code, cmd.txn_id, cmd.round_id, amount_minor, kind, cmd.completed
    )
    return _answer(cmd, book, cmd.user_code, cmd.txn_id)


def refund(uow: UnitOfWork, cmd: Refund) -> Result:
    _require_ids(txnId=cmd.txn_id)
    book = _player_book(uow, cmd)
    amount_minor = None if cmd.amount is None else _amount(book, cmd.amount, zero_allowed=True)
    if book.refund(cmd.request_id, cmd.user_code, cmd.txn_id, amount_minor):
        return _answer(cmd, book, cmd.user_code, cmd.txn_id)
    # Refused like any refusal (no amounts), but the book now remembers the txnId.
    return Result(
        request_id=cmd.request_id,
        type=cmd.type_name,
        agent_code=cmd.agent_code,
        code=Code.TRANSACTION_NOT_FOUND,
        message=f"bet {cmd.txn_id!r} is not there; a later bet with this txnId will be refused",
    )


Handler = Callable[[UnitOfWork, Any], Result]

HANDLERS: dict[type[Command], Handler] = {
    CreateAgent: create_agent,
    CreateUser: create_user,
    IssuePoints: issue_points,
    TransferPoints: transfer_points,
    Deposit: deposit,
    Withdraw: withdraw,
    Bet: bet,
    Win: win,
    Refund: refund,
}
