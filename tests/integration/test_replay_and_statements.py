"""Audit and replay on the read side, on real PostgreSQL (and real HTTP for the API):
`ledger audit verify` against the views, `ledger replay`, `ledger balance --as-of` and
`ledger statement`."""

from __future__ import annotations

import csv
import io
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from rich.console import Console
from typer.testing import CliRunner, Result

from ledger.application import Ledger
from ledger.audit import AuditReport, verify
from ledger.cli import app
from ledger.money import parse_minor
from ledger.settings import Settings
from projections import audit_cli
from projections.reconcile import compare_views
from projections.replay import replay
from projections.security import allow_ip, allowed_ips, list_tokens
from projections.statements import AuditReads, Point, PointInTime, Statement, parse_point
from projections.views import EPOCH
from tests.builders import Desk
from tests.integration.read_side import (
    ApiServer,
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

AGENTS = ("MB", "MO", "MC1", "MC2", "MS")
TRANSFER_PLAYERS = tuple(range(1001, 1009))  # MC1's and MC2's; 1009-1012 are MS's (seamless)
EXPONENT = 2  # EUR


def _fill(ledger: Ledger, seed: int, rounds: int) -> None:
    for batch in mixed_workload(seed, rounds):
        ledger.handle_batch(batch)


def _cli(settings: Settings, *args: str) -> Result:
    env = {
        "DATABASE_URL": settings.database_url,
        "DATABASE_SCHEMA": settings.database_schema,
        "VIEWS_SCHEMA": settings.views_schema,
        "PROJECTION_PAGE_EVENTS": str(settings.projection_page_events),
        "COLUMNS": "200",
    }
    return CliRunner().invoke(app, list(args), env=env)


def _minor(text: str) -> int:
    """A signed decimal amount of the API (`-12.50`) in minor units, without floats."""
    magnitude = parse_minor(text.removeprefix("-"), EXPONENT)
    return -magnitude if text.startswith("-") else magnitude


def _iso(created_at_ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=created_at_ms)).isoformat()


def _audit(ledger: Ledger) -> AuditReport:
    return verify(ledger.recorder, ledger.mapper.transcoder)


@pytest.fixture
def fresh(database_url: str, pg_schema: str) -> Iterator[tuple[Settings, Ledger]]:
    """An empty store of this test's own, and its settings (views in the same schema)."""
    settings = settings_for(database_url, pg_schema)
    ledger = new_ledger(settings)
    yield settings, ledger
    ledger.close()
    drop_schemas(database_url, f"{pg_schema}_next", f"{pg_schema}_rebuilt")


# ------------------------------------------------------------------ audit verify and the views


def test_audit_verify_finds_clean_views_equal_and_names_every_edited_view_row(
    fresh: tuple[Settings, Ledger],
) -> None:
    settings, ledger = fresh
    _fill(ledger, seed=31, rounds=200)
    projector(settings, ledger).catch_up()
    clean = _cli(settings, "audit", "verify")
    assert clean.exit_code == 0, clean.output
    assert "5 agents and 12 players compared with the events; findings: 0" in clean.output
    schema = sql.Identifier(settings.views_schema_name)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {}.view_agents SET points_minor = points_minor + 1 WHERE code = 'MC2'"
            ).format(schema)
        )
        conn.execute(
            sql.SQL(
                "UPDATE {}.view_users SET balance_minor = balance_minor - 7 WHERE user_code = 1003"
            ).format(schema)
        )
        conn.execute(sql.SQL("DELETE FROM {}.view_agents WHERE code = 'MO'").format(schema))
    edited = _cli(settings, "audit", "verify")
    assert edited.exit_code == 1, edited.output
    assert "4 agents and 12 players compared with the events; findings: 3" in edited.output
    book = ledger.book("MC2")
    assert book is not None
    assert (
        f"view_agents MC2: points is {book.points_minor + 1} but the events give agent:MC2 "
        f"{book.points_minor}" in edited.output
    )
    assert "view_users 1003: balance is " in edited.output
    assert "view_agents MO: has no row, but the events give agent:MO " in edited.output
    # The events themselves are fine: the store's part of the report has no finding.
    assert _audit(ledger).findings == []


