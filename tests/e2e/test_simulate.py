"""`ledger simulate` against the running service (over this test's topics and schema)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.e2e.harness import Stack

SIMULATE_SECONDS_MAX = 120
ANSWERED = re.compile(r"answered ([A-Z_]+(?: \(repeat\))?)\s*│\s*([\d,]+)")


@pytest.fixture
def stack(
    kafka_bootstrap: str, database_url: str, pg_schema: str, tmp_path: Path
) -> Iterator[Stack]:
    built = Stack(kafka_bootstrap, database_url, pg_schema, tmp_path, partitions=4)
    built.service().start()
    yield built
    built.close()


def simulate(stack: Stack, *args: str) -> dict[str, int]:
    """Run `ledger simulate`; returns how many play commands got each answer."""
    done = subprocess.run(
        [sys.executable, "-m", "ledger.cli", "simulate", *args],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=SIMULATE_SECONDS_MAX,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {status: int(n.replace(",", "")) for status, n in ANSWERED.findall(done.stdout)}


def events(stack: Stack) -> int:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{stack.schema}".ledger_events').fetchone()
    assert row is not None
    return int(row[0])


def test_simulate_sends_a_world_and_its_play_and_each_request_is_answered(stack: Stack) -> None:
    answers = simulate(stack, "--count", "200", "--seed", "1")
    assert "UNANSWERED" not in answers
    assert answers["OK"] > 190
    assert set(answers) <= {
        "OK",
        "OK (repeat)",
        "TRANSACTION_NOT_FOUND",
        "TRANSACTION_ROLLED_BACK",
    }


def test_simulating_the_same_seed_again_is_answered_from_the_request_log(stack: Stack) -> None:
    first = simulate(stack, "--count", "200", "--seed", "1")
    written = events(stack)
    again = simulate(stack, "--count", "200", "--seed", "1")
    assert sum(again.values()) == sum(first.values())
    assert all(status.endswith("(repeat)") for status in again), again
    assert events(stack) == written
