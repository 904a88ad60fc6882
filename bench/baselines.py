"""Two wallets the ledger is compared with, fed the same preloaded commands from Kafka.

Both apply the player-account commands (bet, win, refund, deposit, withdraw) one
message at a time, each in its own PostgreSQL transaction (fsync on), and skip the
rest (point transfers: about 0.5% of play). Neither publishes results, which favours
them. Every player starts with 1,000,000.00, so no command is refused for funds.

- A, eventsourcing the plain way: per message `repository.get` (the whole stream is
  replayed: no cache, no snapshots), one aggregate method, `save` (the library's stock
  recorder and JSON transcoder). Bets and wins are guarded by txnId; a repeated deposit
  is applied twice (no request log: the plain way has none).
- B, the hand-written wallet: per message one transaction of SELECT ... FOR UPDATE,
  UPDATE balance, INSERT transaction row (requestId primary key: a repeat is rolled
  back; txnId unique per account).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import orjson
import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from ledger.settings import store_env

__all__ = ["BaselineRun", "HandWrittenWallets", "PlainWallets", "apply_records"]

OPENING_BALANCE_MINOR = 100_000_000  # 1,000,000.00
PLAYER_TYPES = frozenset({"bet", "win", "refund", "deposit", "withdraw"})


class Refused(Exception):
    """The wallet refuses the command (funds, unknown bet, used txnId)."""


def account_of(body: dict[str, Any]) -> str:
    return f"{body['agentCode']}:{body['userCode']}"


def minor_of(amount: str) -> int:
    """Exact minor units of a two-digit decimal text ("12.5" -> 1250)."""
    whole, _, fraction = amount.partition(".")
    return int(whole) * 100 + int((fraction + "00")[:2])


@dataclass
class BaselineRun:
    """What a wallet did with a span of messages, timed from the first message it got
    to the last one it finished (Kafka fetches in between included)."""

    seconds_max: float
    messages: int = 0
    applied: int = 0
    refused: int = 0
    skipped: int = 0
    started: float | None = None
    finished: float = 0.0

    @property
    def seconds(self) -> float:
        return 0.0 if self.started is None else self.finished - self.started

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def apply_records(
    run: BaselineRun, records: Iterable[Any], apply: Callable[[dict[str, Any]], bool]
) -> None:
    """Decode and apply each record in order, counting what happened, until the run's
    time is up."""
    if run.started is None:
        run.started = time.perf_counter()
    deadline = run.started + run.seconds_max
    for record in records:
        if time.perf_counter() > deadline:
            break
        run.messages += 1
        body = orjson.loads(record.value)
        if body.get("type") not in PLAYER_TYPES:
            run.skipped += 1
        elif apply(body):
            run.applied += 1
        else:
            run.refused += 1
    run.finished = time.perf_counter()


# ------------------------------------------------------------------ A: eventsourcing, plain


class Wallet(Aggregate):
    """A player's wallet, one stream per player."""

    @staticmethod
    def create_id(account: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"wallet/{account}")

    @event("Opened")
    def __init__(self, account: str, balance_minor: int) -> None:
        self.account = account
        self.balance_minor = balance_minor
        self.bets: dict[str, int] = {}  # open bets: txnId -> stake
        self.txn_ids: set[str] = set()

    def bet(self, txn_id: str, amount_minor: int) -> None:
        if txn_id in self.txn_ids or amount_minor > self.balance_minor:
            raise Refused
        self.moved(txn_id, -amount_minor, "bet")

    def win(self, txn_id: str, amount_minor: int) -> None:
        if txn_id in self.txn_ids:
            raise Refused
        self.moved(txn_id, amount_minor, "win")

    def refund(self, txn_id: str) -> None:
        if txn_id not in self.bets:
            raise Refused
        self.moved(txn_id, self.bets[txn_id], "refund")

    def deposit(self, amount_minor: int) -> None:
        self.moved(None, amount_minor, "deposit")

    def withdraw(self, amount_minor: int | None) -> None:
        amount_minor = self.balance_minor if amount_minor is None else amount_minor
        if amount_minor > self.balance_minor:
            raise Refused
        self.moved(None, -amount_minor, "withdraw")

    @event("Moved")
    def moved(self, txn_id: str | None, delta_minor: int, kind: str) -> None:
        self.balance_minor += delta_minor
        if kind == "bet" and txn_id is not None:
            self.bets[txn_id] = -delta_minor
        elif kind == "refund" and txn_id is not None:
            del self.bets[txn_id]
        if txn_id is not None and kind != "refund":
            self.txn_ids.add(txn_id)


