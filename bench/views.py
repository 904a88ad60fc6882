"""The read side, when this checkout has one (projections/ is built beside the core).

Every function answers None when the projector cannot be imported, and the benchmark
then reports "projections: not available".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from ledger.application import Ledger

__all__ = ["available", "position_reader", "rebuilder"]


def _projections() -> Any | None:
    try:
        from projections import views
    except ImportError:
        return None
    has_api = hasattr(views, "Projector") and hasattr(views, "view_position")
    return views if has_api else None


def available() -> bool:
    return _projections() is not None


def position_reader(database_url: str, views_schema: str) -> Callable[[], int] | None:
    """A function answering the views' position (last notification id applied)."""
    views = _projections()
    if views is None:
        return None

    def position() -> int:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
            try:
                return int(views.view_position(conn, views_schema))
            except psycopg.errors.UndefinedTable:
                return 0  # the projector has not created its tables yet

    return position


def rebuilder(database_url: str, page_events: int) -> Callable[[Ledger, str], int] | None:
    """A function that does what `ledger replay` does in a fresh views schema: rebuild
    every view from notification 1 beside the (empty) live ones and swap them in; it
    answers the position of the views swapped in."""
    try:
        from projections import replay
    except ImportError:
        return None

    def rebuild(ledger: Ledger, views_schema: str) -> int:
        return int(replay.replay(database_url, ledger, views_schema, page_events).position)

    return rebuild
