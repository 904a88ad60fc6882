"""The write path's PostgreSQL sessions never JIT-compile (see BinaryInsertRecorder)."""

from __future__ import annotations

from typing import Any

import psycopg

from ledger.application import Ledger
from ledger.store import PostgresQueries

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
