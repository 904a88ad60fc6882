"""Shared fixtures: real services (see tests/services.py) and isolated stores per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest

from ledger.application import Ledger
from ledger.audit import verify
from ledger.settings import store_env
from tests import topics
from tests.services import Services

LedgerFactory = Callable[[], Ledger]


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    resolved = Services()
    yield resolved
    topics.delete_left()  # what a failed or interrupted test left on the brokers
    resolved.close()


@pytest.fixture(scope="session")
def database_url(services: Services) -> str:
    return services.database_url


@pytest.fixture(scope="session")
def kafka_bootstrap(services: Services) -> str:
    return services.kafka_bootstrap


@pytest.fixture
def pg_schema(database_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_ledger_env(database_url: str, pg_schema: str) -> dict[str, str]:
    """eventsourcing environment of a ledger whose tables live in this test's own schema."""
    return store_env(database_url, pg_schema, pool_size=2)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that takes a ledger once per store its `stores` marker names
    (memory and PostgreSQL unless it says otherwise)."""
    if "new_ledger" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("stores")
        stores = marker.args if marker is not None else ("memory", "postgres")
        metafunc.parametrize("new_ledger", stores, indirect=True)


@pytest.fixture
def new_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerFactory]:
    """Builds ledgers on one store: in memory, this test's PostgreSQL schema, or
    the running service behind Kafka (over this test's topics and schema).

    Every call on PostgreSQL gives a new process-like instance (empty caches)
    over the same tables, and on Kafka restarts the service: that is how tests
    restart. In memory a store lives and dies with its instance, so every call
    returns the same one.
    """
    made: list[Any] = []
    stop_writers: Callable[[], None] = lambda: None  # noqa: E731
    if request.param == "memory":
        single = Ledger()
        made.append(single)

        def factory() -> Ledger:
            return single

    elif request.param == "postgres":
        env = request.getfixturevalue("pg_ledger_env")

        def factory() -> Ledger:
            made.append(Ledger(env))
            return made[-1]

    else:
        from tests.e2e.harness import Stack
        from tests.e2e.kafka_ledger import KafkaLedger

        env = request.getfixturevalue("pg_ledger_env")
        stack = Stack(
            request.getfixturevalue("kafka_bootstrap"),
            request.getfixturevalue("database_url"),
            request.getfixturevalue("pg_schema"),
            tmp_path,
            partitions=4,
        )
        service = stack.service()
        request.addfinalizer(stack.close)
        stop_writers = service.stop

        def factory() -> Ledger:
            if made:
                service.stop()  # a restart: the service comes back with empty memory
            service.start()
            made.append(KafkaLedger(stack, Ledger(env)))
            return cast(Ledger, made[-1])

    yield factory
    stop_writers()
    if made:
        # Whatever a test did, the store it leaves behind must pass the audit.
        audit = verify(made[-1].recorder, made[-1].mapper.transcoder)
        assert audit.findings == [], audit.findings
    for ledger in made:
        ledger.close()


@pytest.fixture
def ledger(new_ledger: LedgerFactory) -> Ledger:
    return new_ledger()


@pytest.fixture
async def kafka_topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    """A fresh topic (4 partitions) for one test, so tests never see each other's
    messages; deleted after it."""
    name = f"test.{uuid.uuid4().hex[:12]}"
    await topics.create(kafka_bootstrap, [name], partitions=4)
    yield name
    await topics.delete(kafka_bootstrap, [name])
