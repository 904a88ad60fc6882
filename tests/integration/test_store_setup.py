"""Several ledger processes starting at once on one store all come up."""

from __future__ import annotations

import multiprocessing
import uuid

import psycopg

from ledger.application import Ledger
from ledger.settings import store_env

PROCESSES = 6
ROUNDS = 3


def _start(env: dict[str, str]) -> int:
    ledger = Ledger(env)
    try:
        return int(ledger.recorder.max_notification_id() or 0)
    finally:
        ledger.close()


def test_ledger_processes_starting_together_on_a_fresh_store_all_start(database_url: str) -> None:
    # Each one sets up the store's tables, types and functions; PostgreSQL refuses
    # concurrent CREATE OR REPLACE of the same function unless they take turns.
    context = multiprocessing.get_context("spawn")
    for _ in range(ROUNDS):
        schema = f"t_{uuid.uuid4().hex[:12]}"
        env = store_env(database_url, schema, pool_size=1)
        try:
            with context.Pool(PROCESSES) as pool:
                positions = pool.map(_start, [env] * PROCESSES)
            assert positions == [0] * PROCESSES
        finally:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
