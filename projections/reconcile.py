"""Compare the read model with the audit's recomputation of every balance.

`ledger audit verify` recomputes every balance from the postings alone
(`ledger/audit.py`, which knows nothing of the read side) and hands the report's
balances here (the CLI composes the two, see `projections/audit_cli.py`):

- every `view_agents` row: `points_minor` against `agent:<code>`, `house_minor` against
  `house:<code>`;
- every `view_users` row: `balance_minor` against `player:<userCode>`; a seamless
  agent's player has none (NULL), and the events must give it none either;
- every account the events give a non-zero balance must have its row;
- every event the views name (creations, balance changes, history) is still in the
  store, and the views' position is not past the store's end (`_Witness`: a deleted
  tail of whole transactions leaves the store's own chains intact).

Balances only agree at one sequence: the audit's balances are those after its last
verified event. Views behind that sequence are not compared (`ViewComparison.behind`;
the CLI first waits a bounded time for a running projector to get there). Views ahead
of it (the store grew while the audit ran) are compared on every account that no event
after the audited sequence touched; those events are read from the store in the same
snapshot as the views, and the accounts they touched are counted as `skipped`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from psycopg import IsolationLevel, sql

from ledger.application import Ledger
from ledger.audit import FINDINGS_MAX
from ledger.book import AgentBook
from projections.bounds import AUDIT_VIEWS_POLL_SECONDS
from projections.views import MONEY_TYPES, view_position

__all__ = ["ViewComparison", "ViewFinding", "compare_views", "wait_for_views"]

# Events that carry balances of agents, houses or players.
_BALANCE_EVENTS: list[type[Any]] = [*MONEY_TYPES, AgentBook.PointsReceived]
_BALANCE_TOPICS = [get_topic(cls) for cls in _BALANCE_EVENTS]
_FETCH_ROWS = 5_000  # rows per round trip of the streaming cursors


@dataclass(frozen=True)
class ViewFinding:
    """A view row that disagrees with the events: `table`, the agent code or userCode
    (`key`) and what is wrong."""

    table: str
    key: str
    what: str


@dataclass
class ViewComparison:
    views_schema: str
    position: int  # the views' position in the snapshot compared
    audited_sequence: int  # the last event the audit verified
    agents: int = 0  # rows compared
    users: int = 0
    skipped: int = 0  # accounts changed after the audited sequence
    mismatches: int = 0  # every disagreement; the first FINDINGS_MAX are in `findings`
    findings: list[ViewFinding] = field(default_factory=list)

    @property
    def behind(self) -> int:
        """Events the views lack to be compared (0: they were)."""
        return max(0, self.audited_sequence - self.position)

    @property
    def ok(self) -> bool:
        return not self.findings


def _connect(database_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        database_url, autocommit=True, connect_timeout=10, application_name="ledger-audit"
    )


def wait_for_views(database_url: str, views_schema: str, target: int, seconds: float) -> int:
    """The views' position once it reaches `target`, or after `seconds` (bounded poll)."""
    deadline = time.monotonic() + seconds
    with _connect(database_url) as conn:
        while True:
            position = view_position(conn, views_schema)
            if position >= target or time.monotonic() >= deadline:
                return position
            time.sleep(AUDIT_VIEWS_POLL_SECONDS)


def compare_views(
    database_url: str,
    views_schema: str,
    ledger: Ledger,
    balances: Mapping[str, int],
    audited_sequence: int,
) -> ViewComparison:
    """Compare every view row holding a balance with `balances` (account -> minor units,
    the audit's recomputation after `audited_sequence`), in one snapshot."""
    with _connect(database_url) as conn:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            # The tracking table first, like every reader (see projections/replay.py).
            position = view_position(conn, views_schema)
            result = ViewComparison(views_schema, position, audited_sequence)
            _Witness(result, ledger).run(conn)
            if result.behind:
                return result
            changed = _changed_after(conn, ledger, audited_sequence, position)
            _Comparer(result, balances, changed).run(conn)
    return result


def _changed_after(
    conn: psycopg.Connection[Any], ledger: Ledger, after: int, upto: int
) -> set[str]:
    """Every account whose balance an event in (after, upto] set, from the store."""
    if upto <= after:
        return set()
    recorder: Any = ledger.recorder
    store = sql.Identifier(recorder.datastore.schema, recorder.events_table_name)
    statement = sql.SQL(
        "SELECT originator_id, originator_version, topic, state FROM {} WHERE"
        " notification_id > %s AND notification_id <= %s AND topic = ANY(%s)"
    ).format(store)
    changed: set[str] = set()
    with conn.cursor(name="ledger_audit_changed") as cursor:
        cursor.itersize = _FETCH_ROWS
        cursor.execute(statement, (after, upto, _BALANCE_TOPICS))
        for row in cursor:
            event: Any = ledger.mapper.to_domain_event(StoredEvent(*row))
            changed.update(event.balances)
    return changed


