"""The projector on real PostgreSQL, fed by real events of the ledger core."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger.application import Ledger
from ledger.settings import Settings
from projections import views
from projections.views import Projector, view_position
from tests.builders import Desk
from tests.integration.read_side import (
    drop_schemas,
    dump_views,
    mixed_workload,
    new_ledger,
    projector,
    settings_for,
    store_position,
    token_for,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROJECTOR_SECONDS_MAX = 60.0


@pytest.fixture
def settings(database_url: str, pg_schema: str) -> Iterator[Settings]:
    yield settings_for(database_url, pg_schema)
    drop_schemas(database_url, f"{pg_schema}_rebuilt", f"{pg_schema}_second")


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    made = new_ledger(settings)
    yield made
    made.close()


def _fill(ledger: Ledger, seed: int, rounds: int) -> int:
    """Run the mixed workload; returns how many commands were accepted."""
    accepted = 0
    for batch in mixed_workload(seed, rounds):
        accepted += sum(result.ok for result in ledger.handle_batch(batch))
    return accepted


def _rebuilt(settings: Settings, ledger: Ledger) -> dict[str, list[Any]]:
    """The views built from notification 1 in a schema of their own."""
    other = settings_for(
        settings.database_url,
        settings.database_schema,
        views_schema=f"{settings.database_schema}_rebuilt",
    )
    projector(other, ledger).catch_up()
    return dump_views(settings.database_url, other.views_schema_name)


def test_views_hold_what_the_ledger_holds(settings: Settings, ledger: Ledger) -> None:
    _fill(ledger, seed=3, rounds=600)
    position = projector(settings, ledger).catch_up()
    assert position == store_position(ledger)
    dumped = dump_views(settings.database_url, settings.views_schema_name)
    agents = {row[0]: row for row in dumped["view_agents"]}
    assert set(agents) == {"MB", "MO", "MC1", "MC2", "MS"}
    for code, row in agents.items():
        book = ledger.book(code)
        assert book is not None
        assert (row[7], row[8], row[9]) == (book.points_minor, book.house_minor, len(book.players))
        assert row[3] == {"MB": ["MB"], "MO": ["MB", "MO"]}.get(code, ["MB", "MO", code])
        # Daily GGR adds up to the house account: bets - wins - refunds.
        ggr = sum(
            int(b) - int(w) - int(r) for a, _, b, w, r in dumped["view_ggr_daily"] if a == code
        )
        assert ggr == book.house_minor
        for user_code, (name, balance_minor, _) in book.players.items():
            user = next(u for u in dumped["view_users"] if u[0] == int(user_code))
            assert user[1:3] == (code, name)
            assert user[3] == (balance_minor if book.mode == "transfer" else None)
    # Each history row's balance after is the next row's balance before, per owner.
    last: dict[str, Any] = {}
    for owner, _, *_rest, before, after, _ in dumped["view_transactions"]:
        if owner in last:
            assert before == last[owner], owner
        last[owner] = after


def test_every_history_row_follows_from_its_event(settings: Settings, ledger: Ledger) -> None:
    desk = Desk(ledger)
    casino, user = desk.casino()
    bet = desk.bet(casino, user, "b1", "r1", "2.50")
    refund_first = desk.refund(casino, user, "b2")
    late_bet = desk.bet(casino, user, "b2", "r2", "1.00")
    bonus = desk.win(casino, user, "w1", None, "0.75", kind="jackpot")
    refund = desk.refund(casino, user, "b1")
    assert bet.ok and bonus.ok and refund.ok
    assert not refund_first.ok and not late_bet.ok
    projector(settings, ledger).catch_up()
    rows = dump_views(settings.database_url, settings.views_schema_name)["view_transactions"]
    player = [row for row in rows if row[0] == f"player:{user}"]
    kinds = [(row[3], row[4], row[5], row[6], row[8], row[9], row[10]) for row in player]
    assert kinds == [
        ("deposit", 4, None, None, 10000, 0, 10000),
        ("bet", 1, "b1", "r1", 250, 10000, 9750),
        ("win", 32, "w1", None, 75, 9750, 9825),
        ("refund", 16, "b1", "r1", 250, 9825, 10075),
    ]
    by_sequence = {row[1]: row for row in player}
    for result in (bet, bonus, refund):
        assert result.sequence is not None
        assert str(by_sequence[result.sequence][2]) == result.event_id


def test_a_page_that_fails_before_its_commit_changes_nothing(
    settings: Settings, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(ledger, seed=5, rounds=100)
    calls = {"n": 0}
    original_copy = views._copy

    def copy_then_fail(conn: Any, schema: str, table: str, rows: list[Any]) -> None:
        original_copy(conn, schema, table, rows)
        calls["n"] += 1
        if table == "view_balance_changes":
            raise RuntimeError("the process died after writing part of the page")

    monkeypatch.setattr(views, "_copy", copy_then_fail)
    broken = projector(settings, ledger)
    with pytest.raises(RuntimeError):
        broken.catch_up()
    assert calls["n"] >= 2
    empty = dump_views(settings.database_url, settings.views_schema_name)
    assert empty["position"] == [(0,)]
    assert all(empty[table] == [] for table in views.VIEW_TABLES)
    monkeypatch.undo()
    projector(settings, ledger).catch_up()
    assert dump_views(settings.database_url, settings.views_schema_name) == _rebuilt(
        settings, ledger
    )


def test_the_projector_catches_up_after_downtime_page_by_page(
    settings: Settings, ledger: Ledger
) -> None:
    small = settings_for(settings.database_url, settings.database_schema, projection_page_events=37)
    _fill(ledger, seed=7, rounds=150)
    first = projector(small, ledger)
    assert first.catch_up() == store_position(ledger)
    assert Desk(ledger).transfer("MO", "MC1", "12.34").ok  # written while no projector runs
    _fill(ledger, seed=8, rounds=150)
    assert projector(small, ledger).catch_up() == store_position(ledger)
    assert dump_views(settings.database_url, settings.views_schema_name) == _rebuilt(
        settings, ledger
    )


def test_two_projectors_at_once_apply_every_event_exactly_once(
    settings: Settings, ledger: Ledger
) -> None:
    _fill(ledger, seed=11, rounds=800)
    small = settings_for(settings.database_url, settings.database_schema, projection_page_events=50)
    projectors = [projector(small, ledger), projector(small, ledger)]
    threads = [threading.Thread(target=p.catch_up) for p in projectors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=PROJECTOR_SECONDS_MAX)
    # Both worked (the row lock hands pages out one at a time), and together they
    # applied each event once.
    with psycopg.connect(settings.database_url) as conn:
        applied = conn.execute(
            sql.SQL("SELECT events_applied FROM {}.view_tracking").format(
                sql.Identifier(settings.views_schema_name)
            )
        ).fetchone()
    assert applied == (sum(p.events_applied for p in projectors),)
    assert all(p.events_applied > 0 for p in projectors)
    assert dump_views(settings.database_url, settings.views_schema_name) == _rebuilt(
        settings, ledger
    )


def test_a_projector_following_a_busy_store_spaces_its_large_pages_and_ends_equal(
    settings: Settings, ledger: Ledger
) -> None:
    """Pages of at least PAGE_PACED_EVENTS_MIN events, not full, are followed by the next
    page no sooner than PAGE_INTERVAL_SECONDS after their start (`views.PagePacer`)."""
    follower = projector(settings, ledger)
    pages: list[tuple[float, int, bool]] = []  # (started, events applied, full) of each move
    project_page = follower.project_page

    def recorded(conn: psycopg.Connection[Any]) -> int:
        started = time.monotonic()
        moved = project_page(conn)
        if moved:
            pages.append((started, follower.page_events_applied, follower.page_was_full))
        return moved

    follower.project_page = recorded  # type: ignore[method-assign]
    stop = threading.Event()
    thread = threading.Thread(target=follower.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        _fill(ledger, seed=5, rounds=600)
        deadline = time.monotonic() + PROJECTOR_SECONDS_MAX
        while _position(settings) < store_position(ledger) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=PROJECTOR_SECONDS_MAX)
    paced = [
        (page[0], after[0])
        for page, after in itertools.pairwise(pages)
        if page[1] >= views.PAGE_PACED_EVENTS_MIN and not page[2]
    ]
    assert paced, pages  # the store was busy enough to pace
    # Event.wait never returns before its timeout; a millisecond for the float sums.
    assert all(after - page >= views.PAGE_INTERVAL_SECONDS - 0.001 for page, after in paced)
    assert dump_views(settings.database_url, settings.views_schema_name) == _rebuilt(
        settings, ledger
    )


def _position(settings: Settings) -> int:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        try:
            return view_position(conn, settings.views_schema_name)
        except psycopg.errors.UndefinedTable:
            return 0


def _start_projector(settings: Settings, log: Path, page_events: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "DATABASE_SCHEMA": settings.database_schema,
        "VIEWS_SCHEMA": "",
        "PROJECTION_PAGE_EVENTS": str(page_events),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ledger.cli", "project"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_killing_the_projector_mid_stream_ends_like_a_rebuild_from_zero(
    settings: Settings, ledger: Ledger, tmp_path: Path
) -> None:
    _fill(ledger, seed=13, rounds=4000)
    target = store_position(ledger)
    log = tmp_path / "projector.log"
    kills = 0
    for fraction in (0.2, 0.45, 0.7):
        process = _start_projector(settings, log, page_events=40)
        deadline = time.monotonic() + PROJECTOR_SECONDS_MAX
        while _position(settings) < target * fraction:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the projector made no progress"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        kills += 1
        assert 0 < _position(settings) < target, "killed mid-stream, not after the end"
    process = _start_projector(settings, log, page_events=40)
    try:
        deadline = time.monotonic() + PROJECTOR_SECONDS_MAX
        while _position(settings) < target:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the restarted projector did not catch up"
            time.sleep(0.05)
        # It keeps following: a new write shows up without a restart.
        assert Desk(ledger).transfer("MO", "MC2", "1.00").ok
        while _position(settings) < store_position(ledger):
            assert time.monotonic() < deadline, "the projector did not follow a new write"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    assert kills == 3
    live = dump_views(settings.database_url, settings.views_schema_name)
    assert live == _rebuilt(settings, ledger)
    with psycopg.connect(settings.database_url) as conn:
        applied = conn.execute(
            sql.SQL("SELECT events_applied FROM {}.view_tracking").format(
                sql.Identifier(settings.views_schema_name)
            )
        ).fetchone()
        relevant = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.ledger_events WHERE NOT topic = ANY(%s)").format(
                sql.Identifier(settings.database_schema)
            ),
            (views.IGNORED_TOPICS,),
        ).fetchone()
    assert applied == relevant, "every event applied once, none twice"


def test_rebuild_from_zero_gives_the_same_views_and_keeps_the_tokens(
    settings: Settings, ledger: Ledger
) -> None:
    _fill(ledger, seed=17, rounds=300)
    live = projector(settings, ledger)
    live.catch_up()
    before = dump_views(settings.database_url, settings.views_schema_name)
    _, token_id = token_for(settings, "MB")
    live.rebuild()
    assert dump_views(settings.database_url, settings.views_schema_name)["position"] == [(0,)]
    live.catch_up()
    assert dump_views(settings.database_url, settings.views_schema_name) == before
    with psycopg.connect(settings.database_url) as conn:
        kept = conn.execute(
            sql.SQL("SELECT token_id FROM {}.api_tokens").format(
                sql.Identifier(settings.views_schema_name)
            )
        ).fetchall()
    assert kept == [(token_id,)]


def test_views_of_another_store_are_refused(settings: Settings, ledger: Ledger) -> None:
    Desk(ledger).create_agent("ZZ")
    projector(settings, ledger).catch_up()
    second_schema = f"{settings.database_schema}_second"
    other_store = settings_for(
        settings.database_url, second_schema, views_schema=settings.database_schema
    )
    other = new_ledger(other_store)
    try:
        with pytest.raises(views.ProjectionError):
            Projector(settings.database_url, other, settings.database_schema, 100).catch_up()
    finally:
        other.close()