def test_views_behind_the_audit_are_not_compared_and_views_ahead_skip_what_moved_since(
    fresh: tuple[Settings, Ledger], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, ledger = fresh
    _fill(ledger, seed=37, rounds=100)
    projector(settings, ledger).catch_up()
    earlier = _audit(ledger)
    desk = Desk(ledger)
    assert desk.transfer("MO", "MC1", "5").ok and desk.deposit("MC1", 1001, "2").ok
    later = _audit(ledger)
    assert later.last_sequence > earlier.last_sequence
    behind = compare_views(
        settings.database_url,
        settings.views_schema_name,
        ledger,
        later.balances,
        later.last_sequence,
    )
    assert (behind.behind, behind.agents, behind.findings) == (
        later.last_sequence - earlier.last_sequence,
        0,
        [],
    )
    monkeypatch.setattr(audit_cli, "AUDIT_VIEWS_WAIT_SECONDS", 0.0)
    printed = io.StringIO()
    assert audit_cli.check_views(later, settings, Console(file=printed, width=200)) == []
    assert f"views behind by {behind.behind} events, not compared" in printed.getvalue()
    projector(settings, ledger).catch_up()
    ahead = compare_views(
        settings.database_url,
        settings.views_schema_name,
        ledger,
        earlier.balances,
        earlier.last_sequence,
    )
    # MO and MC1's points, MC1's house is untouched, player 1001's balance: 3 skipped.
    assert (ahead.behind, ahead.skipped, ahead.findings) == (0, 3, [])
    assert (ahead.agents, ahead.users) == (5, 12)


def _delete_tail(settings: Settings, transactions: int) -> list[str]:
    """Delete the store's last `transactions` whole transactions, seals included (the
    store's own chains stay intact); the topics of the rows deleted."""
    store = sql.Identifier(settings.database_schema, "ledger_events")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        seals = [
            n
            for (n,) in conn.execute(
                sql.SQL(
                    "SELECT notification_id FROM {} WHERE topic = 'ledger.chain:BatchSealed'"
                    " ORDER BY notification_id DESC LIMIT %s"
                ).format(store),
                (transactions + 1,),
            )
        ]
        deleted = conn.execute(
            sql.SQL("DELETE FROM {} WHERE notification_id > %s RETURNING topic").format(store),
            (seals[-1],),
        ).fetchall()
    return [topic for (topic,) in deleted]


@pytest.mark.parametrize("last", ["deposit", "create user"])
def test_a_deleted_tail_of_whole_transactions_is_found_by_the_views(
    fresh: tuple[Settings, Ledger], last: str
) -> None:
    """Deleting the newest transactions whole leaves the store's chains intact; the
    views, built from those events, still name them: `audit verify` exits 1."""
    settings, ledger = fresh
    _fill(ledger, seed=41, rounds=60)
    desk = Desk(ledger)
    done = (
        desk.deposit("MC1", 1001, "3")
        if last == "deposit"
        else desk.create_user("MC2", "late_player")
    )
    assert done.ok and done.sequence is not None
    projector(settings, ledger).catch_up()
    anchor = ledger.anchor()
    assert anchor is not None
    assert _cli(settings, "audit", "verify").exit_code == 0
    assert _cli(settings, "audit", "verify", "--no-views", "--anchor", anchor).exit_code == 0
    deleted = _delete_tail(settings, transactions=1)
    assert "ledger.domain:RequestHandled" in deleted and "ledger.chain:BatchSealed" in deleted
    assert _audit(ledger).findings == []  # the store alone cannot tell
    found = _cli(settings, "audit", "verify")
    assert found.exit_code == 1, found.output
    assert f"sequence {done.sequence}: names an event the store does not hold" in found.output
    assert "view_tracking position: is sequence" in found.output
    # The anchor the ledger logged shows it from the store alone.
    anchored = _cli(settings, "audit", "verify", "--no-views", "--anchor", anchor)
    assert anchored.exit_code == 1, anchored.output
    writer, version, _ = anchor.split(":")
    assert f"stream {writer}: the anchor's seal {version} is not in the store" in anchored.output


# ------------------------------------------------------------------ replay


HAMMERED = (
    "/v1/agents/MC1",
    "/v1/agents/MO/children",
    "/v1/users/1001",
    "/v1/users/1001/transactions?limit=50",
    "/v1/agents/MC1/transactions?limit=50",
    "/v1/balances/player:1001",
    "/v1/balances/agent:MC1?asOf=700",
    "/v1/agents/MC1/ggr",
    "/health",
)


@dataclass
class Hammer:
    """Threads reading the API in a loop; every answer is compared with the first one."""

    server: ApiServer
    token: str
    expected: dict[str, Any]
    threads_n: int = 4

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.answers: list[tuple[float, str, int, bool]] = []  # (time, path, status, same)
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._run, args=(n,)) for n in range(self.threads_n)
        ]

    def __enter__(self) -> Hammer:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _run(self, n: int) -> None:
        with self.server.client(self.token) as client:
            step = n
            while not self.stop.is_set():
                path = HAMMERED[step % len(HAMMERED)]
                step += 1
                try:
                    response = client.get(path)
                except httpx.HTTPError as error:
                    self.errors.append(f"{path}: {error!r}")
                    continue
                same = (
                    response.status_code == 200 and response.json()["data"] == self.expected[path]
                )
                self.answers.append((time.monotonic(), path, response.status_code, same))


