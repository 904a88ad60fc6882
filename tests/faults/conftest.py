"""Fixtures of the fault suite: its own Kafka and PostgreSQL (never the shared ones), a stack
of topics and a schema per test on them, and the session's figures printed at the end."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.e2e.harness import Stack
from tests.faults.dedicated import DedicatedServices, dedicated_services
from tests.faults.figures import FIGURES, summary_lines, write_json
from tests.faults.harness import KafkaClient


@pytest.fixture(scope="session")
def dedicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DedicatedServices]:
    """Kafka and PostgreSQL that only this session uses: the tests may restart them."""
    with dedicated_services(tmp_path_factory.mktemp("faults-services")) as services:
        yield services


@pytest.fixture
def fault_schema(dedicated: DedicatedServices) -> Iterator[str]:
    schema = f"f_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(dedicated.database_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def stack(dedicated: DedicatedServices, fault_schema: str, tmp_path: Path) -> Iterator[Stack]:
    built = Stack(dedicated.bootstrap, dedicated.database_url, fault_schema, tmp_path)
    yield built
    built.close()


@pytest.fixture
def client(stack: Stack) -> Iterator[KafkaClient]:
    made = KafkaClient(stack.bootstrap, stack.commands, stack.results, stack.dlq)
    yield made
    made.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures (tests/faults)")
    for line in summary_lines():
        terminalreporter.write_line(line)
    written = write_json(Path(tempfile.gettempdir()))
    if written is not None:
        terminalreporter.write_line(f"written to {written}")
