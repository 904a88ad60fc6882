"""The projector: read-model tables built from the ledger's notification log, exactly once.

One page = one PostgreSQL transaction:
1. lock the tracking row (`SELECT position ... FOR UPDATE`): one projector at a time
   per views schema; a second one waits and then sees the committed position,
2. read up to `page_events` events some view needs after that position from the
   ledger's events table (request records and seals are not even fetched), up to
   the store's last notification id read just before,
3. decode them with the Ledger's mapper and apply them in order, in memory, to
   the rows they touch (loaded with one query per table),
4. write every changed row (upserts, COPY of history rows) and the new position,
5. commit. A crash before the commit leaves views and position as they were; after
   it, both moved together. So every event is applied exactly once, and a restarted
   projector resumes where the last commit left it. The history tables' primary
   keys (owner or account, sequence) would refuse a second application anyway,
   and the position update checks the position it read.

Tables (in the views schema, `<vs>`):
- `view_tracking`     one row: position (last notification id applied), source, version
- `view_agents`       the agent tree (`lineage` = codes from the root down to the agent),
                      points and house balances, userCount
- `view_users`        players; `balance_minor` is NULL for seamless agents' players
- `view_transactions` history rows per owner (`agent:<code>` or `player:<userCode>`)
                      with the owner's balance before and after, and the vendor transType
- `view_balance_changes` (account, sequence) of every balance an event records: the
                      index the point-in-time API uses to find the event in the store
- `view_ggr_daily`    bets, wins and refunds per agent and UTC day

A different `SCHEMA_VERSION` (or `ledger project --rebuild`) drops the view tables and
rebuilds them from notification 1. Tokens and IP allow lists are not views: they live in
their own tables (`projections/security.py`) and survive a rebuild.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from psycopg import sql

from ledger.application import Ledger
from ledger.book import AgentBook
from ledger.chain import BatchSealed
from ledger.domain import ISSUANCE, Issuance, RequestHandled, UserDirectory, event_id
from ledger.gc_pause import collector_paused
from projections.bounds import (
    LISTEN_WAIT_SECONDS,
    PAGE_INTERVAL_SECONDS,
    PAGE_PACED_EVENTS_MIN,
    PROJECTOR_BACKOFF_SECONDS_MAX,
)

__all__ = [
    "PROJECTION_NAME",
    "SCHEMA_VERSION",
    "TRANS_TYPES",
    "VIEW_TABLES",
    "ProjectionError",
    "Projector",
    "add_deferred_indexes",
    "ensure_views",
    "view_position",
]

log = logging.getLogger("ledger.projector")

PROJECTION_NAME = "ledger"
SCHEMA_VERSION = 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)

# Vendor transaction type numbers (contract section 6).
TRANS_TYPES = {
    "bet": 1,
    "win": 2,
    "deposit": 4,
    "withdraw": 8,
    "refund": 16,
    "bonusWin": 32,
    "transferPoints": 64,
    "issuePoints": 128,
}

# Money events and the wire `type` of their history rows.
MONEY_TYPES: dict[type[Any], str] = {
    AgentBook.PointsIssued: "issuePoints",
    AgentBook.PointsSent: "transferPoints",
    AgentBook.Deposited: "deposit",
    AgentBook.Withdrawn: "withdraw",
    AgentBook.BetPlaced: "bet",
    AgentBook.WinPaid: "win",
    AgentBook.BetRefunded: "refund",
}

# Events no view needs. Anything neither here nor handled stops the projector:
# a new event type must get a rule before views can be trusted again.
IGNORED_TOPICS = [
    get_topic(cls)
    for cls in (
        RequestHandled,
        BatchSealed,
        Issuance.Created,
        Issuance.Issued,
        UserDirectory.Created,
        UserDirectory.UserCodeAssigned,
        AgentBook.RefundArrivedBeforeBet,
    )
]

VIEW_TABLES = (
    "view_agents",
    "view_users",
    "view_transactions",
    "view_balance_changes",
    "view_ggr_daily",
)

_DDL = (
    """CREATE TABLE IF NOT EXISTS {s}.view_agents (
        code text PRIMARY KEY, stream_id uuid NOT NULL UNIQUE, parent_code text,
        lineage text[] NOT NULL, currency text NOT NULL, mode text NOT NULL, name text,
        points_minor bigint NOT NULL, house_minor bigint NOT NULL, user_count bigint NOT NULL,
        created_sequence bigint NOT NULL, created_at_ms bigint NOT NULL,
        updated_sequence bigint NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS view_agents_parent ON {s}.view_agents (parent_code, code)",
    """CREATE TABLE IF NOT EXISTS {s}.view_users (
        user_code bigint PRIMARY KEY, agent_code text NOT NULL, name text NOT NULL,
        balance_minor bigint, created_sequence bigint NOT NULL, created_at_ms bigint NOT NULL,
        updated_sequence bigint NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS {s}.view_transactions (
        owner text NOT NULL, sequence bigint NOT NULL, trans_id uuid NOT NULL,
        type text NOT NULL, trans_type smallint NOT NULL, txn_id text, round_id text,
        user_code bigint, amount_minor bigint NOT NULL, balance_before_minor bigint,
        balance_after_minor bigint, created_at_ms bigint NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS view_transactions_txn
        ON {s}.view_transactions (owner, txn_id) WHERE txn_id IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS {s}.view_balance_changes (
        account text NOT NULL, sequence bigint NOT NULL, created_at_ms bigint NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS {s}.view_ggr_daily (
        agent_code text NOT NULL, day date NOT NULL, bets_minor numeric NOT NULL,
        wins_minor numeric NOT NULL, refunds_minor numeric NOT NULL,
        PRIMARY KEY (agent_code, day))""",
)