def _oid(settings: Settings, table: str) -> int:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        row = conn.execute("SELECT %s::regclass::oid", (f'"{settings.views_schema_name}".{table}',))
        return int(row.fetchone()[0])  # type: ignore[index]


def _indexes(settings: Settings) -> list[tuple[str, str]]:
    """Every index of the views schema: (name, definition)."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1",
            (settings.views_schema_name,),
        ).fetchall()
    return [(name, definition) for name, definition in rows]


def test_replay_swaps_in_identical_views_while_the_api_answers_every_read(
    fresh: tuple[Settings, Ledger],
) -> None:
    base, ledger = fresh
    settings = settings_for(base.database_url, base.database_schema, projection_page_events=97)
    _fill(ledger, seed=41, rounds=1500)
    projector(settings, ledger).catch_up()
    token, _ = token_for(settings, "MB")
    vs = settings.views_schema_name
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        allow_ip(conn, vs, "MB", "127.0.0.0/8")
        configuration = (list_tokens(conn, vs, None), allowed_ips(conn, vs, "MB"))
    before = dump_views(settings.database_url, vs)
    oids = {table: _oid(settings, table) for table in ("view_tracking", "view_agents")}
    indexes = _indexes(settings)  # a replay builds some of them after its pages
    assert len(indexes) >= 10, indexes
    server = ApiServer(settings)
    try:
        with server.client(token) as client:
            expected = {path: client.get(path).json()["data"] for path in HAMMERED}
        with Hammer(server, token, expected) as hammer:
            time.sleep(0.3)
            started = time.monotonic()
            results = [replay(settings.database_url, ledger, vs, 97, "all") for _ in range(3)]
            finished = time.monotonic()
            time.sleep(0.3)
    finally:
        server.stop()
    assert hammer.errors == []
    assert {status for _, _, status, _ in hammer.answers} == {200}
    assert all(same for *_, same in hammer.answers), "an answer differed from the live views'"
    during = [t for t, *_ in hammer.answers if started <= t <= finished]
    after = [t for t, *_ in hammer.answers if t > finished]
    assert len(during) > 100 and after, (len(during), len(after))
    position = store_position(ledger)
    for result in results:
        assert (result.projections, result.position, result.replaced_position) == (
            ("ledger",),
            position,
            position,
        )
        assert result.events_applied > 1000 and result.swap_attempts == 1
    assert dump_views(settings.database_url, vs) == before
    assert all(_oid(settings, table) != oid for table, oid in oids.items()), "tables were swapped"
    assert _indexes(settings) == indexes
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        assert (list_tokens(conn, vs, None), allowed_ips(conn, vs, "MB")) == configuration
        staging = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (f"{vs}_next",)
        ).fetchone()
    assert staging == (0,)


def test_replay_while_the_ledger_writes_and_the_projector_follows_ends_like_a_rebuild(
    fresh: tuple[Settings, Ledger],
) -> None:
    base, ledger = fresh
    settings = settings_for(base.database_url, base.database_schema, projection_page_events=50)
    _fill(ledger, seed=43, rounds=800)
    live = projector(settings, ledger)
    live.catch_up()
    stop = threading.Event()
    following = threading.Thread(target=live.run_forever, args=(stop,))
    following.start()
    writer_ledger = new_ledger(settings)
    written = {"n": 0, "refused": 0}

    def write() -> None:
        desk = Desk(writer_ledger)
        while not stop.is_set():
            written["refused"] += not desk.deposit("MC1", 1001 + written["n"] % 4, "0.01").ok
            written["n"] += 1

    writing = threading.Thread(target=write)
    writing.start()
    try:
        result = replay(settings.database_url, ledger, settings.views_schema_name, 50, "ledger")
        writes_at_swap = written["n"]
        time.sleep(0.3)  # the live projector follows the swapped-in views
    finally:
        stop.set()
        writing.join(timeout=30)
        writer_ledger.close()
    following.join(timeout=30)
    assert projector(settings, ledger).catch_up() == store_position(ledger)
    assert writes_at_swap > 0 and written["n"] > writes_at_swap and written["refused"] == 0
    assert result.position >= result.replaced_position > 0
    other = settings_for(
        settings.database_url,
        settings.database_schema,
        views_schema=f"{settings.database_schema}_rebuilt",
    )
    projector(other, ledger).catch_up()
    assert dump_views(settings.database_url, settings.views_schema_name) == dump_views(
        settings.database_url, other.views_schema_name
    )


def test_the_replay_command_rebuilds_a_named_projection_and_refuses_unknown_names(
    fresh: tuple[Settings, Ledger],
) -> None:
    settings, ledger = fresh
    _fill(ledger, seed=47, rounds=50)
    projector(settings, ledger).catch_up()
    before = dump_views(settings.database_url, settings.views_schema_name)
    unknown = _cli(settings, "replay", "--projection", "balances")
    assert unknown.exit_code == 1
    assert "no projection 'balances': the projections are ledger, all" in unknown.output
    done = _cli(settings, "replay", "--projection", "ledger")
    assert done.exit_code == 0, done.output
    position = store_position(ledger)
    assert f"views at sequence {position} swapped in for views at {position}" in done.stdout
    assert dump_views(settings.database_url, settings.views_schema_name) == before


# ------------------------------------------------------------------ balances and statements


@dataclass
class World:
    """A store, its caught-up views, the API, and every account's history as served."""

    settings: Settings
    ledger: Ledger
    reads: AuditReads
    histories: dict[str, list[dict[str, Any]]]
    position: int


