"""Point-in-time balances and account statements, as an auditor reads them.

- `balance_at`: the balance of `agent:<code>`, `house:<code>` or `player:<userCode>` at a
  point, found exactly as `GET /v1/balances/{account}?asOf=` finds it, with the same
  statements (`projections/queries.py`): the views' index `view_balance_changes` names
  the last event up to that point that set the balance, and the balance is read from
  that stored event in the event store.
- `statement`: the opening balance (just before the first point), every history entry
  of the account in the range (`view_transactions`), the closing balance (just before
  the end point) and totals by transType. Opening and closing come from the stored
  events, the entries from the history view, so `opening + sum(changes) == closing`
  checks one against the other (`reconciled`).

Points are a sequence (the global notification id) or a time. A time selects the events
recorded at or before it, in whole milliseconds like the API's `createdAtMs` (finer
digits are dropped); a time without a UTC offset is UTC, a date is its midnight.
Ranges are half-open, `start` inclusive and `end` exclusive, so consecutive statements
tile: January is `--from 2025-01-01 --to 2025-02-01`.

Every answer is read in one REPEATABLE READ snapshot and is complete up to the views'
position (`as_of_sequence`), never beyond: a point past it is answered as of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import IsolationLevel, sql

from projections.bounds import PAGE_ITEMS_MAX, STATEMENT_ENTRIES_MAX
from projections.queries import HistoryRow, Queries
from projections.views import EPOCH, ONE_MS, TRANS_TYPES, view_position

__all__ = [
    "Account",
    "AuditReads",
    "Point",
    "PointInTime",
    "Statement",
    "StatementError",
    "parse_point",
]

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
TRANS_TYPE_NAMES = {number: name for name, number in TRANS_TYPES.items()}

Decode = Callable[[Any], Any]  # a stored event row (id, version, topic, state) -> domain event


class StatementError(Exception):
    """A question the views cannot answer: an unknown account, a malformed point."""


@dataclass(frozen=True, slots=True)
class Point:
    """A point of the log: a sequence, or a time in epoch milliseconds (exactly one)."""

    sequence: int | None = None
    time_ms: int | None = None

    def just_before(self) -> Point:
        """The last point before this one (sequences and milliseconds are whole)."""
        if self.sequence is not None:
            return Point(sequence=self.sequence - 1)
        assert self.time_ms is not None
        return Point(time_ms=self.time_ms - 1)


def parse_point(text: str) -> Point:
    """`1234` is a sequence; anything else must be an ISO 8601 date or time."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        return Point(sequence=int(text))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise StatementError(f"{text!r} is neither a sequence nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Point(time_ms=(moment - EPOCH) // ONE_MS)


@dataclass(frozen=True, slots=True)
class Account:
    key: str  # agent:<code>, house:<code> or player:<userCode>
    currency: str
    agent_code: str  # the agent itself, or the player's agent
    keeps_balance: bool  # False for a seamless agent's player


@dataclass(frozen=True, slots=True)
class PointInTime:
    account: str
    currency: str
    balance_minor: int | None  # None: the account keeps no balance (seamless player)
    sequence: int | None  # the stored event that set it; None: never changed by then
    as_of_sequence: int  # every event up to this sequence was considered


@dataclass(frozen=True, slots=True)
class Total:
    trans_type: int
    count: int
    amount_minor: int
    change_minor: int | None

    @property
    def name(self) -> str:
        return TRANS_TYPE_NAMES[self.trans_type]


def change_of(row: HistoryRow) -> int | None:
    if row.balance_before_minor is None or row.balance_after_minor is None:
        return None
    return row.balance_after_minor - row.balance_before_minor


@dataclass
class Statement:
    account: Account
    opening: PointInTime
    closing: PointInTime
    entries: list[HistoryRow] = field(default_factory=list)

    @property
    def as_of_sequence(self) -> int:
        return self.closing.as_of_sequence

    @property
    def entries_change_minor(self) -> int | None:
        if not self.account.keeps_balance:
            return None
        return sum(change_of(row) or 0 for row in self.entries)

    @property
    def reconciled(self) -> bool | None:
        """opening + every entry's change == closing (None when no balance is kept)."""
        change = self.entries_change_minor
        if change is None or self.opening.balance_minor is None:
            return None
        return self.opening.balance_minor + change == self.closing.balance_minor

    def totals(self) -> list[Total]:
        """Count, amounts and changes by transType, in its numeric order."""
        sums: dict[int, list[int]] = {}
        for row in self.entries:
            total = sums.setdefault(row.trans_type, [0, 0, 0])
            total[0] += 1
            total[1] += row.amount_minor
            total[2] += change_of(row) or 0
        keeps = self.account.keeps_balance
        return [
            Total(trans_type, count, amount, change if keeps else None)
            for trans_type, (count, amount, change) in sorted(sums.items())
        ]


class AuditReads:
    """The auditor's reads of one views schema and its store (no caller, no scoping:
    for the command line, never for the API)."""

    def __init__(self, views_schema: str, store_schema: str, events_table: str, decode: Decode):
        self.views_schema = views_schema
        self.q = Queries(views_schema, store_schema, events_table)
        self.decode = decode

        def q(text: str) -> sql.Composed:
            return sql.SQL(text).format(s=sql.Identifier(views_schema))

        self.sql_agent = q("SELECT currency FROM {s}.view_agents WHERE code = %s")
        self.sql_user = q(
            "SELECT u.agent_code, a.currency, a.mode, a.lineage FROM {s}.view_users u"
            " JOIN {s}.view_agents a ON a.code = u.agent_code WHERE u.user_code = %s"
        )

    @contextmanager
    def snapshot(self, database_url: str) -> Iterator[tuple[psycopg.Connection[Any], int]]:
        """A REPEATABLE READ, READ ONLY transaction and the views' position in it."""
        with psycopg.connect(
            database_url, autocommit=True, connect_timeout=10, application_name="ledger-audit"
        ) as conn:
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction():
                # The tracking table first, like every reader (see projections/replay.py).
                yield conn, view_position(conn, self.views_schema)

    def store_position(self, conn: psycopg.Connection[Any]) -> int:
        """The store's last sequence (in the same snapshot as the views)."""
        row = conn.execute(self.q.store_max).fetchone()
        assert row is not None
        return int(row[0])

    def account(
        self, conn: psycopg.Connection[Any], text: str, within: str | None = None
    ) -> Account:
        """The account named `agent:<code>`, `house:<code>` or `player:<userCode>`;
        with `within`, a player must belong to that agent or its subtree."""
        kind, _, name = text.partition(":")
        if kind in ("agent", "house") and within is None:
            row = conn.execute(self.sql_agent, (name,)).fetchone()
            if row is None:
                raise StatementError(f"no agent {name!r} in the views")
            return Account(text, row[0], name, keeps_balance=True)
        if kind == "player" and name.isascii() and name.isdigit() and len(name) <= 18:
            row = conn.execute(self.sql_user, (int(name),)).fetchone()
            if row is None or (within is not None and within not in row[3]):
                where = "" if within is None else f" under agent {within}"
                raise StatementError(f"no player {name}{where} in the views")
            return Account(f"player:{int(name)}", row[1], row[0], row[2] == "transfer")
        if kind == "issuance":
            raise StatementError(
                "issuance accounts are not indexed: `ledger audit verify` sums them"
            )
        raise StatementError(f"{text!r} is not agent:<code>, house:<code> or player:<userCode>")

    def balance_at(
        self, conn: psycopg.Connection[Any], account: Account, point: Point | None, position: int
    ) -> PointInTime:
        """The balance at `point` (None: now), as complete as the views' `position`."""
        sequence_max, time_max = position, None
        if point is not None and point.sequence is not None:
            sequence_max = max(0, min(point.sequence, position))
        elif point is not None:
            time_max = point.time_ms
        if not account.keeps_balance:
            return PointInTime(account.key, account.currency, None, None, sequence_max)
        if time_max is None:
            row = conn.execute(self.q.change_by_sequence, (account.key, sequence_max)).fetchone()
        else:
            time_max = max(BIGINT_MIN, min(time_max, BIGINT_MAX))
            row = conn.execute(
                self.q.change_by_time, (account.key, time_max, sequence_max)
            ).fetchone()
        if row is None:
            return PointInTime(account.key, account.currency, 0, None, sequence_max)
        sequence = int(row[0])
        event = self.decode(conn.execute(self.q.sql_stored_event, (sequence,)).fetchone())
        balance_minor: int = event.balances[account.key]
        return PointInTime(account.key, account.currency, balance_minor, sequence, sequence_max)

    def statement(
        self,
        conn: psycopg.Connection[Any],
        account: Account,
        start: Point | None,
        end: Point | None,
        position: int,
    ) -> Statement:
        """Opening, entries and closing of `account` from `start` (inclusive) to `end`
        (exclusive); None is the beginning, or now."""
        opening = self.balance_at(
            conn, account, start.just_before() if start else Point(0), position
        )
        closing = self.balance_at(conn, account, end.just_before() if end else None, position)
        statement = Statement(account, opening, closing)
        after = start.sequence - 1 if start and start.sequence is not None else 0
        window_ms = (
            start.time_ms if start and start.time_ms is not None else BIGINT_MIN,
            end.time_ms if end and end.time_ms is not None else BIGINT_MAX,
        )
        last = min(position, end.sequence - 1 if end and end.sequence is not None else position)
        while after < last:
            rows = conn.execute(
                self.q.history, (account.key, after, *window_ms, PAGE_ITEMS_MAX)
            ).fetchall()
            page = [HistoryRow(*row) for row in rows if row[0] <= last]
            statement.entries.extend(page)
            if len(statement.entries) > STATEMENT_ENTRIES_MAX:
                raise StatementError(
                    f"more than {STATEMENT_ENTRIES_MAX:,} entries in the range: narrow it"
                )
            if len(page) < PAGE_ITEMS_MAX:
                break
            after = page[-1].sequence
        return statement