# Indexes of the two large tables that no page of the projector reads through (pages
# only append to them; a refund's round is found through view_transactions_txn).
# A replay builds its tables without them and adds them once the tables are full
# (`add_deferred_indexes`): 3 index builds instead of keeping 3 indexes up to date
# row by row (a 583,734-event replay: 51-52k -> 60-62k events/s). Unique indexes,
# not primary keys, so that creating them is idempotent; each keeps the name of the
# primary key of the views before, so views created either way are alike.
_DEFERRED_DDL = (
    """CREATE UNIQUE INDEX IF NOT EXISTS view_transactions_pkey
        ON {s}.view_transactions (owner, sequence)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS view_balance_changes_pkey
        ON {s}.view_balance_changes (account, sequence)""",
    """CREATE INDEX IF NOT EXISTS view_balance_changes_time
        ON {s}.view_balance_changes (account, created_at_ms, sequence)""",
)

_TRACKING_DDL = """CREATE TABLE IF NOT EXISTS {s}.view_tracking (
    name text PRIMARY KEY, source text NOT NULL, version integer NOT NULL,
    position bigint NOT NULL, events_applied bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now())"""


class ProjectionError(Exception):
    """The views cannot be built: an unknown event type, or views of another store."""


def _q(text: str, views_schema: str) -> sql.Composed:
    return sql.SQL(text).format(s=sql.Identifier(views_schema))


