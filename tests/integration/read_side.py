"""Helpers of the read-side tests: a real uvicorn server on a free port, schemas, view dumps,
and a seeded workload that touches every kind of event the views know."""

from __future__ import annotations

import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import uvicorn
from psycopg import sql

from ledger import commands as c
from ledger.application import Ledger
from ledger.settings import Settings, store_env
from projections.api import create_app
from projections.security import create_token, ensure_security_tables
from projections.views import Projector

__all__ = [
    "ApiServer",
    "drop_schemas",
    "dump_views",
    "mixed_workload",
    "projector",
    "settings_for",
    "token_for",
]

SERVER_READY_SECONDS_MAX = 20.0


def settings_for(database_url: str, schema: str, **overrides: Any) -> Settings:
    """Settings of a test's store and views, independent of the caller's environment."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "database_schema": schema,
        "views_schema": "",
        "api_port": 0,
        "api_pool_size": 8,
        "api_min_sequence_wait_ms": 2000,
        "projection_page_events": 2000,
        **overrides,
    }
    return Settings(**values)


def projector(settings: Settings, ledger: Ledger) -> Projector:
    return Projector(
        settings.database_url, ledger, settings.views_schema_name, settings.projection_page_events
    )


class ApiServer:
    """The API app served by uvicorn on 127.0.0.1 in a thread, on a free port."""

    def __init__(self, settings: Settings) -> None:
        # IPPROTO_TCP so that asyncio sets TCP_NODELAY (see projections/cli.py).
        self.listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.listening.bind(("127.0.0.1", 0))
        self.port = self.listening.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            proxy_headers=False,
            lifespan="on",
            access_log=False,
            log_level="warning",
            log_config=None,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.listening]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + SERVER_READY_SECONDS_MAX
        while not self.server.started:
            assert self.thread.is_alive(), "the API server died while starting"
            assert time.monotonic() < deadline, "the API server did not start"
            time.sleep(0.02)

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def client(self, token: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kw)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.listening.close()


def token_for(settings: Settings, agent_code: str) -> tuple[str, str]:
    """A new token (token, id) for an agent, straight through the security module."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        ensure_security_tables(conn, settings.views_schema_name)
        return create_token(conn, settings.views_schema_name, agent_code, "test")


def drop_schemas(database_url: str, *schemas: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


VIEW_ORDER = {
    "view_agents": "code",
    "view_users": "user_code",
    "view_transactions": "owner, sequence",
    "view_balance_changes": "account, sequence",
    "view_ggr_daily": "agent_code, day",
}


def dump_views(database_url: str, views_schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every view table, in a stable order, plus the tracking position."""
    dumped: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table, order in VIEW_ORDER.items():
            statement = sql.SQL("SELECT * FROM {}.{} ORDER BY " + order).format(
                sql.Identifier(views_schema), sql.Identifier(table)
            )
            dumped[table] = list(conn.execute(statement).fetchall())
        position = conn.execute(
            sql.SQL("SELECT position FROM {}.view_tracking").format(sql.Identifier(views_schema))
        ).fetchall()
        dumped["position"] = position
    return dumped


def store_position(ledger: Ledger) -> int:
    return int(ledger.recorder.max_notification_id() or 0)


def _rid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def mixed_workload(seed: int, rounds: int) -> Iterator[list[c.Command]]:
    """Batches of commands covering every event the views handle: a two-level tree with a
    seamless casino, issue, transfers down and up, deposits, withdrawals, bets, game and
    bonus wins, refunds, refunds that overtake their bets, and refused commands."""
    rng = random.Random(seed)
    setup: list[c.Command] = [
        c.CreateAgent(request_id=_rid(rng), agent_code="MB", currency="EUR", mode="transfer"),
        c.IssuePoints(request_id=_rid(rng), agent_code="MB", amount="1000000"),
        c.CreateAgent(
            request_id=_rid(rng), agent_code="MO", parent_code="MB", currency="EUR", mode="transfer"
        ),
        c.TransferPoints(
            request_id=_rid(rng), agent_code="MB", to_agent_code="MO", amount="500000"
        ),
    ]
    casinos = {"MC1": "transfer", "MC2": "transfer", "MS": "seamless"}
    for code, mode in casinos.items():
        setup.append(
            c.CreateAgent(
                request_id=_rid(rng), agent_code=code, parent_code="MO", currency="EUR", mode=mode
            )
        )
        setup.append(
            c.TransferPoints(
                request_id=_rid(rng), agent_code="MO", to_agent_code=code, amount="9000"
            )
        )
        for n in range(4):
            setup.append(c.CreateUser(request_id=_rid(rng), agent_code=code, name=f"{code}_p{n}"))
    yield setup
    users = {code: [1001 + 4 * i + n for n in range(4)] for i, code in enumerate(casinos)}
    for code in ("MC1", "MC2"):
        yield [
            c.Deposit(request_id=_rid(rng), agent_code=code, user_code=u, amount="500")
            for u in users[code]
        ]
    batch: list[c.Command] = []
    for n in range(rounds):
        code = rng.choice(list(casinos))
        batch.extend(_round(rng, code, rng.choice(users[code]), n))
        if len(batch) >= 400:
            yield batch
            batch = []
    yield batch


def _round(rng: random.Random, code: str, user: int, n: int) -> list[c.Command]:
    """One round of play, or a cashier or tree move, chosen at random."""
    roll = rng.random()
    txn, rnd = f"t{n}", f"r{n}"
    stake = f"{rng.randint(0, 30)}.{rng.randint(0, 99):02d}"
    bet = c.Bet(
        request_id=_rid(rng),
        agent_code=code,
        user_code=user,
        txn_id=txn,
        round_id=rnd,
        amount=stake,
    )
    if roll < 0.05:
        return [c.Refund(request_id=_rid(rng), agent_code=code, user_code=user, txn_id=txn), bet]
    if roll < 0.12:
        return [bet, c.Refund(request_id=_rid(rng), agent_code=code, user_code=user, txn_id=txn)]
    if roll < 0.17:
        return [
            c.Win(
                request_id=_rid(rng),
                agent_code=code,
                user_code=user,
                txn_id=f"w{n}",
                round_id=None,
                amount="1.50",
                kind=rng.choice(["bonus", "jackpot", "freespin", "promotion"]),
            )
        ]
    if roll < 0.20 and code != "MS":
        return [c.Withdraw(request_id=_rid(rng), agent_code=code, user_code=user, amount="3")]
    if roll < 0.22:
        return [
            c.TransferPoints(request_id=_rid(rng), agent_code=code, to_agent_code="MO", amount="2")
        ]
    win = f"{rng.randint(0, 60)}.{rng.randint(0, 99):02d}"
    return [
        bet,
        c.Win(
            request_id=_rid(rng),
            agent_code=code,
            user_code=user,
            txn_id=f"w{n}",
            round_id=rnd,
            amount=win,
        ),
    ]


def new_ledger(settings: Settings) -> Ledger:
    return Ledger(store_env(settings.database_url, settings.database_schema, pool_size=2))
