"""AgentBook: one agent's accounts, players, rounds and transactions, as one stream.

The methods are the commands. Each checks every rule first (raising a
`ledger.errors` error, or `SameAsOriginal` for a repeat by content) and only
then triggers exactly one event, so a refused command changes nothing.
"""

from __future__ import annotations

import functools
import marshal
from typing import Any
from uuid import UUID, uuid5

from ledger.bounds import BOOKS_CACHED_MAX
from ledger.chain import ChainedAggregate
from ledger.domain import (
    ISSUANCE,
    NAMESPACE,
    Issuance,
    Posting,
    SameAsOriginal,
    agent_account,
    credited,
    debited,
    house_account,
    player_account,
)
from ledger.errors import (
    BalanceNotEnough,
    DuplicateTransaction,
    ParametersInvalid,
    PermissionError_,
    PointNotEnough,
    RoundClosed,
    TransactionNotFound,
    TransactionRolledBack,
)

__all__ = ["AgentBook"]

# A transaction record: (kind, request_id, user_code, round_id, amount_minor, refund_request_id)
# kind is "bet", "win", or "void" (a refund that arrived before its bet).
_KIND, _REQUEST, _USER, _ROUND, _AMOUNT, _REFUND = range(6)

ROUND_CLOSED = -1  # the value of a round in `AgentBook.rounds` once it is closed


def _txn(*record: Any) -> bytes:
    """A transaction record as bytes (marshal: fast, any text, never persisted).

    A book keeps every txnId of its agent forever (a txnId is unique forever), one
    per bet and win. Held as tuples or lists, they made the `txns` dict a container
    the garbage collector tracks, and every full collection walked all of them:
    10^6 stored events, 0.2-0.7 s pauses, a third of the cost per command. A dict of
    bytes is not tracked at all.
    """
    return marshal.dumps(record)


