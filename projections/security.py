"""Who may ask what: API tokens, per-agent IP allow lists, and the in-flight limit.

Tokens and allow lists are configuration, not events: they live in their own
tables in the views schema (`api_tokens`, `api_allowed_ips`), which a rebuild of
the views never touches. A token is `lgr_` + 32 random bytes (base64url); only its
SHA-256 is stored, so the database never holds a usable secret. `ledger tokens
create` prints it once, with a public id (`tok_...`) that names it afterwards.

Every `/v1/` request passes the gate (`Gate`, an ASGI middleware), in this order:
1. no `Authorization: Bearer <token>`              -> 1007 TOKEN_NOT_FOUND (401)
2. a token that is unknown or revoked              -> 1009 TOKEN_INVALID (401)
3. the caller's IP not in its agent's allow list   -> 1020 IP_NOT_ALLOWED (403)
   (an empty list allows any IP; the IP is the TCP peer's: no proxy header is trusted)
4. the token's agent already has 50 requests in flight -> 1018 SERVER_IS_BUSY (429), at once
Then the request runs with its `Caller`; what it may see (the agent's subtree) is
decided by the queries, which treat anything outside it exactly like nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from ledger.errors import Code
from projections.bounds import (
    AUTHORIZATION_CHARS_MAX,
    IN_FLIGHT_PER_AGENT_MAX,
    TOKEN_SECRET_BYTES,
)
from projections.http import ApiError, error_response

__all__ = [
    "Caller",
    "Gate",
    "InFlightLimiter",
    "TokenInfo",
    "allow_ip",
    "allowed_ips",
    "create_token",
    "disallow_ip",
    "ensure_security_tables",
    "hash_token",
    "ip_allowed",
    "list_tokens",
    "revoke_token",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_PREFIX = "lgr_"
CALLER_KEY = "ledger.caller"

_DDL = (
    """CREATE TABLE IF NOT EXISTS {s}.api_tokens (
        token_id text PRIMARY KEY, token_hash bytea NOT NULL UNIQUE, agent_code text NOT NULL,
        label text, created_at timestamptz NOT NULL DEFAULT now(), revoked_at timestamptz)""",
    """CREATE TABLE IF NOT EXISTS {s}.api_allowed_ips (
        agent_code text NOT NULL, network cidr NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (agent_code, network))""",
)


def _q(text: str, schema: str) -> sql.Composed:
    return sql.SQL(text).format(s=sql.Identifier(schema))


def ensure_security_tables(conn: psycopg.Connection[Any], schema: str) -> None:
    """Create the token and allow-list tables when missing (idempotent, safe in parallel)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ledger-views:{schema}",))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for statement in _DDL:
            conn.execute(_q(statement, schema))


# ------------------------------------------------------------------ tokens


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    agent_code: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


def create_token(
    conn: psycopg.Connection[Any], schema: str, agent_code: str, label: str | None
) -> tuple[str, str]:
    """A new token for `agent_code`: returns (token, token_id). The token is not stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_SECRET_BYTES)
    token_id = "tok_" + secrets.token_hex(6)
    with conn.transaction():
        conn.execute(
            _q(
                "INSERT INTO {s}.api_tokens (token_id, token_hash, agent_code, label)"
                " VALUES (%s, %s, %s, %s)",
                schema,
            ),
            (token_id, hash_token(token), agent_code, label),
        )
    return token, token_id


def revoke_token(conn: psycopg.Connection[Any], schema: str, id_or_token: str) -> bool:
    """Revoke a token named by its id or by the token itself; False if there is none.

    Revoking twice keeps the first revocation time.
    """
    with conn.transaction():
        cursor = conn.execute(
            _q(
                "UPDATE {s}.api_tokens SET revoked_at = coalesce(revoked_at, now())"
                " WHERE token_id = %s OR token_hash = %s",
                schema,
            ),
            (id_or_token, hash_token(id_or_token)),
        )
        return cursor.rowcount > 0


def list_tokens(
    conn: psycopg.Connection[Any], schema: str, agent_code: str | None
) -> list[TokenInfo]:
    rows = conn.execute(
        _q(
            "SELECT token_id, agent_code, label, created_at, revoked_at FROM {s}.api_tokens"
            " WHERE %s::text IS NULL OR agent_code = %s ORDER BY created_at, token_id",
            schema,
        ),
        (agent_code, agent_code),
    ).fetchall()
    return [TokenInfo(*row) for row in rows]


# ------------------------------------------------------------------ allow lists


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An IP address or a CIDR network; raises ValueError otherwise."""
    return ipaddress.ip_network(text.strip(), strict=False)