def ensure_views(
    conn: psycopg.Connection[Any],
    views_schema: str,
    source: str,
    *,
    migrate: bool,
    defer_indexes: bool = False,
) -> None:
    """Create the views schema and tables when missing (idempotent, safe in parallel).

    `source` names the events table the views are built from; views of another store
    are refused. With `migrate`, views of another SCHEMA_VERSION are dropped for a rebuild.
    With `defer_indexes` (a replay's staging views), the indexes of _DEFERRED_DDL are
    left for `add_deferred_indexes`.
    """
    with conn.transaction():
        # Two processes creating the same tables at once collide in the catalog.
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ledger-views:{views_schema}",)
        )
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(views_schema)))
        conn.execute(_q(_TRACKING_DDL, views_schema))
        row = conn.execute(
            _q("SELECT source, version FROM {s}.view_tracking WHERE name = %s", views_schema),
            (PROJECTION_NAME,),
        ).fetchone()
        if row is not None and row[0] != source:
            raise ProjectionError(f"schema {views_schema!r} holds views of {row[0]}, not {source}")
        if row is not None and row[1] != SCHEMA_VERSION and migrate:
            log.warning("views are version %s, code is %s: rebuilding", row[1], SCHEMA_VERSION)
            _drop_views(conn, views_schema)
            row = None
        for statement in _table_ddl(defer_indexes):
            conn.execute(_q(statement, views_schema))
        if row is None:
            conn.execute(
                _q(
                    "INSERT INTO {s}.view_tracking"
                    " (name, source, version, position, events_applied)"
                    " VALUES (%s, %s, %s, 0, 0) ON CONFLICT (name) DO UPDATE SET"
                    " version = EXCLUDED.version, position = 0, events_applied = 0",
                    views_schema,
                ),
                (PROJECTION_NAME, source, SCHEMA_VERSION),
            )


def _table_ddl(defer_indexes: bool) -> tuple[str, ...]:
    """The statements that create the views' tables, with or without _DEFERRED_DDL."""
    return _DDL if defer_indexes else (*_DDL, *_DEFERRED_DDL)


def add_deferred_indexes(conn: psycopg.Connection[Any], views_schema: str) -> None:
    """Create the indexes `ensure_views(defer_indexes=True)` left out (idempotent)."""
    with conn.transaction():
        for statement in _DEFERRED_DDL:
            conn.execute(_q(statement, views_schema))


def _drop_views(conn: psycopg.Connection[Any], views_schema: str) -> None:
    for table in VIEW_TABLES:
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}.{}").format(
                sql.Identifier(views_schema), sql.Identifier(table)
            )
        )


def view_position(conn: psycopg.Connection[Any], views_schema: str) -> int:
    """The last notification id the views reflect (0 before any)."""
    row = conn.execute(
        _q("SELECT position FROM {s}.view_tracking WHERE name = %s", views_schema),
        (PROJECTION_NAME,),
    ).fetchone()
    return 0 if row is None else int(row[0])


# ------------------------------------------------------------------ page state


@dataclass(slots=True)
class AgentRow:
    code: str
    stream_id: UUID
    parent_code: str | None
    lineage: list[str]
    currency: str
    mode: str
    name: str | None
    points_minor: int
    house_minor: int
    user_count: int
    created_sequence: int
    created_at_ms: int
    updated_sequence: int


@dataclass(slots=True)
class UserRow:
    user_code: int
    agent_code: str
    name: str
    balance_minor: int | None
    created_sequence: int
    created_at_ms: int
    updated_sequence: int