@pytest.fixture(scope="module")
def world(database_url: str) -> Iterator[World]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    settings = settings_for(database_url, schema)
    ledger = new_ledger(settings)
    _fill(ledger, seed=53, rounds=400)
    projector(settings, ledger).catch_up()
    token, _ = token_for(settings, "MB")
    server = ApiServer(settings)
    histories: dict[str, list[dict[str, Any]]] = {}
    try:
        with server.client(token) as client:
            paths = {f"agent:{code}": f"/v1/agents/{code}/transactions" for code in AGENTS}
            paths |= {
                f"player:{user}": f"/v1/users/{user}/transactions" for user in range(1001, 1013)
            }
            for account, path in paths.items():
                histories[account] = _history(client, path)
    finally:
        server.stop()
    reads = audit_cli._reads(settings, ledger)  # wired as the commands wire it
    yield World(settings, ledger, reads, histories, store_position(ledger))
    ledger.close()
    drop_schemas(database_url, schema)


def _history(client: httpx.Client, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(100):
        params = {"limit": 2000, **({"cursor": cursor} if cursor else {})}
        data = client.get(path, params=params).json()["data"]
        items.extend(data["items"])
        cursor = data.get("nextCursor")
        if cursor is None:
            return items
    raise AssertionError("history longer than expected")


def _expected(items: list[dict[str, Any]], point: Point) -> int:
    """The balanceAfter of the last history item at or before the point (0 before any)."""
    at = [
        item
        for item in items
        if (point.sequence is not None and item["sequence"] <= point.sequence)
        or (point.time_ms is not None and item["createdAtMs"] <= point.time_ms)
    ]
    return _minor(at[-1]["balanceAfter"]) if at else 0


def _balance(world: World, account: str, point: Point | None) -> PointInTime:
    with world.reads.snapshot(world.settings.database_url) as (conn, position):
        return world.reads.balance_at(conn, world.reads.account(conn, account), point, position)


def test_point_in_time_balances_agree_with_the_history_balance_after_at_random_points(
    world: World,
) -> None:
    rng = random.Random(59)
    accounts = [f"agent:{code}" for code in AGENTS] + [f"player:{u}" for u in TRANSFER_PLAYERS]
    times = sorted({item["createdAtMs"] for items in world.histories.values() for item in items})
    sequences = [Point(sequence=s) for s in rng.sample(range(world.position + 2), 150)]
    moments = [Point(time_ms=rng.choice(times) + rng.choice((-1, 0, 1))) for _ in range(60)]
    checked = 0
    with world.reads.snapshot(world.settings.database_url) as (conn, position):
        assert position == world.position
        for account_name in accounts:
            account = world.reads.account(conn, account_name)
            for point in sequences + moments:
                found = world.reads.balance_at(conn, account, point, position)
                assert found.balance_minor == _expected(world.histories[account_name], point), (
                    account_name,
                    point,
                )
                checked += 1
        seamless = world.reads.account(conn, "player:1010")
        assert world.reads.balance_at(conn, seamless, None, position).balance_minor is None
    assert checked == len(accounts) * 210
    # The command prints the same, for a sequence or an ISO time (with Z, an offset or none).
    for n in range(24):
        account_name = rng.choice(accounts)
        if n % 2:
            point, text = sequences[n], str(sequences[n].sequence)
        else:
            point = moments[n]
            assert point.time_ms is not None
            text = _iso(point.time_ms)
            text = (text.replace("+00:00", "Z"), text, text.removesuffix("+00:00"))[n % 3]
        assert parse_point(text) == point
        shown = _cli(world.settings, "balance", account_name, "--as-of", text, "--json")
        assert shown.exit_code == 0, shown.output
        body = json.loads(shown.stdout)
        assert _minor(body["balance"]) == _expected(world.histories[account_name], point)
        assert body["account"] == account_name and body["currency"] == "EUR"
    human = _cli(world.settings, "balance", "player:1001")
    latest = world.histories["player:1001"][-1]
    assert human.stdout.startswith(f"player:1001 {latest['balanceAfter']} EUR (set by sequence ")


def _random_range(rng: random.Random, world: World) -> tuple[str | None, str | None]:
    low, high = sorted(rng.sample(range(1, world.position + 2), 2))
    kind = rng.choice(("sequence", "time", "open"))
    if kind == "sequence":
        return str(low), str(high)
    if kind == "open":
        return rng.choice(((None, str(high)), (str(low), None), (None, None)))
    times = sorted({i["createdAtMs"] for items in world.histories.values() for i in items})
    first, last = sorted(rng.sample(times, 2))
    return _iso(first), _iso(last + rng.choice((0, 1)))


def test_statements_over_random_ranges_reconcile_and_close_at_the_point_in_time_balance(
    world: World,
) -> None:
    rng = random.Random(61)
    owners = [f"agent:{code}" for code in AGENTS] + [f"player:{u}" for u in TRANSFER_PLAYERS]
    for n in range(60):
        owner = rng.choice(owners)
        start, end = _random_range(rng, world)
        points = (parse_point(start) if start else None, parse_point(end) if end else None)
        with world.reads.snapshot(world.settings.database_url) as (conn, position):
            account = world.reads.account(conn, owner)
            found: Statement = world.reads.statement(conn, account, *points, position)
        assert found.reconciled is True, (owner, start, end)
        assert found.opening.balance_minor is not None and found.closing.balance_minor is not None
        change = sum(
            (r.balance_after_minor or 0) - (r.balance_before_minor or 0) for r in found.entries
        )
        assert found.opening.balance_minor + change == found.closing.balance_minor
        at_end = _balance(world, owner, points[1].just_before() if points[1] else None)
        assert found.closing == at_end
        assert found.closing.balance_minor == _expected(
            world.histories[owner], points[1].just_before() if points[1] else Point(world.position)
        )
        # The entries are exactly the history items in the range, in order.
        assert [r.sequence for r in found.entries] == [
            item["sequence"] for item in world.histories[owner] if _inside(item, *points)
        ]
        totals = found.totals()
        assert sum(t.count for t in totals) == len(found.entries)
        assert sum(t.change_minor or 0 for t in totals) == change
        if n % 6 == 0:  # the command's JSON says the same
            args = ["statement", "--agent", owner.partition(":")[2], "--format", "json"]
            if owner.startswith("player:"):
                args[2:3] = ["MB", "--user", owner.partition(":")[2]]
            args += [*(["--from", start] if start else []), *(["--to", end] if end else [])]
            shown = _cli(world.settings, *args)
            assert shown.exit_code == 0, shown.output
            body = json.loads(shown.stdout)
            assert body["reconciled"] is True and body["account"] == owner
            assert _minor(body["opening"]["balance"]) + _minor(body["entriesChange"]) == _minor(
                body["closing"]["balance"]
            )
            assert _minor(body["closing"]["balance"]) == at_end.balance_minor
            assert [e["sequence"] for e in body["entries"]] == [r.sequence for r in found.entries]


def _inside(item: dict[str, Any], start: Point | None, end: Point | None) -> bool:
    for point, inside in ((start, True), (end, False)):
        if point is None:
            continue
        value = item["sequence"] if point.sequence is not None else item["createdAtMs"]
        bound = point.sequence if point.sequence is not None else point.time_ms
        assert bound is not None
        if (value >= bound) != inside:
            return False
    return True


def test_statement_formats_agree_and_a_player_must_be_under_the_agent(world: World) -> None:
    high = world.position // 2
    args = ("statement", "--agent", "MC1", "--from", "10", "--to", str(high))
    table, as_csv, as_json = (
        _cli(world.settings, *args, "--format", f) for f in ("table", "csv", "json")
    )
    assert (table.exit_code, as_csv.exit_code, as_json.exit_code) == (0, 0, 0), table.output
    body = json.loads(as_json.stdout)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [row["record"] for row in rows] == (
        ["opening"]
        + ["entry"] * len(body["entries"])
        + ["total"] * len(body["totals"])
        + ["closing"]
    )
    assert rows[0]["balanceAfter"] == body["opening"]["balance"]
    assert rows[-1]["balanceAfter"] == body["closing"]["balance"]
    assert [row["change"] for row in rows if row["record"] == "total"] == [
        total["change"] for total in body["totals"]
    ]
    assert "opening + entries == closing: yes" in table.stdout
    assert body["closing"]["balance"] in table.stdout
    under_broker = _cli(
        world.settings, "statement", "--agent", "MO", "--user", "1001", "--format", "json"
    )
    assert under_broker.exit_code == 0 and json.loads(under_broker.stdout)["reconciled"] is True
    elsewhere = _cli(world.settings, "statement", "--agent", "MC2", "--user", "1001")
    assert elsewhere.exit_code == 1 and "no player 1001 under agent MC2" in elsewhere.output
    backwards = _cli(world.settings, "statement", "--agent", "MC1", "--from", "50", "--to", "10")
    mixed = _cli(world.settings, "statement", "--agent", "MC1", "--from", "5", "--to", "2030-01-01")
    assert (backwards.exit_code, mixed.exit_code) == (2, 2)
    assert "--from is after --to" in backwards.output
    assert "both be sequences or both be times" in mixed.output
    seamless = _cli(
        world.settings, "statement", "--agent", "MS", "--user", "1010", "--format", "json"
    )
    assert seamless.exit_code == 0
    assert "reconciled" not in json.loads(seamless.stdout)


def test_a_statement_whose_history_disagrees_with_the_events_exits_1(
    fresh: tuple[Settings, Ledger],
) -> None:
    settings, ledger = fresh
    _fill(ledger, seed=67, rounds=60)
    projector(settings, ledger).catch_up()
    assert _cli(settings, "statement", "--agent", "MC1", "--user", "1002").exit_code == 0
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {}.view_transactions SET balance_after_minor = balance_after_minor + 1"
                " WHERE owner = 'player:1002' AND sequence ="
                " (SELECT max(sequence) FROM {}.view_transactions WHERE owner = 'player:1002')"
            ).format(
                sql.Identifier(settings.views_schema_name),
                sql.Identifier(settings.views_schema_name),
            )
        )
    tampered = _cli(settings, "statement", "--agent", "MC1", "--user", "1002")
    assert tampered.exit_code == 1
    assert "the history and the events disagree" in tampered.output
