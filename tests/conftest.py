"""Shared fixtures: real services (see tests/services.py) and isolated stores per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from ledger.application import Ledger
from ledger.settings import store_env
from tests.services import Services

LedgerFactory = Callable[[], Ledger]


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    resolved = Services()
    yield resolved
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


@pytest.fixture(params=["memory", "postgres"])
def new_ledger(request: pytest.FixtureRequest) -> Iterator[LedgerFactory]:
    """Builds ledgers on one store: in memory, or this test's PostgreSQL schema.

    Every call on PostgreSQL gives a new process-like instance (empty caches)
    over the same tables, which is how tests restart the service. In memory a
    store lives and dies with its instance, so every call returns the same one.
    """
    made: list[Ledger] = []
    if request.param == "memory":
        single = Ledger()
        made.append(single)

        def factory() -> Ledger:
            return single
    else:
        env = request.getfixturevalue("pg_ledger_env")

        def factory() -> Ledger:
            made.append(Ledger(env))
            return made[-1]

    yield factory
    for ledger in made:
        ledger.close()


@pytest.fixture
def ledger(new_ledger: LedgerFactory) -> Ledger:
    return new_ledger()


@pytest.fixture
async def kafka_topic(kafka_bootstrap: str) -> str:
    """A fresh topic (4 partitions) for one test, so tests never see each other's messages."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    name = f"test.{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()
    return name
