"""`ledger replay`: rebuild the read model from zero beside the live one, then swap it in.

Readers and the projector find the views by name (`<views>.view_*`) and know nothing of
replays. A replay:

1. **builds** every table of the projection from notification 1 into the staging schema
   `<views>_next`, with the projector's own code: one transaction per page, rows and
   position together; the indexes no page reads through are created once the tables
   are full (`add_deferred_indexes`). The live views keep serving and keep following
   the store.
2. **swaps**, in ONE transaction (bounded by `lock_timeout`, retried):
   - lock the live `view_tracking` ACCESS EXCLUSIVE. Every reader and the projector
     touch it first in each of their transactions, so taking it first drains them and
     cannot deadlock with them; whoever arrives later queues behind the swap;
   - bring the staging views up to at least the live position (from a second
     connection, while the live projector is held), so the swap never moves the views
     back;
   - lock the other live tables, drop them, move the staging tables in
     (`ALTER TABLE ... SET SCHEMA`: catalog entries only, no row is copied), drop the
     empty staging schema, commit.

Readers that queued during the swap (milliseconds) then read the new tables: PostgreSQL
looks a name up again when the relation it waited for was replaced, and re-plans
prepared statements whose tables changed. Because the staging tables were written page
by page with their position, any snapshot sees them at a committed position with exactly
that position's rows. The live projector, queued on the same lock, carries on from the
position it finds in the new `view_tracking`.

Tokens and IP allow lists (`api_tokens`, `api_allowed_ips`) are configuration, not
projections: they stay where they are and are never copied or dropped.

Projections: the projector maintains one projection, `ledger`. Its tables are applied
together in each page (a history row needs the agent's and player's balances before
the event, a refund's row its bet's round) and share one position, so they are rebuilt
and swapped together. `all` names every projection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ledger.application import Ledger
from projections.bounds import (
    REPLAY_SWAP_ATTEMPTS_MAX,
    REPLAY_SWAP_BACKOFF_SECONDS,
    REPLAY_SWAP_LOCK_TIMEOUT_MS,
)
from projections.views import (
    PROJECTION_NAME,
    VIEW_TABLES,
    ProjectionError,
    Projector,
    add_deferred_indexes,
    ensure_views,
    view_position,
)

__all__ = [
    "PROJECTIONS",
    "ReplayError",
    "ReplayResult",
    "projection_names",
    "replay",
    "staging_schema",
]

# Every projection the projector maintains, with its tables; `view_tracking` first
# (the lock order of the swap, see the module docstring).
PROJECTIONS: dict[str, tuple[str, ...]] = {PROJECTION_NAME: ("view_tracking", *VIEW_TABLES)}
ALL = "all"
IDENTIFIER_CHARS_MAX = 63  # PostgreSQL's NAMEDATALEN - 1

Progress = Callable[[int, int], None]  # (position of the rebuilt views, store position)


class ReplayError(ProjectionError):
    """A replay cannot run: an unknown projection, a replay already running, a staging
    schema that holds something else, or live views that stay locked."""


@dataclass(frozen=True)
class ReplayResult:
    """What one replay did. `position` is the position of the views swapped in,
    `replaced_position` that of the views they replaced (never higher)."""

    projections: tuple[str, ...]
    position: int
    replaced_position: int
    events_applied: int
    swap_attempts: int
    swap_ms: int


def projection_names(name: str) -> tuple[str, ...]:
    """The projections `name` selects: one by its name, or every one for `all`."""
    if name == ALL:
        return tuple(PROJECTIONS)
    if name not in PROJECTIONS:
        known = ", ".join([*PROJECTIONS, ALL])
        raise ReplayError(f"no projection {name!r}: the projections are {known}")
    return (name,)


def staging_schema(views_schema: str) -> str:
    """Where a replay builds the views before the swap."""
    staging = f"{views_schema}_next"
    if len(staging.encode()) > IDENTIFIER_CHARS_MAX:
        raise ReplayError(f"views schema {views_schema!r} is too long to have a staging schema")
    return staging


def replay(
    database_url: str,
    ledger: Ledger,
    views_schema: str,
    page_events: int,
    name: str = ALL,
    progress: Progress | None = None,
) -> ReplayResult:
    """Rebuild the projections `name` selects from notification 1 and swap them in
    atomically (see the module docstring). Raises ReplayError when it cannot."""
    names = projection_names(name)
    tables = tuple(table for projection in names for table in PROJECTIONS[projection])
    staging = staging_schema(views_schema)
    builder = Projector(database_url, ledger, staging, page_events, defer_indexes=True)
    with _connect(database_url) as admin:
        _hold_replay_lock(admin, views_schema)
        # The live views exist (empty at worst) and are views of this store.
        ensure_views(admin, views_schema, builder.source, migrate=False)
        _drop_staging(admin, staging, tables)
        with builder.connect() as build:
            for attempt in range(1, REPLAY_SWAP_ATTEMPTS_MAX + 1):
                _build(builder, build, staging, progress)  # all, then what arrived meanwhile
                add_deferred_indexes(build, staging)  # once the tables are full (no-op after)
                try:
                    started = time.perf_counter()
                    replaced, position = _swap(admin, views_schema, staging, tables, builder, build)
                except psycopg.errors.LockNotAvailable:
                    time.sleep(REPLAY_SWAP_BACKOFF_SECONDS)
                    continue
                swap_ms = round((time.perf_counter() - started) * 1000)
                return ReplayResult(
                    names, position, replaced, builder.events_applied, attempt, swap_ms
                )
    raise ReplayError(
        f"the live views stayed locked through {REPLAY_SWAP_ATTEMPTS_MAX} attempts; the "
        f"rebuilt views are left in schema {staging!r} and the next replay starts over"
    )


def _connect(database_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        database_url, autocommit=True, connect_timeout=10, application_name="ledger-replay"
    )


def _hold_replay_lock(conn: psycopg.Connection[Any], views_schema: str) -> None:
    """One replay per views schema: a session lock, released when the connection closes."""
    row = conn.execute(
        "SELECT pg_try_advisory_lock(hashtext(%s))", (f"ledger-replay:{views_schema}",)
    ).fetchone()
    if row is None or not row[0]:
        raise ReplayError(f"another replay of the views in {views_schema!r} is running")


def _drop_staging(conn: psycopg.Connection[Any], staging: str, tables: tuple[str, ...]) -> None:
    """Drop what an interrupted replay left, but never a schema holding anything else."""
    found = {
        row[0]
        for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (staging,),
        )
    }
    if not found <= set(tables):
        raise ReplayError(
            f"schema {staging!r} holds tables that are not views ({', '.join(sorted(found))}):"
            " a replay builds there, so move them away first"
        )
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(staging)))


def _build(
    builder: Projector, conn: psycopg.Connection[Any], staging: str, progress: Progress | None
) -> None:
    """Apply pages to the staging views until they reach the store's last event."""
    while builder.project_page(conn) > 0:
        if progress is not None:
            progress(view_position(conn, staging), builder.store_position(conn))
    if progress is not None:
        position = view_position(conn, staging)
        progress(position, max(position, builder.store_position(conn)))