@dataclass(slots=True)
class Page:
    """The rows one page of events touches, changed in memory, then written at once."""

    agents: dict[str, AgentRow] = field(default_factory=dict)
    code_of_stream: dict[UUID, str] = field(default_factory=dict)
    users: dict[int, UserRow] = field(default_factory=dict)
    round_of_bet: dict[tuple[str, str], str | None] = field(default_factory=dict)
    history: list[tuple[Any, ...]] = field(default_factory=list)
    changes: list[tuple[str, int, int]] = field(default_factory=list)
    ggr: dict[tuple[str, date], list[int]] = field(default_factory=dict)
    dirty_agents: set[str] = field(default_factory=set)
    dirty_users: set[int] = field(default_factory=set)

    # ---------------------------------------------------------------- apply

    def apply(self, sequence: int, event: Any) -> None:
        """Apply one decoded event (events arrive in notification order)."""
        kind = type(event)
        if kind is AgentBook.AgentCreated:
            self._agent_created(sequence, event)
        elif kind is AgentBook.UserRegistered:
            self._user_registered(sequence, event)
        elif kind in MONEY_TYPES:
            self._money(sequence, event, MONEY_TYPES[kind])
        elif kind is AgentBook.PointsReceived:
            # The sender's event already moved the points and wrote both history
            # rows; this one only repeats the receiver's balance for its own stream.
            self._set_balances(sequence, event)
        else:
            raise ProjectionError(f"no projection rule for event {get_topic(kind)}")

    def _agent_created(self, sequence: int, event: Any) -> None:
        lineage = [event.code]
        if event.parent_code is not None:
            lineage = [*self.agents[event.parent_code].lineage, event.code]
        created_ms = epoch_ms(event.timestamp)
        self.agents[event.code] = AgentRow(
            code=event.code,
            stream_id=event.originator_id,
            parent_code=event.parent_code,
            lineage=lineage,
            currency=event.currency,
            mode=event.mode,
            name=event.name,
            points_minor=0,
            house_minor=0,
            user_count=0,
            created_sequence=sequence,
            created_at_ms=created_ms,
            updated_sequence=sequence,
        )
        self.code_of_stream[event.originator_id] = event.code
        self.dirty_agents.add(event.code)

    def _user_registered(self, sequence: int, event: Any) -> None:
        agent = self.agents[self.code_of_stream[event.originator_id]]
        agent.user_count += 1
        agent.updated_sequence = sequence
        self.users[event.user_code] = UserRow(
            user_code=event.user_code,
            agent_code=agent.code,
            name=event.name,
            balance_minor=0 if agent.mode == "transfer" else None,
            created_sequence=sequence,
            created_at_ms=epoch_ms(event.timestamp),
            updated_sequence=sequence,
        )
        self.dirty_agents.add(agent.code)
        self.dirty_users.add(event.user_code)

    def _money(self, sequence: int, event: Any, type_name: str) -> None:
        """History rows for every owner the command concerns, then the new balances."""
        assert len(event.postings) == 1, "a command's primary event carries one posting"
        amount_minor: int = event.postings[0][2]
        agent = self.agents[self.code_of_stream[event.originator_id]]
        user_code: int | None = getattr(event, "user_code", None)
        txn_id: str | None = getattr(event, "txn_id", None)
        round_id: str | None = getattr(event, "round_id", None)
        if type_name == "bet":
            self.round_of_bet[(agent.code, event.txn_id)] = event.round_id
        elif type_name == "refund":
            round_id = self.round_of_bet.get((agent.code, event.txn_id))
        trans_type = TRANS_TYPES[type_name]
        if type_name == "win" and event.kind != "game":
            trans_type = TRANS_TYPES["bonusWin"]
        created_ms = epoch_ms(event.timestamp)
        common = (event_id(event.originator_id, event.originator_version), type_name, trans_type)
        detail = (txn_id, round_id, user_code, amount_minor)
        owners = [agent]
        if type_name == "transferPoints":
            owners.append(self.agents[event.to_agent_code])
        for owner in owners:
            before, after = owner.points_minor, event.balances.get(f"agent:{owner.code}")
            after = before if after is None else after
            row = (f"agent:{owner.code}", sequence, *common, *detail, before, after, created_ms)
            self.history.append(row)
        if user_code is not None:
            user = self.users[user_code]
            account = f"player:{user_code}"
            before_or_none = user.balance_minor
            after_or_none = event.balances.get(account, before_or_none)
            history = (*common, *detail, before_or_none, after_or_none, created_ms)
            self.history.append((account, sequence, *history))
        if type_name in ("bet", "win", "refund"):
            self._add_ggr(agent.code, event.timestamp, type_name, amount_minor)
        self._set_balances(sequence, event)

    def _add_ggr(self, agent_code: str, timestamp: datetime, type_name: str, amount: int) -> None:
        day = timestamp.astimezone(UTC).date()
        totals = self.ggr.setdefault((agent_code, day), [0, 0, 0])
        totals[("bet", "win", "refund").index(type_name)] += amount

    def _set_balances(self, sequence: int, event: Any) -> None:
        """Take the balances after the event; note where each changed (not `issuance`,
        which is per currency and shared by every broker, so no caller may read it)."""
        created_ms = epoch_ms(event.timestamp)
        for account, balance_minor in event.balances.items():
            kind, _, name = account.partition(":")
            if account == ISSUANCE:
                continue
            if kind == "player":
                user = self.users[int(name)]
                user.balance_minor = balance_minor
                user.updated_sequence = sequence
                self.dirty_users.add(user.user_code)
            else:
                agent = self.agents[name]
                if kind == "agent":
                    agent.points_minor = balance_minor
                else:
                    assert kind == "house", account
                    agent.house_minor = balance_minor
                agent.updated_sequence = sequence
                self.dirty_agents.add(agent.code)
            self.changes.append((account, sequence, created_ms))


