"""Who may see what, over real HTTP: tokens, subtrees, IP allow lists, the in-flight limit."""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from ledger.application import Ledger
from ledger.cli import app as cli
from ledger.settings import Settings
from projections.security import allow_ip, revoke_token
from tests.builders import Desk
from tests.integration.read_side import (
    ApiServer,
    drop_schemas,
    new_ledger,
    projector,
    settings_for,
    store_position,
    token_for,
)

pytestmark = pytest.mark.integration


@dataclass
class Tree:
    """BR -> OP -> CA -> CAC and BR -> OP2 -> CA2; a lone root LONE. Tokens by caller."""

    settings: Settings
    ledger: Ledger
    server: ApiServer
    tokens: dict[str, str | None]
    alice: int  # a player of CA

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.settings.database_url,
            "DATABASE_SCHEMA": self.settings.database_schema,
            "VIEWS_SCHEMA": "",
        }


@pytest.fixture(scope="module")
def tree(database_url: str) -> Iterator[Tree]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    settings = settings_for(database_url, schema)
    ledger = new_ledger(settings)
    desk = Desk(ledger)
    for code, parent in (
        ("BR", None),
        ("OP", "BR"),
        ("CA", "OP"),
        ("CAC", "CA"),
        ("OP2", "BR"),
        ("CA2", "OP2"),
        ("LONE", None),
    ):
        assert desk.create_agent(code, parent).ok
    assert desk.issue("BR", "100").ok and desk.transfer("BR", "OP", "50").ok
    assert desk.transfer("OP", "CA", "20").ok
    alice = desk.create_user("CA", "alice").user_code or 0
    assert desk.deposit("CA", alice, "5").ok and desk.bet("CA", alice, "b", "r", "1").ok
    projector(settings, ledger).catch_up()
    server = ApiServer(settings)
    tokens: dict[str, str | None] = {
        "no token": None,
        "unknown token": "lgr_" + "x" * 43,
        "own agent": token_for(settings, "CA")[0],
        "parent": token_for(settings, "OP")[0],
        "child": token_for(settings, "CAC")[0],
        "sibling subtree": token_for(settings, "CA2")[0],
    }
    revoked, revoked_id = token_for(settings, "CA")
    blocked, _ = token_for(settings, "BR")  # the root sees everything, but not from here
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert revoke_token(conn, schema, revoked_id)
        assert allow_ip(conn, schema, "BR", "10.0.0.0/8")
    tokens["revoked token"], tokens["disallowed IP"] = revoked, blocked
    yield Tree(settings, ledger, server, tokens, alice)
    server.stop()
    ledger.close()
    drop_schemas(database_url, schema)


AGENT_PATHS = [
    "/v1/agents/CA",
    "/v1/agents/CA/children",
    "/v1/agents/CA/transactions",
    "/v1/agents/CA/ggr",
    "/v1/balances/agent:CA",
    "/v1/balances/house:CA",
]
USER_PATHS = ["/v1/users/{alice}", "/v1/users/{alice}/transactions", "/v1/balances/player:{alice}"]

# What each caller gets for every endpoint about CA or its player: (HTTP status, code).
EXPECTED: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    # caller: (for agent endpoints, for user endpoints)
    "no token": ((401, 1007), (401, 1007)),
    "unknown token": ((401, 1009), (401, 1009)),
    "own agent": ((200, 0), (200, 0)),
    "parent": ((200, 0), (200, 0)),
    "child": ((404, 2001), (404, 2002)),
    "sibling subtree": ((404, 2001), (404, 2002)),
    "revoked token": ((401, 1009), (401, 1009)),
    "disallowed IP": ((403, 1020), (403, 1020)),
}


def _get(tree: Tree, token: str | None, path: str, **kw: Any) -> httpx.Response:
    with tree.server.client(token) as client:
        return client.get(path.format(alice=tree.alice), **kw)


@pytest.mark.parametrize("caller", list(EXPECTED))
@pytest.mark.parametrize("path", AGENT_PATHS + USER_PATHS)
def test_every_endpoint_answers_each_caller_exactly_as_the_contract_says(
    tree: Tree, caller: str, path: str
) -> None:
    expected = EXPECTED[caller][0 if path in AGENT_PATHS else 1]
    answer = _get(tree, tree.tokens[caller], path)
    body = answer.json()
    assert (answer.status_code, body["code"]) == expected, body
    assert set(body) == {"code", "message", "data"}
    if expected[1] != 0:
        assert body["data"] == {}


