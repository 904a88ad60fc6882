"""The API's reads: one statement per question, each limited to the caller's subtree.

Visibility is part of every statement (`%(caller)s = ANY(lineage)`, where `lineage`
lists the codes from the root down to the agent), so an agent or user outside the
caller's subtree takes exactly the same path as one that does not exist: the same
query, no row. Reads of one request run in one REPEATABLE READ, READ ONLY
transaction, so the rows and the position (`asOfSequence`) come from one snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg import AsyncConnection, sql

from ledger.handlers import AGENT_CODE

__all__ = ["AgentRecord", "HistoryRow", "Queries", "UserRecord"]

BIGINT_MAX = 2**63 - 1

_AGENT_COLUMNS = (
    "a.code, a.name, a.parent_code, a.currency, a.mode, a.points_minor, a.house_minor, a.user_count"
)


@dataclass(frozen=True, slots=True)
class AgentRecord:
    code: str
    name: str | None
    parent_code: str | None
    currency: str
    mode: str
    points_minor: int
    house_minor: int
    user_count: int


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_code: int
    name: str
    agent_code: str
    currency: str
    mode: str
    balance_minor: int | None


@dataclass(frozen=True, slots=True)
class HistoryRow:
    sequence: int
    trans_id: Any
    type: str
    trans_type: int
    txn_id: str | None
    round_id: str | None
    user_code: int | None
    amount_minor: int
    balance_before_minor: int | None
    balance_after_minor: int | None
    created_at_ms: int


class Queries:
    """Statements of one views schema (and the store's events table, for audits)."""

    def __init__(self, views_schema: str, store_schema: str, events_table: str) -> None:
        def q(text: str) -> sql.Composed:
            return sql.SQL(text).format(
                s=sql.Identifier(views_schema),
                store=sql.SQL("{}.{}").format(
                    sql.Identifier(store_schema), sql.Identifier(events_table)
                ),
            )

        self.position = q("SELECT position FROM {s}.view_tracking WHERE name = 'ledger'")
        self.store_max = q("SELECT coalesce(max(notification_id), 0) FROM {store}")
        self.agent = q(
            "SELECT " + _AGENT_COLUMNS + " FROM {s}.view_agents a"
            " WHERE a.code = %s AND %s = ANY(a.lineage)"
        )
        self.children = q(
            "SELECT " + _AGENT_COLUMNS + " FROM {s}.view_agents a"
            " WHERE a.parent_code = %s AND a.code > %s ORDER BY a.code LIMIT %s"
        )
        self.user = q(
            "SELECT u.user_code, u.name, u.agent_code, a.currency, a.mode, u.balance_minor"
            " FROM {s}.view_users u JOIN {s}.view_agents a ON a.code = u.agent_code"
            " WHERE u.user_code = %s AND %s = ANY(a.lineage)"
        )
        self.history = q(
            "SELECT sequence, trans_id, type, trans_type, txn_id, round_id, user_code,"
            " amount_minor, balance_before_minor, balance_after_minor, created_at_ms"
            " FROM {s}.view_transactions WHERE owner = %s AND sequence > %s"
            " AND created_at_ms >= %s AND created_at_ms < %s ORDER BY sequence LIMIT %s"
        )
        self.ggr = q(
            "SELECT day, bets_minor, wins_minor, refunds_minor FROM {s}.view_ggr_daily"
            " WHERE agent_code = %s AND day >= %s AND day <= %s ORDER BY day LIMIT %s"
        )
        self.change_by_sequence = q(
            "SELECT sequence FROM {s}.view_balance_changes WHERE account = %s AND sequence <= %s"
            " ORDER BY sequence DESC LIMIT 1"
        )
        self.change_by_time = q(
            "SELECT sequence FROM {s}.view_balance_changes WHERE account = %s"
            " AND created_at_ms <= %s AND sequence <= %s"
            " ORDER BY created_at_ms DESC, sequence DESC LIMIT 1"
        )
        self.sql_stored_event = q(
            "SELECT originator_id, originator_version, topic, state FROM {store}"
            " WHERE notification_id = %s"
        )

    @staticmethod
    async def _one(conn: AsyncConnection[Any], statement: sql.Composed, params: Any) -> Any:
        cursor = await conn.execute(statement, params)
        return await cursor.fetchone()

    @staticmethod
    async def _all(conn: AsyncConnection[Any], statement: sql.Composed, params: Any) -> list[Any]:
        cursor = await conn.execute(statement, params)
        return await cursor.fetchall()

    async def view_position(self, conn: AsyncConnection[Any]) -> int:
        row = await self._one(conn, self.position, ())
        return 0 if row is None else int(row[0])

    async def store_position(self, conn: AsyncConnection[Any]) -> int:
        row = await self._one(conn, self.store_max, ())
        return int(row[0])

    async def find_agent(
        self, conn: AsyncConnection[Any], code: str, caller: str
    ) -> AgentRecord | None:
        if not AGENT_CODE.fullmatch(code):
            return None  # cannot exist (and text with NUL bytes must not reach PostgreSQL)
        row = await self._one(conn, self.agent, (code, caller))
        return None if row is None else AgentRecord(*row)

    async def find_children(
        self, conn: AsyncConnection[Any], code: str, after: str, limit: int
    ) -> list[AgentRecord]:
        return [
            AgentRecord(*row) for row in await self._all(conn, self.children, (code, after, limit))
        ]

    async def find_user(
        self, conn: AsyncConnection[Any], user_code: int, caller: str
    ) -> UserRecord | None:
        if not 0 < user_code <= BIGINT_MAX:
            return None
        row = await self._one(conn, self.user, (user_code, caller))
        return None if row is None else UserRecord(*row)

    async def find_history(
        self,
        conn: AsyncConnection[Any],
        owner: str,
        after: int,
        window_ms: tuple[int, int],
        limit: int,
    ) -> list[HistoryRow]:
        rows = await self._all(conn, self.history, (owner, after, *window_ms, limit))
        return [HistoryRow(*row) for row in rows]

    async def find_ggr(
        self, conn: AsyncConnection[Any], code: str, days: tuple[date, date], limit: int
    ) -> list[Any]:
        return await self._all(conn, self.ggr, (code, *days, limit))

    async def last_change(
        self, conn: AsyncConnection[Any], account: str, sequence_max: int, time_max_ms: int | None
    ) -> int | None:
        """The sequence of the last event up to `sequence_max` (and, when given, recorded
        at or before `time_max_ms`) that set the account's balance."""
        if time_max_ms is None:
            row = await self._one(conn, self.change_by_sequence, (account, sequence_max))
        else:
            row = await self._one(conn, self.change_by_time, (account, time_max_ms, sequence_max))
        return None if row is None else int(row[0])

    async def stored_event(self, conn: AsyncConnection[Any], sequence: int) -> Any:
        """The stored event (id, version, topic, state) at a notification id."""
        return await self._one(conn, self.sql_stored_event, (sequence,))