def _lock(conn: psycopg.Connection[Any], schema: str, tables: tuple[str, ...]) -> None:
    names = sql.SQL(", ").join(sql.Identifier(schema, table) for table in tables)
    conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(names))


def _swap(
    conn: psycopg.Connection[Any],
    views_schema: str,
    staging: str,
    tables: tuple[str, ...],
    builder: Projector,
    build: psycopg.Connection[Any],
) -> tuple[int, int]:
    """The swap transaction; returns (position replaced, position swapped in)."""
    assert tables[0] == "view_tracking", "the tracking table is locked first"
    with conn.transaction():
        conn.execute(
            "SELECT set_config('lock_timeout', %s, true)", (f"{REPLAY_SWAP_LOCK_TIMEOUT_MS}ms",)
        )
        # The lock ensure_views takes: no API or projector is creating tables meanwhile.
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ledger-views:{views_schema}",)
        )
        _lock(conn, views_schema, tables[:1])
        replaced = view_position(conn, views_schema)
        while view_position(conn, staging) < replaced:
            if builder.project_page(build) == 0:
                raise ReplayError(
                    f"the live views are at sequence {replaced}, past the store's last event"
                )
        _lock(conn, views_schema, tables[1:])
        for table in tables:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(views_schema, table)))
        for table in tables:
            conn.execute(
                sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                    sql.Identifier(staging, table), sql.Identifier(views_schema)
                )
            )
        conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(staging)))
        return replaced, view_position(conn, views_schema)