def _comparable(answer: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    varying = {"x-mgp-req-id", "x-mgp-response-time", "date"}
    headers = {k: v for k, v in answer.headers.items() if k not in varying}
    return answer.status_code, answer.content, headers


@pytest.mark.parametrize(
    ("outside", "missing"),
    [
        ("/v1/agents/CA", "/v1/agents/NOPE"),
        ("/v1/agents/OP/children", "/v1/agents/NOPE/children"),
        ("/v1/agents/CA/transactions", "/v1/agents/NOPE/transactions"),
        ("/v1/agents/CA/ggr", "/v1/agents/NOPE/ggr"),
        ("/v1/balances/agent:CA", "/v1/balances/agent:NOPE"),
        ("/v1/balances/house:BR", "/v1/balances/house:NOPE"),
        ("/v1/balances/issuance", "/v1/balances/agent:NOPE"),
        ("/v1/users/{alice}", "/v1/users/999999"),
        ("/v1/users/{alice}/transactions", "/v1/users/999999/transactions"),
        ("/v1/balances/player:{alice}", "/v1/balances/player:999999"),
    ],
)
def test_what_lies_outside_the_subtree_answers_exactly_like_what_does_not_exist(
    tree: Tree, outside: str, missing: str
) -> None:
    sibling = tree.tokens["sibling subtree"]
    assert _comparable(_get(tree, sibling, outside)) == _comparable(_get(tree, sibling, missing))


def test_outside_and_missing_take_the_same_time(tree: Tree) -> None:
    timings: dict[str, list[float]] = {"outside": [], "missing": []}
    with tree.server.client(tree.tokens["sibling subtree"]) as client:
        for _ in range(40):
            for kind, path in (("outside", "/v1/agents/CA"), ("missing", "/v1/agents/NOPE")):
                started = time.perf_counter()
                assert client.get(path).status_code == 404
                timings[kind].append(time.perf_counter() - started)
    difference = statistics.median(timings["outside"]) - statistics.median(timings["missing"])
    assert abs(difference) < 0.005, timings


def test_a_token_sees_its_own_subtree_at_any_depth(tree: Tree) -> None:
    child = tree.tokens["child"]
    assert _get(tree, child, "/v1/agents/CAC").json()["data"]["code"] == "CAC"
    parent = tree.tokens["parent"]
    assert _get(tree, parent, "/v1/agents/CAC").json()["data"]["parentCode"] == "CA"
    assert [
        c["code"] for c in _get(tree, parent, "/v1/agents/OP/children").json()["data"]["items"]
    ] == ["CA"]
    assert _get(tree, parent, "/v1/agents/BR").status_code == 404  # up the tree is outside


def test_malformed_authorization_is_answered_as_no_token_or_an_invalid_one(tree: Tree) -> None:
    cases = {
        "Basic dXNlcjpwYXNz": 1007,
        "Bearer": 1007,
        "Token abc": 1007,
        "Bearer " + "y" * 5000: 1009,
        "bearer " + (tree.tokens["own agent"] or ""): 0,
    }
    for header, code in cases.items():
        with tree.server.client() as client:
            answer = client.get("/v1/agents/CA", headers={"Authorization": header})
        assert answer.json()["code"] == code, header
    public = {"/health": 200, "/metrics": 200, "/openapi.json": 200}
    with tree.server.client() as client:
        assert {path: client.get(path).status_code for path in public} == public


# ------------------------------------------------------------------ the command line


def _cli(tree: Tree, *args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), env=tree.env())
    return result


def test_tokens_are_created_and_revoked_with_the_cli_and_stored_only_as_hashes(
    tree: Tree,
) -> None:
    created = _cli(tree, "tokens", "create", "--agent", "LONE", "--label", "ops")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("lgr_") and len(token) == 4 + 43
    token_id = created.stderr.split()[2]
    assert _get(tree, token, "/v1/agents/LONE").status_code == 200
    with psycopg.connect(tree.settings.database_url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT * FROM {}.api_tokens WHERE token_id = %s").format(
                sql.Identifier(tree.settings.views_schema_name)
            ),
            (token_id,),
        ).fetchall()
    assert len(rows) == 1
    assert bytes(rows[0][1]) == hashlib.sha256(token.encode()).digest()
    assert all(token not in str(value) for value in rows[0])
    listed = _cli(tree, "tokens", "list", "--agent", "LONE")
    assert token_id in listed.stdout and token not in listed.stdout
    assert _cli(tree, "tokens", "revoke", token_id).exit_code == 0
    refused = _get(tree, token, "/v1/agents/LONE")
    assert (refused.status_code, refused.json()["code"]) == (401, 1009)
    assert "revoked" in _cli(tree, "tokens", "list", "--agent", "LONE").stdout
    assert _cli(tree, "tokens", "revoke", "tok_nosuchtoken").exit_code == 1
    assert _cli(tree, "tokens", "create", "--agent", "NOPE").exit_code == 1


