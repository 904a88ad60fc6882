"""The write path's PostgreSQL sessions (see BinaryInsertRecorder): they never JIT-compile,
and writers take turns on an advisory lock that autovacuum does not wait for."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from ledger.application import Ledger
from ledger.errors import Code
from ledger.store import BinaryInsertRecorder, PostgresQueries
from tests.builders import Desk

WRITE_SECONDS_MAX = 20.0

EXPLAIN = "EXPLAIN (ANALYZE, FORMAT TEXT) "


def _plan(curs: Any, sql: str) -> str:
    # jit_above_cost 0: any session that may JIT-compile does so for this query.
    curs.execute("SET LOCAL jit_above_cost = 0")
    curs.execute(EXPLAIN + sql.replace("%s", "'{}'"))
    return "\n".join(str(next(iter(row.values()))) for row in curs.fetchall())


def test_the_write_path_sessions_never_jit_compile(
    pg_ledger_env: dict[str, str], database_url: str
) -> None:
    ledger = Ledger(pg_ledger_env)
    try:
        queries = ledger._queries
        assert isinstance(queries, PostgresQueries)
        with ledger.recorder.datastore.transaction(commit=False) as curs:  # type: ignore[attr-defined]
            curs.execute("SHOW jit")
            assert curs.fetchone()["jit"] == "off"
            plan = _plan(curs, queries.sql_after)
        assert "JIT" not in plan, plan
        # The same query in a session of the server's defaults is compiled, when
        # the server can compile at all: the check above can fail.
        with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
            available = conn.execute("SELECT pg_jit_available() AS a").fetchone()
            assert available is not None
            if available["a"]:
                assert "JIT" in _plan(conn.cursor(), queries.sql_after)
    finally:
        ledger.close()


def _deposit_in_thread(desk: Desk, agent: str, user: int) -> tuple[threading.Thread, list[Any]]:
    answers: list[Any] = []
    thread = threading.Thread(
        target=lambda: answers.append(desk.deposit(agent, user, "1.00")), daemon=True
    )
    thread.start()
    return thread, answers


def test_a_write_does_not_wait_for_vacuum_but_does_wait_for_another_writer(
    pg_ledger_env: dict[str, str], database_url: str, pg_schema: str
) -> None:
    ledger = Ledger(pg_ledger_env)
    try:
        desk = Desk(ledger)
        agent, user = desk.casino()
        recorder = ledger.recorder
        assert isinstance(recorder, BinaryInsertRecorder)
        table = f'"{pg_schema}"."{recorder.events_table_name}"'
        with psycopg.connect(database_url) as vacuum:
            # What VACUUM and ANALYZE (autovacuum's too) hold on the table while they run.
            vacuum.execute(f"LOCK TABLE {table} IN SHARE UPDATE EXCLUSIVE MODE")
            thread, answers = _deposit_in_thread(desk, agent, user)
            thread.join(WRITE_SECONDS_MAX)
            assert not thread.is_alive(), "the write waited for the vacuum's lock"
            assert answers[0].code == Code.OK
            vacuum.rollback()
        with psycopg.connect(database_url, autocommit=True) as writer:
            writer.execute("SELECT pg_advisory_lock(%s)", (recorder.writers_lock_key,))
            thread, answers = _deposit_in_thread(desk, agent, user)
            time.sleep(1.0)
            assert thread.is_alive() and not answers, "the write did not wait its turn"
            writer.execute("SELECT pg_advisory_unlock(%s)", (recorder.writers_lock_key,))
            thread.join(WRITE_SECONDS_MAX)
            assert not thread.is_alive()
            assert answers[0].code == Code.OK
    finally:
        ledger.close()
