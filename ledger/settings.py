"""Configuration from the environment (pydantic-settings), and the store it selects."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import psycopg
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "store_env"]


class Settings(BaseSettings):
    """Every knob of the service; each is an environment variable of the same name."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    database_url: str = Field(
        default="postgresql://ledger:ledger@127.0.0.1:55432/ledger",
        description="PostgreSQL of the event store; 'memory' keeps events in memory (tests only).",
    )
    database_schema: str = Field(default="public", description="Schema of the ledger's tables.")
    database_pool_size: int = Field(default=4, ge=1, le=64)
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:19092")
    kafka_group_id: str = Field(default="ledger")
    commands_topic: str = Field(default="ledger.commands")
    results_topic: str = Field(default="ledger.results")
    dlq_topic: str = Field(default="ledger.commands.dlq")
    metrics_port: int = Field(
        default=9108,
        ge=0,
        le=65_535,
        description="Port of the Prometheus endpoint /metrics on 127.0.0.1; 0 disables it.",
    )
    # The read side (projections/): views, and the HTTP query API on 127.0.0.1.
    views_schema: str = Field(
        default="",
        description="Schema of the read model's tables; empty means DATABASE_SCHEMA.",
    )
    api_port: int = Field(
        default=8080, ge=0, le=65535, description="HTTP port on 127.0.0.1; 0 turns the API off."
    )
    api_pool_size: int = Field(default=8, ge=1, le=64, description="API's PostgreSQL connections.")
    api_min_sequence_wait_ms: int = Field(
        default=2000,
        ge=0,
        le=30_000,
        description="How long a read with minSequence waits for the projection (then 503).",
    )
    projector_enabled: bool = Field(default=True, description="`ledger run` runs the projector.")
    projection_page_events: int = Field(
        default=2000, ge=1, le=20_000, description="Events the projector applies per transaction."
    )
    replay_page_events: int = Field(
        default=10_000,
        ge=1,
        le=20_000,
        description="Events `ledger replay` applies per transaction while it rebuilds.",
    )

    @property
    def views_schema_name(self) -> str:
        """The schema the read model lives in (DATABASE_SCHEMA unless VIEWS_SCHEMA is set)."""
        return self.views_schema or self.database_schema


def store_env(database_url: str, schema: str = "public", pool_size: int = 4) -> dict[str, str]:
    """The eventsourcing environment for a database URL ('memory' for the in-memory store).

    The schema is created when missing, so that tests can isolate themselves in one.
    """
    if database_url == "memory":
        return {}
    url = urlsplit(database_url)
    assert url.scheme in ("postgresql", "postgres"), f"unsupported database URL {database_url!r}"
    if schema != "public":
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/"),
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or ""),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": "2",
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "CREATE_TABLE": "y",
        "APPLICATION_RECORDER_TOPIC": "ledger.store:BinaryInsertRecorder",
    }
