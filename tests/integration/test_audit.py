"""`audit verify` finds every single edit of a stored event, and names where it is."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import psycopg
import pytest

from ledger.application import Ledger
from ledger.audit import AuditReport, verify
from ledger.settings import store_env
from tests.bench.workload import casino_play, casino_world

EDITS = 200
KINDS = ("amount", "delete", "insert", "swap", "hash")


@pytest.fixture
def sealed_store(database_url: str, pg_schema: str) -> Iterator[str]:
    """A store written by the ledger: a casino world, play, refunds, and a few repeats."""
    ledger = Ledger(store_env(database_url, pg_schema))
    world = casino_world(casinos=3, players_per_casino=4)
    play = casino_play(world, 240, transfers=True)
    commands = [*world.setup, *play, *random.Random(1).sample(play, 10)]
    for start in range(0, len(commands), 13):
        ledger.handle_batch(commands[start : start + 13])
    ledger.close()
    yield pg_schema


def audit(database_url: str, schema: str) -> AuditReport:
    ledger = Ledger(store_env(database_url, schema))
    try:
        return verify(ledger.recorder, ledger.mapper.transcoder)
    finally:
        ledger.close()


def rows(conn: psycopg.Connection, schema: str) -> list[tuple[int, str, dict]]:
    return [
        (n, topic, json.loads(bytes(state)))
        for n, topic, state in conn.execute(
            f'SELECT notification_id, topic, state FROM "{schema}".ledger_events '
            "ORDER BY notification_id"
        )
    ]


def test_the_store_the_ledger_writes_verifies_clean(database_url: str, sealed_store: str) -> None:
    report = audit(database_url, sealed_store)
    assert report.findings == []
    assert report.events > 500 and report.seals > 20
    assert set(report.totals_by_currency.values()) == {0}


def test_every_one_of_200_random_single_edits_is_found_at_the_right_event(
    database_url: str, sealed_store: str
) -> None:
    rng = random.Random(2024)
    with psycopg.connect(database_url, autocommit=True) as conn:
        original = rows(conn, sealed_store)
    seals = [n for n, topic, _ in original if topic.endswith("BatchSealed")]
    postings = [n for n, _, state in original if state.get("postings")]
    ids = [n for n, _, _ in original]

    def window(n: int) -> tuple[int, int]:
        """The transaction an event belongs to: from after the previous seal to its seal."""
        end = next(s for s in seals if s >= n)
        start = max([s for s in seals if s < n], default=0) + 1
        return start, end

    found = {kind: 0 for kind in KINDS}
    for edit in range(EDITS):
        kind = KINDS[edit % len(KINDS)]
        schema = f"{sealed_store}_x{edit}"
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
            conn.execute(
                f'CREATE TABLE "{schema}".ledger_events '
                f'(LIKE "{sealed_store}".ledger_events INCLUDING ALL)'
            )
            conn.execute(
                f'INSERT INTO "{schema}".ledger_events SELECT * FROM "{sealed_store}".ledger_events'
            )
            table = f'"{schema}".ledger_events'
            if kind == "amount":
                target = rng.choice(postings)
                state = next(s for n, _, s in original if n == target)
                state["postings"][0][2] += rng.choice((-1, 1, 100))
                conn.execute(
                    f"UPDATE {table} SET state = %s WHERE notification_id = %s",
                    (json.dumps(state).encode(), target),
                )
                expected = {target}
            elif kind == "hash":
                target = rng.choice(ids)
                state = next(s for n, _, s in original if n == target)
                state["hash"] = f"{rng.getrandbits(256):064x}"
                conn.execute(
                    f"UPDATE {table} SET state = %s WHERE notification_id = %s",
                    (json.dumps(state).encode(), target),
                )
                expected = {target}
            elif kind == "delete":
                target = rng.choice(ids)
                conn.execute(f"DELETE FROM {table} WHERE notification_id = %s", (target,))
                start, end = window(target)
                expected = set(range(start, end + 1)) | {target}
            elif kind == "swap":
                a, b = sorted(rng.sample(ids, 2))
                conn.execute(
                    f"UPDATE {table} SET notification_id = -1 WHERE notification_id = %s", (a,)
                )
                conn.execute(
                    f"UPDATE {table} SET notification_id = %s WHERE notification_id = %s", (a, b)
                )
                conn.execute(
                    f"UPDATE {table} SET notification_id = %s WHERE notification_id = -1", (b,)
                )
                expected = set(range(window(a)[0], window(a)[1] + 1)) | set(
                    range(window(b)[0], window(b)[1] + 1)
                )
            else:  # insert a forged copy of a money event as its stream's next version
                source = rng.choice(postings)
                stream, _version, topic, state = conn.execute(
                    f"SELECT originator_id, originator_version, topic, state FROM {table} "
                    "WHERE notification_id = %s",
                    (source,),
                ).fetchone()
                head = conn.execute(
                    f"SELECT max(originator_version) FROM {table} WHERE originator_id = %s",
                    (stream,),
                ).fetchone()[0]
                forged = ids[-1] + 1
                conn.execute(
                    f"INSERT INTO {table} (originator_id, originator_version, topic, state, "
                    "notification_id) VALUES (%s, %s, %s, %s, %s)",
                    (stream, head + 1, topic, state, forged),
                )
                expected = {forged}
        report = audit(database_url, schema)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        assert report.findings, f"edit {edit} ({kind}) went unnoticed"
        named = {finding.sequence for finding in report.findings}
        assert named & expected, (kind, expected, report.findings[:3])
        found[kind] += 1
    assert found == {kind: EDITS // len(KINDS) for kind in KINDS}