def allow_ip(conn: psycopg.Connection[Any], schema: str, agent_code: str, network: str) -> bool:
    """Add an address or network to the agent's allow list; False if it was there."""
    with conn.transaction():
        cursor = conn.execute(
            _q(
                "INSERT INTO {s}.api_allowed_ips (agent_code, network) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING",
                schema,
            ),
            (agent_code, parse_network(network)),
        )
        return cursor.rowcount > 0


def disallow_ip(conn: psycopg.Connection[Any], schema: str, agent_code: str, network: str) -> bool:
    """Remove an entry; False if it was not there. An emptied list allows any IP again."""
    with conn.transaction():
        cursor = conn.execute(
            _q("DELETE FROM {s}.api_allowed_ips WHERE agent_code = %s AND network = %s", schema),
            (agent_code, parse_network(network)),
        )
        return cursor.rowcount > 0


def allowed_ips(conn: psycopg.Connection[Any], schema: str, agent_code: str) -> list[str]:
    rows = conn.execute(
        _q(
            "SELECT network FROM {s}.api_allowed_ips WHERE agent_code = %s ORDER BY network",
            schema,
        ),
        (agent_code,),
    ).fetchall()
    return [str(row[0]) for row in rows]


def ip_allowed(client_ip: str | None, networks: list[Any]) -> bool:
    """Whether the caller's IP is in the allow list; an empty list allows any IP.
    IPv4-mapped IPv6 addresses are compared as IPv4."""
    if not networks:
        return True
    if client_ip is None:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(network) for network in networks)


# ------------------------------------------------------------------ the gate


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the token's agent (it sees that agent's subtree)."""

    agent_code: str
    token_id: str


class InFlightLimiter:
    """Requests in flight per agent; the one past the limit is refused at once.

    Single event loop, so plain counters need no lock.
    """

    def __init__(self, per_agent_max: int = IN_FLIGHT_PER_AGENT_MAX) -> None:
        self.per_agent_max = per_agent_max
        self.in_flight: dict[str, int] = {}
        self.in_flight_peak: dict[str, int] = {}

    def try_acquire(self, agent_code: str) -> bool:
        count = self.in_flight.get(agent_code, 0)
        if count >= self.per_agent_max:
            return False
        self.in_flight[agent_code] = count + 1
        self.in_flight_peak[agent_code] = max(self.in_flight_peak.get(agent_code, 0), count + 1)
        return True

    def release(self, agent_code: str) -> None:
        count = self.in_flight[agent_code] - 1
        assert count >= 0
        if count:
            self.in_flight[agent_code] = count
        else:
            del self.in_flight[agent_code]


def bearer_token(scope: Scope) -> str | None:
    """The bearer token of the request, or None when there is none."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            text: str = value.decode("latin-1").strip()
            scheme, _, token = text.partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token:
                return token
            return None
    return None


class Gate:
    """ASGI middleware: authenticates `/v1/` requests and applies the allow list and
    the in-flight limit (see the module docstring); other paths pass untouched."""

    def __init__(
        self,
        app: ASGIApp,
        pool: Callable[[], AsyncConnectionPool[Any]],
        schema: str,
        limiter: InFlightLimiter,
        on_busy: Callable[[], None],
    ) -> None:
        self.app = app
        self.pool = pool
        self.limiter = limiter
        self.on_busy = on_busy
        self.sql_lookup = _q(
            "SELECT t.token_id, t.agent_code, t.revoked_at IS NOT NULL,"
            " ARRAY(SELECT i.network::text FROM {s}.api_allowed_ips i"
            " WHERE i.agent_code = t.agent_code)"
            " FROM {s}.api_tokens t WHERE t.token_hash = %s",
            schema,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        try:
            caller = await self._admit(scope)
        except ApiError as error:
            await error_response(error)(scope, receive, send)
            return
        try:
            scope[CALLER_KEY] = caller
            await self.app(scope, receive, send)
        finally:
            self.limiter.release(caller.agent_code)

    async def _admit(self, scope: Scope) -> Caller:
        token = bearer_token(scope)
        if token is None:
            raise ApiError(Code.TOKEN_NOT_FOUND, "no bearer token")
        found = None
        if len(token) <= AUTHORIZATION_CHARS_MAX:
            async with self.pool().connection() as conn:
                cursor = await conn.execute(self.sql_lookup, (hash_token(token),))
                found = await cursor.fetchone()
        if found is None or found[2]:
            raise ApiError(Code.TOKEN_INVALID, "token is not valid")
        token_id, agent_code, _, networks = found
        client = scope.get("client")
        if not ip_allowed(client[0] if client else None, list(networks)):
            raise ApiError(Code.IP_NOT_ALLOWED, "this IP address is not allowed for the agent")
        if not self.limiter.try_acquire(agent_code):
            self.on_busy()
            raise ApiError(Code.SERVER_IS_BUSY, "too many requests of this agent in flight")
        return Caller(agent_code=agent_code, token_id=token_id)