class PlainWallets(Application[UUID]):
    """Load, apply one command, save: one transaction per message."""

    name = "plainwallets"

    @classmethod
    def on(cls, database_url: str, schema: str) -> PlainWallets:
        env = store_env(database_url, schema, pool_size=1)
        del env["APPLICATION_RECORDER_TOPIC"]  # the library's own recorder
        return cls(env)

    def open_all(self, accounts: list[str]) -> None:
        self.save(*(Wallet(account=a, balance_minor=OPENING_BALANCE_MINOR) for a in accounts))

    def apply(self, body: dict[str, Any]) -> bool:
        wallet: Wallet = self.repository.get(Wallet.create_id(account_of(body)))
        kind, amount = body["type"], body.get("amount")
        try:
            if kind == "bet":
                wallet.bet(body["txnId"], minor_of(body["amount"]))
            elif kind == "win":
                wallet.win(body["txnId"], minor_of(body["amount"]))
            elif kind == "refund":
                wallet.refund(body["txnId"])
            elif kind == "deposit":
                wallet.deposit(minor_of(body["amount"]))
            else:
                wallet.withdraw(None if amount is None else minor_of(amount))
        except Refused:
            return False
        self.save(wallet)
        return True


# ------------------------------------------------------------------ B: hand-written psycopg

_DDL = """
CREATE TABLE {s}.wallets (
    account text PRIMARY KEY,
    balance_minor bigint NOT NULL CHECK (balance_minor >= 0));
CREATE TABLE {s}.wallet_transactions (
    request_id uuid PRIMARY KEY,
    account text NOT NULL,
    kind text NOT NULL,
    txn_id text,
    amount_minor bigint NOT NULL,
    balance_after_minor bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE UNIQUE INDEX ON {s}.wallet_transactions (account, txn_id, kind);
"""


class HandWrittenWallets:
    """One connection, one transaction per message (SELECT FOR UPDATE, UPDATE, INSERT)."""

    def __init__(self, database_url: str, schema: str) -> None:
        self.conn = psycopg.connect(
            database_url, autocommit=True, connect_timeout=10, application_name="bench-wallet"
        )
        s = f'"{schema}"'
        self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        self.conn.execute(_DDL.format(s=s))
        self.sql_lock = f"SELECT balance_minor FROM {s}.wallets WHERE account = %s FOR UPDATE"
        self.sql_bet = (
            f"SELECT amount_minor FROM {s}.wallet_transactions "
            "WHERE account = %s AND txn_id = %s AND kind = 'bet'"
        )
        self.sql_update = f"UPDATE {s}.wallets SET balance_minor = %s WHERE account = %s"
        self.sql_insert = (
            f"INSERT INTO {s}.wallet_transactions "
            "(request_id, account, kind, txn_id, amount_minor, balance_after_minor) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING request_id"
        )
        self.sql_open = f"INSERT INTO {s}.wallets (account, balance_minor) VALUES (%s, %s)"

    def close(self) -> None:
        self.conn.close()

    def open_all(self, accounts: list[str]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(self.sql_open, [(a, OPENING_BALANCE_MINOR) for a in accounts])

    def apply(self, body: dict[str, Any]) -> bool:
        applied = False
        with self.conn.transaction():  # psycopg.Rollback in _apply: rolled back, swallowed
            applied = self._apply(body)
        return applied

    def _apply(self, body: dict[str, Any]) -> bool:
        account, kind, amount = account_of(body), body["type"], body.get("amount")
        row = self.conn.execute(self.sql_lock, (account,), prepare=True).fetchone()
        assert row is not None, "every player's wallet was opened"
        balance_minor = int(row[0])
        if kind == "refund":
            bet = self.conn.execute(self.sql_bet, (account, body["txnId"]), prepare=True)
            found = bet.fetchone()
            if found is None:
                raise psycopg.Rollback
            delta_minor = int(found[0])
        elif kind == "withdraw" and amount is None:
            delta_minor = -balance_minor
        else:
            delta_minor = minor_of(str(amount)) * (-1 if kind in ("bet", "withdraw") else 1)
        if balance_minor + delta_minor < 0:
            raise psycopg.Rollback
        self.conn.execute(self.sql_update, (balance_minor + delta_minor, account), prepare=True)
        inserted = self.conn.execute(
            self.sql_insert,
            (
                body["requestId"],
                account,
                kind,
                body.get("txnId"),
                abs(delta_minor),
                balance_minor + delta_minor,
            ),
            prepare=True,
        ).fetchone()
        if inserted is None:  # a repeated requestId or a used txnId: change nothing
            raise psycopg.Rollback
        return True