def test_an_ip_allow_list_set_with_the_cli_admits_only_its_addresses(tree: Tree) -> None:
    created = _cli(tree, "tokens", "create", "--agent", "LONE")
    token = created.stdout.strip()
    assert _get(tree, token, "/v1/agents/LONE").status_code == 200  # empty list: any IP
    assert _cli(tree, "agents", "allow-ip", "LONE", "10.0.0.0/8").exit_code == 0
    refused = _get(tree, token, "/v1/agents/LONE")
    assert (refused.status_code, refused.json()["code"]) == (403, 1020)
    # A forwarded-for header is not trusted: the API sees the TCP peer.
    spoofed = _get(tree, token, "/v1/agents/LONE", headers={"X-Forwarded-For": "10.1.2.3"})
    assert spoofed.json()["code"] == 1020
    assert _cli(tree, "agents", "allow-ip", "LONE", "127.0.0.1").exit_code == 0
    assert _get(tree, token, "/v1/agents/LONE").status_code == 200
    assert "127.0.0.1/32" in _cli(tree, "agents", "ips", "LONE").stdout
    assert _cli(tree, "agents", "disallow-ip", "LONE", "127.0.0.1").exit_code == 0
    assert _get(tree, token, "/v1/agents/LONE").json()["code"] == 1020
    assert _cli(tree, "agents", "disallow-ip", "LONE", "10.0.0.0/8").exit_code == 0
    assert _get(tree, token, "/v1/agents/LONE").status_code == 200  # empty again
    assert _cli(tree, "agents", "allow-ip", "LONE", "not-an-ip").exit_code != 0
    assert _cli(tree, "agents", "allow-ip", "NOPE", "10.0.0.1").exit_code == 1


# ------------------------------------------------------------------ in-flight limit


@pytest.fixture
def busy(database_url: str, pg_schema: str) -> Iterator[tuple[Tree, Desk]]:
    """A store followed by a projector thread, and an API whose waits are long."""
    settings = settings_for(database_url, pg_schema, api_min_sequence_wait_ms=20_000)
    ledger = new_ledger(settings)
    desk = Desk(ledger)
    for code in ("CA", "OTHER"):
        assert desk.create_agent(code).ok
    follower = projector(settings, new_ledger(settings))
    stop = threading.Event()
    thread = threading.Thread(target=follower.run_forever, args=(stop,), daemon=True)
    thread.start()
    server = ApiServer(settings)
    tokens: dict[str, str | None] = {code: token_for(settings, code)[0] for code in ("CA", "OTHER")}
    yield Tree(settings, ledger, server, tokens, 0), desk
    server.stop()
    stop.set()
    thread.join(timeout=10)
    ledger.close()


async def test_two_hundred_requests_of_one_agent_get_fifty_served_and_the_rest_busy(
    busy: tuple[Tree, Desk],
) -> None:
    tree, desk = busy
    limiter = tree.server.runtime.limiter
    # Held requests: each waits for a sequence the store has not reached yet.
    unreached = store_position(tree.ledger) + 1
    answers: list[tuple[float, int, int]] = []
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)

    async def ask(client: httpx.AsyncClient, token: str | None, path: str) -> httpx.Response:
        return await client.get(path, headers={"Authorization": f"Bearer {token}"})

    async def held(client: httpx.AsyncClient) -> None:
        answer = await ask(client, tree.tokens["CA"], f"/v1/agents/CA?minSequence={unreached}")
        answers.append((time.monotonic(), answer.status_code, answer.json()["code"]))

    async with httpx.AsyncClient(base_url=tree.server.url, limits=limits, timeout=60) as client:
        started = time.monotonic()
        requests = [asyncio.create_task(held(client)) for _ in range(200)]
        deadline = started + 30
        while len(answers) < 150 or limiter.in_flight.get("CA", 0) < 50:
            assert time.monotonic() < deadline, (len(answers), limiter.in_flight)
            await asyncio.sleep(0.01)
        busy_at = time.monotonic()
        assert limiter.in_flight == {"CA": 50}
        # Another agent is served at once while CA is saturated.
        others = await asyncio.gather(
            *(ask(client, tree.tokens["OTHER"], "/v1/agents/OTHER") for _ in range(20))
        )
        assert [o.status_code for o in others] == [200] * 20
        await asyncio.sleep(0.3)
        assert len(answers) == 150, "the held requests are still held"
        write_at = time.monotonic()
        assert desk.issue("CA", "1").ok  # the projection moves on: the held ones are served
        await asyncio.wait_for(asyncio.gather(*requests), timeout=30)
    outcomes = sorted((status, code) for _, status, code in answers)
    assert outcomes == [(200, 0)] * 50 + [(429, 1018)] * 150
    assert all(at < busy_at for at, status, _ in answers if status == 429)
    assert all(at > write_at for at, status, _ in answers if status == 200)
    assert busy_at - started < 10, "the busy answers came at once, not after the wait"
    assert limiter.in_flight_peak["CA"] == 50
    assert limiter.in_flight == {}
    metrics = httpx.get(f"{tree.server.url}/metrics").text
    assert "ledger_api_busy_refusals_total 150.0" in metrics