def epoch_ms(timestamp: datetime) -> int:
    """Milliseconds since the epoch, in integers (no float)."""
    return (timestamp - EPOCH) // ONE_MS


# ------------------------------------------------------------------ projector


class Projector:
    """Builds the views of one ledger store in one views schema, page by page."""

    def __init__(
        self,
        database_url: str,
        ledger: Ledger,
        views_schema: str,
        page_events: int,
        *,
        defer_indexes: bool = False,
    ) -> None:
        """`defer_indexes`: see `ensure_views` (for a replay's staging views)."""
        recorder: Any = ledger.recorder
        self.defer_indexes = defer_indexes
        self.database_url = database_url
        self.mapper = ledger.mapper
        self.views_schema = views_schema
        self.page_events = page_events
        store_schema = recorder.datastore.schema
        self.source = f"{store_schema}.{recorder.events_table_name}"
        self.channel: str = recorder.channel_name
        store = sql.SQL("{}.{}").format(
            sql.Identifier(store_schema), sql.Identifier(recorder.events_table_name)
        )
        # Only the events some view needs (half the store is request records and
        # seals), up to a bound read first: see `_read`.
        self.sql_read = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {} WHERE notification_id > %s AND notification_id <= %s"
            " AND topic <> ALL(%s) ORDER BY notification_id LIMIT %s"
        ).format(store)
        self.sql_store_max = sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
            store
        )
        self.events_applied = 0
        # The last page: how many events it applied, and whether it was a full one
        # (more events were waiting after it).
        self.page_events_applied = 0
        self.page_was_full = False

    def connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self.database_url,
            autocommit=True,
            connect_timeout=10,
            application_name="ledger-projector",
        )
        try:
            ensure_views(
                conn,
                self.views_schema,
                self.source,
                migrate=True,
                defer_indexes=self.defer_indexes,
            )
        except BaseException:
            conn.close()
            raise
        return conn

    def rebuild(self) -> None:
        """Drop every view and start again from notification 1 (tokens are kept)."""
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=10) as conn:
            ensure_views(conn, self.views_schema, self.source, migrate=True)
            with conn.transaction():
                self._lock_position(conn)
                _drop_views(conn, self.views_schema)
                for statement in _table_ddl(self.defer_indexes):
                    conn.execute(_q(statement, self.views_schema))
                conn.execute(
                    _q(
                        "UPDATE {s}.view_tracking SET position = 0, events_applied = 0,"
                        " version = %s, updated_at = now() WHERE name = %s",
                        self.views_schema,
                    ),
                    (SCHEMA_VERSION, PROJECTION_NAME),
                )

    def catch_up(self, stop: threading.Event | None = None) -> int:
        """Apply pages until the views reach the store's last event; returns the position."""
        with self.connect() as conn:
            while stop is None or not stop.is_set():
                if self.project_page(conn) == 0:
                    break
            return view_position(conn, self.views_schema)

    def store_position(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(self.sql_store_max).fetchone()
        assert row is not None
        return int(row[0])

    def _lock_position(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            _q(
                "SELECT position FROM {s}.view_tracking WHERE name = %s FOR UPDATE",
                self.views_schema,
            ),
            (PROJECTION_NAME,),
        ).fetchone()
        assert row is not None, "ensure_views creates the tracking row"
        return int(row[0])

    def project_page(self, conn: psycopg.Connection[Any]) -> int:
        """Apply the next page of events and its position in ONE transaction.

        Returns how many notifications the page moved past (0: the views are up to date).
        """
        with conn.transaction():
            position = self._lock_position(conn)
            with collector_paused():
                new_position, applied = self._apply_page(conn, position)
            self.page_events_applied = applied
            if new_position <= position:
                return 0
            moved = conn.execute(
                _q(
                    "UPDATE {s}.view_tracking SET position = %s,"
                    " events_applied = events_applied + %s, updated_at = now()"
                    " WHERE name = %s AND position = %s",
                    self.views_schema,
                ),
                (new_position, applied, PROJECTION_NAME, position),
            )
            assert moved.rowcount == 1, "the tracking row is locked by this transaction"
        self.events_applied += applied
        return new_position - position

    def _apply_page(self, conn: psycopg.Connection[Any], position: int) -> tuple[int, int]:
        """Read, apply and write the rows of the page after `position`; returns the
        position it brings the views to and how many events it applied.

        A function of its own so that the page's objects are freed when it returns,
        before the collector resumes: alive then, the first allocation after the pause
        ran a young collection over all of them (~14 ms of a 10,000-event page).
        """
        rows, new_position = self._read(conn, position)
        if new_position <= position:
            return position, 0
        decoded = [
            (row[0], self.mapper.to_domain_event(StoredEvent(row[1], row[2], row[3], row[4])))
            for row in rows
        ]
        page = Page()
        _load(conn, self.views_schema, page, [event for _, event in decoded])
        for sequence, event in decoded:
            page.apply(sequence, event)
        _write(conn, self.views_schema, page)
        return new_position, len(decoded)

    def _read(self, conn: psycopg.Connection[Any], position: int) -> tuple[list[Any], int]:
        """The next page of events some view needs after `position`, and the position
        the page brings the views to.

        The store's last notification id is read first and bounds the page: the
        writers' lock (ledger/store.py) gives ids in commit order, so every event up
        to that id is committed and visible. A page shorter than `page_events` covers
        everything up to the bound, the ignored events after its last row included.
        """
        self.page_was_full = False
        row = conn.execute(self.sql_store_max).fetchone()
        assert row is not None
        upper = int(row[0])
        if upper <= position:
            return [], position
        rows = conn.execute(
            self.sql_read, (position, upper, IGNORED_TOPICS, self.page_events)
        ).fetchall()
        self.page_was_full = len(rows) == self.page_events
        if self.page_was_full:
            return rows, int(rows[-1][0])
        return rows, upper

    def run_forever(self, stop: threading.Event) -> None:
        """Catch up, then follow the store until `stop` is set. Database errors are
        logged and retried with a bounded backoff; a ProjectionError stops the loop."""
        failures = 0
        while not stop.is_set():
            try:
                self._follow(stop)
                return
            except psycopg.OperationalError:
                failures += 1
                backoff = min(PROJECTOR_BACKOFF_SECONDS_MAX, 0.1 * 2**failures)
                log.exception("projector lost the database; retrying in %.1fs", backoff)
                stop.wait(backoff)

    def _follow(self, stop: threading.Event) -> None:
        with self.connect() as conn, self._listener() as listener:
            log.warning("projector following %s into schema %s", self.source, self.views_schema)
            pacer = PagePacer(PAGE_INTERVAL_SECONDS, PAGE_PACED_EVENTS_MIN)
            while not stop.is_set():
                if stop.wait(pacer.wait_seconds(time.monotonic())):
                    break
                started = time.monotonic()
                moved = self.project_page(conn)
                pacer.page_done(started, self.page_events_applied, full=self.page_was_full)
                if moved == 0:
                    # Wake on the store's NOTIFY (sent by every write), or look anyway.
                    for _ in listener.notifies(timeout=LISTEN_WAIT_SECONDS, stop_after=1):
                        pass

    def _listener(self) -> psycopg.Connection[Any]:
        listener = psycopg.connect(
            self.database_url,
            autocommit=True,
            connect_timeout=10,
            application_name="ledger-projector-listen",
        )
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        return listener


class PagePacer:
    """While the projector follows a busy store, a page that applied at least
    `events_min` events makes the next page wait until `interval` seconds after its
    start; a full page (a backlog) or a smaller page lets the next one go at once.

    Following every write at once, the projector made a page of each of the ledger's
    batches, and each page writes every player and agent it touched once: under load,
    the same active players again and again. Paced, it writes them once per interval.
    Measured in the 5,000 commands/s phase of `make bench` (2026-12-05, three
    interleaved pairs): the read side's CPU per 1,000 commands 42-45 -> 20-22 ms,
    PostgreSQL's 70-75 -> 50-61 ms, the median command-to-result latency 28-35 -> 23-31
    ms. (Pages 0.05 or 0.1 s apart measured like no pacing.) A few writes are
    projected at once, as before: a client writing one command at a time and reading
    it back does not wait for the interval. Under load the views are at most
    `interval` (plus a page) behind; a client that must read its own write passes
    `minSequence`.
    """

    def __init__(self, interval: float, events_min: int) -> None:
        self.interval = interval
        self.events_min = events_min
        self.next_at = float("-inf")

    def wait_seconds(self, now: float) -> float:
        """How long to wait before the next page."""
        return max(0.0, self.next_at - now)

    def page_done(self, started: float, events: int, *, full: bool) -> None:
        """Account for a page that began at `started` (a `time.monotonic()` reading)
        and applied `events` events."""
        paced = events >= self.events_min and not full
        self.next_at = started + self.interval if paced else float("-inf")


def _load(conn: psycopg.Connection[Any], views_schema: str, page: Page, events: list[Any]) -> None:
    """Load the rows the page's events touch: agents, users and refunded bets' rounds."""
    streams: set[UUID] = set()
    codes: set[str] = set()
    users: set[int] = set()
    refunds: list[tuple[UUID, str]] = []
    for event in events:
        if type(event) is AgentBook.AgentCreated:
            if event.parent_code is not None:
                codes.add(event.parent_code)
            continue
        streams.add(event.originator_id)
        for account in getattr(event, "balances", {}):
            kind, _, name = account.partition(":")
            if kind in ("agent", "house"):
                codes.add(name)
        if getattr(event, "user_code", None) is not None:
            users.add(event.user_code)
        if type(event) is AgentBook.PointsSent:
            codes.add(event.to_agent_code)
        elif type(event) is AgentBook.BetRefunded:
            refunds.append((event.originator_id, event.txn_id))
    for row in conn.execute(
        _q(
            "SELECT code, stream_id, parent_code, lineage, currency, mode, name, points_minor,"
            " house_minor, user_count, created_sequence, created_at_ms, updated_sequence"
            " FROM {s}.view_agents WHERE code = ANY(%s) OR stream_id = ANY(%s)",
            views_schema,
        ),
        (list(codes), list(streams)),
    ):
        agent = AgentRow(*row)
        page.agents[agent.code] = agent
        page.code_of_stream[agent.stream_id] = agent.code
    for row in conn.execute(
        _q(
            "SELECT user_code, agent_code, name, balance_minor, created_sequence, created_at_ms,"
            " updated_sequence FROM {s}.view_users WHERE user_code = ANY(%s)",
            views_schema,
        ),
        (list(users),),
    ):
        page.users[row[0]] = UserRow(*row)
    _load_rounds(conn, views_schema, page, refunds)


def _load_rounds(
    conn: psycopg.Connection[Any], views_schema: str, page: Page, refunds: list[tuple[UUID, str]]
) -> None:
    """The round of each refunded bet recorded before this page (for the refund's row)."""
    if not refunds:
        return
    owners = [
        f"agent:{page.code_of_stream[stream]}"
        for stream, _ in refunds
        if stream in page.code_of_stream
    ]
    txn_ids = [txn_id for stream, txn_id in refunds if stream in page.code_of_stream]
    for owner, txn_id, round_id in conn.execute(
        _q(
            "SELECT t.owner, t.txn_id, t.round_id FROM {s}.view_transactions t"
            " JOIN unnest(%s::text[], %s::text[]) AS r(owner, txn_id)"
            " ON t.owner = r.owner AND t.txn_id = r.txn_id WHERE t.trans_type = 1",
            views_schema,
        ),
        (owners, txn_ids),
    ):
        page.round_of_bet[(owner.removeprefix("agent:"), txn_id)] = round_id


def _write(conn: psycopg.Connection[Any], views_schema: str, page: Page) -> None:
    """Write every row the page changed: upserts, and COPY for the history rows."""
    agents = [page.agents[code] for code in sorted(page.dirty_agents)]
    if agents:
        conn.execute(
            _q(
                "INSERT INTO {s}.view_agents SELECT a.code, a.stream_id, a.parent_code,"
                " string_to_array(a.lineage, '/'), a.currency, a.mode, a.name, a.points_minor,"
                " a.house_minor, a.user_count, a.created_sequence, a.created_at_ms,"
                " a.updated_sequence FROM unnest(%s::text[], %s::uuid[], %s::text[], %s::text[],"
                " %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[],"
                " %s::bigint[], %s::bigint[], %s::bigint[]) AS a(code, stream_id, parent_code,"
                " lineage, currency, mode, name, points_minor, house_minor, user_count,"
                " created_sequence, created_at_ms, updated_sequence)"
                " ON CONFLICT (code) DO UPDATE SET points_minor = EXCLUDED.points_minor,"
                " house_minor = EXCLUDED.house_minor, user_count = EXCLUDED.user_count,"
                " updated_sequence = EXCLUDED.updated_sequence",
                views_schema,
            ),
            _columns(agents, lineage_joined=True),
        )
    users = [page.users[code] for code in sorted(page.dirty_users)]
    if users:
        conn.execute(
            _q(
                "INSERT INTO {s}.view_users SELECT * FROM unnest(%s::bigint[], %s::text[],"
                " %s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[])"
                " ON CONFLICT (user_code) DO UPDATE SET balance_minor = EXCLUDED.balance_minor,"
                " updated_sequence = EXCLUDED.updated_sequence",
                views_schema,
            ),
            _columns(users),
        )
    _copy(conn, views_schema, "view_transactions", page.history)
    _copy(conn, views_schema, "view_balance_changes", page.changes)
    if page.ggr:
        keys = sorted(page.ggr)
        conn.execute(
            _q(
                "INSERT INTO {s}.view_ggr_daily SELECT * FROM unnest(%s::text[], %s::date[],"
                " %s::numeric[], %s::numeric[], %s::numeric[]) ON CONFLICT (agent_code, day)"
                " DO UPDATE SET bets_minor = view_ggr_daily.bets_minor + EXCLUDED.bets_minor,"
                " wins_minor = view_ggr_daily.wins_minor + EXCLUDED.wins_minor,"
                " refunds_minor = view_ggr_daily.refunds_minor + EXCLUDED.refunds_minor",
                views_schema,
            ),
            (
                [agent for agent, _ in keys],
                [day for _, day in keys],
                *([page.ggr[key][n] for key in keys] for n in range(3)),
            ),
        )


def _columns(rows: list[Any], *, lineage_joined: bool = False) -> list[list[Any]]:
    """Rows of a slots dataclass as one list per column, for `unnest`."""
    names = type(rows[0]).__slots__
    columns = [[getattr(row, name) for row in rows] for name in names]
    if lineage_joined:
        at = names.index("lineage")
        columns[at] = ["/".join(lineage) for lineage in columns[at]]
    return columns


def _copy(conn: psycopg.Connection[Any], views_schema: str, table: str, rows: list[Any]) -> None:
    if not rows:
        return
    statement = sql.SQL("COPY {}.{} FROM STDIN").format(
        sql.Identifier(views_schema), sql.Identifier(table)
    )
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