class _Witness:
    """The views as a witness held apart from the store: every event they were built
    from must still be in it.

    The store's own chains find an event edited, inserted, swapped or deleted before
    the last seal of its writer; a tail of whole transactions deleted, seals and all,
    leaves them intact (only an anchor kept outside the store shows it). The views
    name the sequence of every event that created an agent or a player or changed a
    balance, and their position is the store's newest sequence they read: a sequence
    they name that the store no longer holds, or a position past the store's end, is a
    deletion.
    """

    # (table, column naming a stored event's sequence)
    NAMED = (
        ("view_agents", "created_sequence"),
        ("view_users", "created_sequence"),
        ("view_balance_changes", "sequence"),
        ("view_transactions", "sequence"),
    )

    def __init__(self, result: ViewComparison, ledger: Ledger) -> None:
        self.result = result
        recorder: Any = ledger.recorder
        self.store = sql.Identifier(recorder.datastore.schema, recorder.events_table_name)

    def run(self, conn: psycopg.Connection[Any]) -> None:
        schema = sql.Identifier(self.result.views_schema)
        row = conn.execute(
            sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(self.store)
        ).fetchone()
        stored_max = 0 if row is None else int(row[0])
        if self.result.position > stored_max:
            self.find(
                "view_tracking",
                "position",
                f"is sequence {self.result.position} but the store ends at {stored_max}: "
                "events the views were built from are gone from the store",
            )
        for table, column in self.NAMED:
            missing = conn.execute(
                sql.SQL(
                    "SELECT DISTINCT w.{c} FROM {s}.{t} AS w WHERE NOT EXISTS"
                    " (SELECT 1 FROM {e} AS e WHERE e.notification_id = w.{c})"
                    " ORDER BY 1 LIMIT %s"
                ).format(
                    c=sql.Identifier(column),
                    s=schema,
                    t=sql.Identifier(table),
                    e=self.store,
                ),
                (FINDINGS_MAX,),
            ).fetchall()
            for (sequence,) in missing:
                self.find(table, f"sequence {sequence}", "names an event the store does not hold")

    def find(self, table: str, key: str, what: str) -> None:
        self.result.mismatches += 1
        if len(self.result.findings) < FINDINGS_MAX:
            self.result.findings.append(ViewFinding(table, key, what))


class _Comparer:
    def __init__(
        self, result: ViewComparison, balances: Mapping[str, int], changed: set[str]
    ) -> None:
        self.result = result
        self.balances = balances
        self.changed = changed
        self.seen: set[str] = set()

    def run(self, conn: psycopg.Connection[Any]) -> None:
        schema = self.result.views_schema
        for code, points_minor, house_minor in _stream(
            conn, schema, "SELECT code, points_minor, house_minor FROM {s}.view_agents"
        ):
            self.result.agents += 1
            self.check("view_agents", code, f"agent:{code}", "points", points_minor)
            self.check("view_agents", code, f"house:{code}", "house", house_minor)
        for user_code, balance_minor in _stream(
            conn, schema, "SELECT user_code, balance_minor FROM {s}.view_users"
        ):
            self.result.users += 1
            self.check(
                "view_users", str(user_code), f"player:{user_code}", "balance", balance_minor
            )
        self.missing()

    def check(self, table: str, key: str, account: str, column: str, value: int | None) -> None:
        self.seen.add(account)
        if account in self.changed:
            self.result.skipped += 1
            return
        expected = self.balances.get(account, 0)
        if value is None and expected != 0:
            self.find(table, key, f"has no {column} but the events give {account} {expected}")
        elif value is not None and value != expected:
            self.find(table, key, f"{column} is {value} but the events give {account} {expected}")

    def missing(self) -> None:
        tables = {"agent": "view_agents", "house": "view_agents", "player": "view_users"}
        for account, balance in self.balances.items():
            kind, _, key = account.partition(":")
            if kind not in tables or balance == 0 or account in self.changed:
                continue
            if account not in self.seen:
                self.find(tables[kind], key, f"has no row, but the events give {account} {balance}")

    def find(self, table: str, key: str, what: str) -> None:
        self.result.mismatches += 1
        if len(self.result.findings) < FINDINGS_MAX:
            self.result.findings.append(ViewFinding(table, key, what))


def _stream(conn: psycopg.Connection[Any], schema: str, text: str) -> Any:
    """The rows of a statement, a bounded number per round trip (server-side cursor)."""
    with conn.cursor(name="ledger_audit_rows") as cursor:
        cursor.itersize = _FETCH_ROWS
        cursor.execute(sql.SQL(text).format(s=sql.Identifier(schema)))
        yield from cursor