class AgentBook(ChainedAggregate):
    """An agent (broker, operator or casino site) and everything it holds."""

    @staticmethod
    @functools.lru_cache(maxsize=BOOKS_CACHED_MAX)
    def create_id(code: str) -> UUID:
        return uuid5(NAMESPACE, f"agent:{code}")

    class AgentCreated(ChainedAggregate.Created):
        code: str
        parent_code: str | None
        currency: str
        mode: str
        name: str | None
        request_id: str

    def __init__(
        self,
        code: str,
        parent_code: str | None,
        currency: str,
        mode: str,
        name: str | None,
        request_id: str,
    ) -> None:
        self.code = code
        self.parent_code = parent_code
        self.currency = currency
        self.mode = mode
        self.name = name
        self.created_request_id = request_id
        self.points_minor = 0
        self.house_minor = 0
        # str(user_code) -> [name, balance_minor, request_id of createUser]
        self.players: dict[str, list[Any]] = {}
        self.user_code_by_name: dict[str, int] = {}
        # round_id -> how many of its bets stand (placed, not refunded) while it is
        # open; ROUND_CLOSED once a completing game win closed it
        self.rounds: dict[str, int] = {}
        # txn_id -> the transaction record (see `_txn`), kept forever
        self.txns: dict[str, bytes] = {}

    # ----------------------------------------------------------------- events

    class Event(ChainedAggregate.Event):
        request_id: str

    class Posted(Event):
        """A money event: the postings of its command and the balances after it."""

        postings: list[Posting]
        balances: dict[str, int]

        def apply(self, aggregate: AgentBook) -> None:
            aggregate.set_balances(self.balances)

    class UserRegistered(Event):
        user_code: int
        name: str

        def apply(self, aggregate: AgentBook) -> None:
            aggregate.players[str(self.user_code)] = [self.name, 0, self.request_id]
            aggregate.user_code_by_name[self.name] = self.user_code

    class PointsIssued(Posted):
        pass

    class PointsSent(Posted):
        to_agent_code: str

    class PointsReceived(Event):
        from_agent_code: str
        balances: dict[str, int]

        def apply(self, aggregate: AgentBook) -> None:
            aggregate.set_balances(self.balances)

    class Deposited(Posted):
        user_code: int

    class Withdrawn(Posted):
        user_code: int

    class BetPlaced(Posted):
        user_code: int
        txn_id: str
        round_id: str
        amount_minor: int
        game_code: str | None

        def apply(self, aggregate: AgentBook) -> None:
            aggregate.set_balances(self.balances)
            aggregate.rounds[self.round_id] = aggregate.rounds.get(self.round_id, 0) + 1
            aggregate.txns[self.txn_id] = _txn(
                "bet", self.request_id, self.user_code, self.round_id, self.amount_minor, None
            )

    class WinPaid(Posted):
        user_code: int
        txn_id: str
        round_id: str | None
        kind: str
        completed: bool
        amount_minor: int

        def apply(self, aggregate: AgentBook) -> None:
            aggregate.set_balances(self.balances)
            if self.kind == "game" and self.completed:
                assert self.round_id is not None
                aggregate.rounds[self.round_id] = ROUND_CLOSED
            aggregate.txns[self.txn_id] = _txn(
                "win", self.request_id, self.user_code, self.round_id, self.amount_minor, None
            )

    class BetRefunded(Posted):
        user_code: int
        txn_id: str
        amount_minor: int

        def apply(self, aggregate: AgentBook) -> None:
            aggregate.set_balances(self.balances)
            txn = aggregate.txn(self.txn_id)
            assert txn is not None
            aggregate.txns[self.txn_id] = _txn(*txn[:_REFUND], self.request_id)
            if aggregate.rounds.get(txn[_ROUND], 0) > 0:  # refunds happen on open rounds
                aggregate.rounds[txn[_ROUND]] -= 1

    class RefundArrivedBeforeBet(Event):
        """A refund named a bet not (yet) there: the txnId is void from now on."""

        user_code: int
        txn_id: str

        def apply(self, aggregate: AgentBook) -> None:
            void = _txn("void", self.request_id, self.user_code, None, 0, None)
            aggregate.txns[self.txn_id] = void

    # ------------------------------------------------------------------ state

    def txn(self, txn_id: str) -> tuple[Any, ...] | None:
        """The record of a txnId of this agent (see `_txn`), or None."""
        raw = self.txns.get(txn_id)
        return None if raw is None else marshal.loads(raw)

    @property
    def account(self) -> str:
        return agent_account(self.code)

    @property
    def house(self) -> str:
        return house_account(self.code)

    def set_balances(self, balances: dict[str, int]) -> None:
        """Take the balances after an event for the accounts this book holds."""
        for account, balance_minor in balances.items():
            if account == self.account:
                self.points_minor = balance_minor
            elif account == self.house:
                self.house_minor = balance_minor
            elif account.startswith("player:"):
                self.players[account[7:]][1] = balance_minor

    def has_player(self, user_code: int) -> bool:
        return str(user_code) in self.players

    def player_balance(self, user_code: int) -> int:
        return int(self.players[str(user_code)][1])

    @property
    def transfer_mode(self) -> bool:
        return self.mode == "transfer"

    def same_request(self, created: dict[str, Any]) -> bool:
        """Whether a createAgent payload equals the one that created this book."""
        return created == {
            "parent_code": self.parent_code,
            "currency": self.currency,
            "mode": self.mode,
            "name": self.name,
        }

    # --------------------------------------------------------------- commands

    def register_user(self, request_id: str, name: str, user_code: int) -> None:
        self.trigger_event(
            self.UserRegistered, request_id=request_id, user_code=user_code, name=name
        )

    def issue(self, request_id: str, amount_minor: int, issuance: Issuance) -> None:
        if self.parent_code is not None:
            raise PermissionError_("only a root agent (a broker) may issue points")
        points = credited(self.points_minor, amount_minor)
        source = debited(issuance.balance_minor, amount_minor, None)
        postings: list[Posting] = [[ISSUANCE, self.account, amount_minor]]
        balances = {self.account: points, ISSUANCE: source}
        self.trigger_event(
            self.PointsIssued, request_id=request_id, postings=postings, balances=balances
        )
        issuance.trigger_event(
            Issuance.Issued,
            request_id=request_id,
            agent_code=self.code,
            balances={ISSUANCE: source},
        )

    def send_points(self, request_id: str, to: AgentBook, amount_minor: int) -> None:
        if to.parent_code != self.code and self.parent_code != to.code:
            raise PermissionError_("points move only between a parent and its direct child")
        sender = debited(self.points_minor, amount_minor, PointNotEnough)
        receiver = credited(to.points_minor, amount_minor)
        postings: list[Posting] = [[self.account, to.account, amount_minor]]
        balances = {self.account: sender, to.account: receiver}
        self.trigger_event(
            self.PointsSent,
            request_id=request_id,
            postings=postings,
            balances=balances,
            to_agent_code=to.code,
        )
        to.trigger_event(
            self.PointsReceived,
            request_id=request_id,
            from_agent_code=self.code,
            balances={to.account: receiver},
        )

    def require_transfer_mode(self) -> None:
        if not self.transfer_mode:
            raise PermissionError_("deposit and withdraw are for transfer-mode agents only")

    def deposit(self, request_id: str, user_code: int, amount_minor: int) -> None:
        self.require_transfer_mode()
        player = player_account(user_code)
        points = debited(self.points_minor, amount_minor, PointNotEnough)
        balance = credited(self.player_balance(user_code), amount_minor)
        self.trigger_event(
            self.Deposited,
            request_id=request_id,
            user_code=user_code,
            postings=[[self.account, player, amount_minor]],
            balances={self.account: points, player: balance},
        )

    def withdraw(self, request_id: str, user_code: int, amount_minor: int) -> None:
        self.require_transfer_mode()
        player = player_account(user_code)
        balance = debited(self.player_balance(user_code), amount_minor, BalanceNotEnough)
        points = credited(self.points_minor, amount_minor)
        self.trigger_event(
            self.Withdrawn,
            request_id=request_id,
            user_code=user_code,
            postings=[[player, self.account, amount_minor]],
            balances={self.account: points, player: balance},
        )

    def _repeat_or_conflict(
        self, txn_id: str, kind: str, user_code: int, round_id: str | None, amount_minor: int
    ) -> None:
        """A txnId is used once per agent, forever: answer a reuse."""
        txn = self.txn(txn_id)
        if txn is None:
            return
        if txn[_KIND] == "void" and kind == "bet":
            raise TransactionRolledBack(f"txnId {txn_id!r} was refunded before its bet arrived")
        if (
            txn[_KIND] == kind
            and txn[_USER] == user_code
            and txn[_ROUND] == round_id
            and txn[_AMOUNT] == amount_minor
        ):
            if kind == "bet" and txn[_REFUND] is not None:
                raise TransactionRolledBack(f"bet {txn_id!r} was refunded")
            raise SameAsOriginal(txn[_REQUEST])
        raise DuplicateTransaction(f"txnId {txn_id!r} was already used with other content")

    def _stake_accounts(self, user_code: int) -> tuple[str, int, type[Exception]]:
        """The account a player's stake comes from: the player's own balance in
        transfer mode, the agent's points in seamless mode (the money lives in
        the casino, which pays the ledger in points)."""
        if self.transfer_mode:
            return player_account(user_code), self.player_balance(user_code), BalanceNotEnough
        return self.account, self.points_minor, PointNotEnough

    def bet(
        self,
        request_id: str,
        user_code: int,
        txn_id: str,
        round_id: str,
        amount_minor: int,
        game_code: str | None,
    ) -> None:
        self._repeat_or_conflict(txn_id, "bet", user_code, round_id, amount_minor)
        if self.rounds.get(round_id) == ROUND_CLOSED:
            raise RoundClosed(f"round {round_id!r} is closed")
        stake, stake_minor, shortfall = self._stake_accounts(user_code)
        stake_after = debited(stake_minor, amount_minor, shortfall)
        house_after = credited(self.house_minor, amount_minor)
        self.trigger_event(
            self.BetPlaced,
            request_id=request_id,
            postings=[[stake, self.house, amount_minor]],
            balances={stake: stake_after, self.house: house_after},
            user_code=user_code,
            txn_id=txn_id,
            round_id=round_id,
            amount_minor=amount_minor,
            game_code=game_code,
        )

    def win(
        self,
        request_id: str,
        user_code: int,
        txn_id: str,
        round_id: str | None,
        amount_minor: int,
        kind: str,
        completed: bool,
    ) -> None:
        self._repeat_or_conflict(txn_id, "win", user_code, round_id, amount_minor)
        if kind == "game":
            assert round_id is not None, "the edge requires roundId for game wins"
            standing = self.rounds.get(round_id)
            if standing is None:
                raise TransactionNotFound(f"round {round_id!r} has no bet")
            if standing == ROUND_CLOSED:
                raise RoundClosed(f"round {round_id!r} is closed")
            if standing == 0:  # a win must not pay on stakes that were all given back
                raise TransactionNotFound(f"every bet of round {round_id!r} was refunded")
        stake, stake_minor, _ = self._stake_accounts(user_code)
        house_after = debited(self.house_minor, amount_minor, None)
        stake_after = credited(stake_minor, amount_minor)
        self.trigger_event(
            self.WinPaid,
            request_id=request_id,
            postings=[[self.house, stake, amount_minor]],
            balances={stake: stake_after, self.house: house_after},
            user_code=user_code,
            txn_id=txn_id,
            round_id=round_id,
            kind=kind,
            completed=completed,
            amount_minor=amount_minor,
        )

    def refund(
        self, request_id: str, user_code: int, txn_id: str, amount_minor: int | None
    ) -> bool:
        """Refund the bet `txn_id`. Returns False when the bet is not there: the
        refund is then remembered (the txnId is void) and answered not found."""
        txn = self.txn(txn_id)
        if txn is None:
            self.trigger_event(
                self.RefundArrivedBeforeBet,
                request_id=request_id,
                user_code=user_code,
                txn_id=txn_id,
            )
            return False
        if txn[_KIND] != "bet":
            raise TransactionNotFound(f"txnId {txn_id!r} is not a bet")
        if txn[_USER] != user_code:
            raise ParametersInvalid(f"bet {txn_id!r} belongs to another user")
        if txn[_REFUND] is not None:
            raise SameAsOriginal(txn[_REFUND])
        if self.rounds.get(txn[_ROUND]) == ROUND_CLOSED:
            raise RoundClosed(f"round {txn[_ROUND]!r} is closed")
        bet_minor: int = txn[_AMOUNT]
        if amount_minor is not None and amount_minor != bet_minor:
            raise ParametersInvalid("a refund is for the full amount of the bet only")
        stake, stake_minor, _ = self._stake_accounts(user_code)
        house_after = debited(self.house_minor, bet_minor, None)
        stake_after = credited(stake_minor, bet_minor)
        self.trigger_event(
            self.BetRefunded,
            request_id=request_id,
            postings=[[self.house, stake, bet_minor]],
            balances={stake: stake_after, self.house: house_after},
            user_code=user_code,
            txn_id=txn_id,
            amount_minor=bet_minor,
        )
        return True
