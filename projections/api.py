"""The read-model HTTP API (CONTRACT.md section 6): FastAPI, served by uvicorn on 127.0.0.1.

`create_app(settings)` builds the app. Every request:
- gets `X-MGP-REQ-ID` (the caller's, echoed, or a new UUID) and `X-MGP-RESPONSE-TIME`
  (milliseconds until the response started) on its response, whatever the outcome;
- under `/v1/` passes the gate (`projections/security.py`): token, IP allow list,
  in-flight limit;
- with `minSequence=N` waits (at most `API_MIN_SEQUENCE_WAIT_MS`, default 2 s) until
  the views reflect sequence N, else answers 503 / 1001 with `Retry-After`;
- reads in one REPEATABLE READ transaction, so data and `asOfSequence` agree.

Parameters: an ill-typed one (`limit=abc`) is 1002 VALIDATION_ERROR; a well-typed one
out of range (`limit=5000`, a foreign cursor, `from` after `to`) is 1012
PARAMETERS_INVALID. An unknown path is 1002 too (HTTP 400, as the contract maps it).
Any failure of ours (database down) is 1001 with 503 and `Retry-After`, never a 500.

`asOf` of `/v1/balances/{account}`: below 10^12 it is a sequence, from 10^12 on it is
epoch milliseconds (10^12 ms is 2001-09-09, and a ledger would need a trillion events
before a sequence reached it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any

import psycopg
from eventsourcing.persistence import StoredEvent
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from psycopg import AsyncConnection, IsolationLevel
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ledger.application import Ledger
from ledger.errors import Code
from ledger.handlers import AGENT_CODE
from ledger.money import currency_exponent, format_minor
from ledger.settings import Settings, store_env
from projections.bounds import (
    API_POOL_WAIT_SECONDS,
    ASOF_EPOCH_MS_MIN,
    GGR_DAYS_MAX,
    PAGE_ITEMS_DEFAULT,
    PAGE_ITEMS_MAX,
    POSITION_POLL_SECONDS,
    REQUEST_ID_CHARS_MAX,
)
from projections.http import ApiError, envelope, error_response
from projections.queries import AgentRecord, HistoryRow, Queries
from projections.security import (
    CALLER_KEY,
    Caller,
    Gate,
    InFlightLimiter,
    Scope,
    ensure_security_tables,
)
from projections.views import ensure_views
from schemas.api import (
    AgentData,
    BalanceData,
    ChildrenData,
    Envelope,
    ErrorEnvelope,
    GgrData,
    GgrDay,
    HealthData,
    TransactionItem,
    TransactionPage,
    UserData,
    dump,
)

__all__ = ["PositionWatch", "Runtime", "create_app"]

log = logging.getLogger("ledger.api")

TIME_MAX_MS = 2**63 - 1

API_DESCRIPTION = """\
Read model of the ledger (contract section 6). Every body is `{code, message, data}`, camelCase,
nulls omitted; amounts are strings with the currency's exponent digits.

- `Authorization: Bearer <token>`: a token sees its agent and that agent's whole subtree;
  anything else is answered exactly like something that does not exist (2001 / 2002, 404).
- Errors: 1002, 1012 -> 400; 1007, 1009 -> 401; 1020 -> 403; 2001, 2002 -> 404; 1018 -> 429;
  1001 -> 503 with `Retry-After`. At most 50 requests of one agent in flight.
- `X-MGP-REQ-ID` is echoed (or generated); `X-MGP-RESPONSE-TIME` gives milliseconds.
- Balances carry `asOfSequence`; pass `minSequence=<sequence of your command result>` to read
  your own write (the API waits up to 2 s, else 503 / 1001).
- `asOf` of `/v1/balances/{account}`: below 10^12 a sequence, from 10^12 on epoch milliseconds.
"""


# ------------------------------------------------------------------ runtime


class PositionWatch:
    """The views' position as this process last saw it; wakes requests waiting for one.

    While anyone waits, ONE task re-reads the position every POSITION_POLL_SECONDS,
    however many requests wait; nobody holds a database connection while waiting.
    """

    def __init__(self, read: Callable[[], Awaitable[int]]) -> None:
        self.read = read
        self.position = 0
        self.waiters = 0
        self._moved = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None

    def observe(self, position: int) -> None:
        if position != self.position:
            self.position = position
            self._moved.set()
            self._moved = asyncio.Event()

    async def reached(self, target: int, timeout_seconds: float) -> bool:
        """Whether the position reaches `target` within the timeout."""
        if self.position >= target:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        self.waiters += 1
        try:
            if self._poller is None:
                self._poller = asyncio.create_task(self._poll())
            while self.position < target:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                moved = self._moved
                try:
                    await asyncio.wait_for(moved.wait(), remaining)
                except TimeoutError:
                    return self.position >= target
            return True
        finally:
            self.waiters -= 1

    async def _poll(self) -> None:
        try:
            while self.waiters > 0:
                self.observe(await self.read())
                await asyncio.sleep(POSITION_POLL_SECONDS)
        except Exception:
            log.exception("reading the projection position failed")
        finally:
            self._poller = None


class Metrics:
    """Prometheus metrics of one app, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ledger_api_requests", "Answered requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "ledger_api_request_seconds", "Time to answer", ["route"], registry=self.registry
        )
        self.busy = Counter(
            "ledger_api_busy_refusals", "Requests refused SERVER_IS_BUSY", registry=self.registry
        )
        self.projection_position = Gauge(
            "ledger_projection_position", "Last sequence the views reflect", registry=self.registry
        )
        self.store_position = Gauge(
            "ledger_store_position", "Last sequence in the event store", registry=self.registry
        )


class Runtime:
    """What the app's requests share: the pool, the queries, the limiter, the watch."""

    def __init__(self, settings: Settings) -> None:
        assert settings.database_url != "memory", "the read side needs PostgreSQL"
        self.settings = settings
        self.views_schema = settings.views_schema_name
        self.limiter = InFlightLimiter()
        self.metrics = Metrics()
        self.watch = PositionWatch(self._read_position)
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._ledger: Ledger | None = None
        self.queries: Queries | None = None

    @property
    def pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        assert self._pool is not None, "the app is not started"
        return self._pool

    @property
    def q(self) -> Queries:
        assert self.queries is not None, "the app is not started"
        return self.queries

    async def start(self) -> None:
        self._ledger = await asyncio.to_thread(self._prepare)
        recorder: Any = self._ledger.recorder
        self.queries = Queries(
            self.views_schema, recorder.datastore.schema, recorder.events_table_name
        )
        self._pool = AsyncConnectionPool(
            self.settings.database_url,
            min_size=1,
            max_size=self.settings.api_pool_size,
            kwargs={"autocommit": False, "connect_timeout": 10, "application_name": "ledger-api"},
            configure=_read_only,
            timeout=API_POOL_WAIT_SECONDS,
            name="ledger-api",
            open=False,
        )
        await self._pool.open(wait=True, timeout=30.0)

    def _prepare(self) -> Ledger:
        """Blocking start-up work: the store (for its mapper) and the tables we read."""
        settings = self.settings
        ledger = Ledger(store_env(settings.database_url, settings.database_schema, pool_size=1))
        recorder: Any = ledger.recorder
        source = f"{recorder.datastore.schema}.{recorder.events_table_name}"
        with psycopg.connect(settings.database_url, autocommit=True, connect_timeout=10) as conn:
            ensure_views(conn, self.views_schema, source, migrate=False)
            ensure_security_tables(conn, self.views_schema)
        return ledger

    async def stop(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._ledger is not None:
            await asyncio.to_thread(self._ledger.close)

    def decode(self, row: Any) -> Any:
        assert self._ledger is not None
        return self._ledger.mapper.to_domain_event(StoredEvent(*row))

    async def _read_position(self) -> int:
        async with self.pool.connection() as conn:
            return await self.q.view_position(conn)

    @asynccontextmanager
    async def read(
        self, min_sequence: int | None
    ) -> AsyncIterator[tuple[AsyncConnection[Any], int]]:
        """A read transaction whose snapshot reflects at least `min_sequence`, and its position.

        Raises ApiError 1001 when the views do not get there within the bounded wait.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.api_min_sequence_wait_ms / 1000
        while True:
            if min_sequence is not None:
                remaining = max(0.0, deadline - loop.time())
                if not await self.watch.reached(min_sequence, remaining):
                    raise ApiError(
                        Code.INTERNAL_SERVER_ERROR,
                        f"the read model has not reached sequence {min_sequence} yet; retry",
                    )
            async with self.pool.connection() as conn:
                position = await self.q.view_position(conn)
                self.watch.observe(position)
                if min_sequence is None or position >= min_sequence:
                    yield conn, position
                    return
            # The views went back (a rebuild): wait again, within the same deadline.


async def _read_only(conn: AsyncConnection[Any]) -> None:
    await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
    await conn.set_read_only(True)


# ------------------------------------------------------------------ middleware


class Stamp:
    """Outermost ASGI middleware: request id and response time headers on every answer,
    metrics, and 1001 (503, Retry-After) instead of a crash for any unexpected error."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        scope = _without_empty_parameters(scope)
        status: list[int] = []

        async def stamped(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                headers = MutableHeaders(scope=message)
                headers["X-MGP-REQ-ID"] = request_id
                elapsed_ms = (time.perf_counter() - started) * 1000
                headers["X-MGP-RESPONSE-TIME"] = str(int(elapsed_ms))
            await send(message)

        try:
            await self.app(scope, receive, stamped)
        except Exception:
            log.exception("request %s failed", request_id)
            if status:
                raise
            failed = ApiError(Code.INTERNAL_SERVER_ERROR, "the service is unavailable; retry")
            await error_response(failed)(scope, receive, stamped)
        route = getattr(scope.get("route"), "path", "other")
        self.metrics.requests.labels(route, str(status[0] if status else 0)).inc()
        self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def _without_empty_parameters(scope: Scope) -> Scope:
    """A query parameter given empty is absent: `?cursor=&limit=`, as the contract writes
    the paging parameters (and as many clients send a first page), is the first page of
    100. Only an empty value is dropped; any other value is checked as before."""
    query: bytes = scope.get("query_string", b"")
    if not query:
        return scope
    parts = query.split(b"&")
    kept = [part for part in parts if part.partition(b"=")[2]]
    if len(kept) == len(parts):
        return scope
    return {**scope, "query_string": b"&".join(kept)}


def _request_id(scope: Scope) -> str:
    """The caller's X-MGP-REQ-ID when it is short and printable, else a new UUID."""
    for name, value in scope.get("headers", ()):
        if name == b"x-mgp-req-id":
            text: str = value.decode("latin-1").strip()
            if 0 < len(text) <= REQUEST_ID_CHARS_MAX and text.isprintable() and text.isascii():
                return text
            break
    return str(uuid.uuid4())


# ------------------------------------------------------------------ parameters

MinSequence = Annotated[
    int | None,
    Query(
        description="Read-your-writes: wait (bounded) until the views reflect this sequence "
        "(the `sequence` of a command result); else 503 / 1001 with Retry-After",
        examples=[1234],
    ),
]
Cursor = Annotated[
    str | None, Query(description="`nextCursor` of the previous page", examples=["czEyMzQ"])
]
AgentCode = Annotated[str, Path(description="The agent's code", examples=["CASINO_1"])]
UserCode = Annotated[int, Path(description="The player's userCode", examples=[1001])]
Limit = Annotated[
    int | None,
    Query(description=f"Items per page, 1 to {PAGE_ITEMS_MAX} (default {PAGE_ITEMS_DEFAULT})"),
]


def _min_sequence(value: int | None) -> int | None:
    if value is not None and value < 0:
        raise ApiError(Code.PARAMETERS_INVALID, "minSequence must not be negative")
    return value


def _limit(value: int | None) -> int:
    if value is None:
        return PAGE_ITEMS_DEFAULT
    if not 1 <= value <= PAGE_ITEMS_MAX:
        raise ApiError(Code.PARAMETERS_INVALID, f"limit must be 1 to {PAGE_ITEMS_MAX}")
    return value


def _encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None, prefix: str) -> str | None:
    """The key inside a cursor made by `_encode_cursor(prefix + key)`; 1012 if foreign."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith(prefix) or len(text) > 128:
        raise ApiError(Code.PARAMETERS_INVALID, "cursor is not valid")
    return text[len(prefix) :]


def _sequence_cursor(cursor: str | None) -> int:
    key = _decode_cursor(cursor, "s")
    if key is None:
        return 0
    if not (key.isascii() and key.isdigit() and len(key) <= 18):
        raise ApiError(Code.PARAMETERS_INVALID, "cursor is not valid")
    return int(key)


def _day(text: str | None, default: date) -> date:
    if text is None:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(
            Code.PARAMETERS_INVALID, f"{text[:20]!r} is not a date (YYYY-MM-DD)"
        ) from None


# ------------------------------------------------------------------ bodies


def _ok(model: BaseModel) -> Response:
    return envelope(Code.OK, "OK", dump(model))


def _money(amount_minor: int | None, currency: str) -> str | None:
    return None if amount_minor is None else format_minor(amount_minor, currency_exponent(currency))


def _agent_data(agent: AgentRecord, position: int | None) -> AgentData:
    return AgentData(
        code=agent.code,
        name=agent.name,
        parentCode=agent.parent_code,
        currency=agent.currency,
        mode=agent.mode,
        balance=format_minor(agent.points_minor, currency_exponent(agent.currency)),
        house=format_minor(agent.house_minor, currency_exponent(agent.currency)),
        userCount=agent.user_count,
        asOfSequence=position,
    )


def _item(row: HistoryRow, currency: str) -> TransactionItem:
    return TransactionItem(
        transId=str(row.trans_id),
        sequence=row.sequence,
        type=row.type,
        transType=row.trans_type,
        txnId=row.txn_id,
        roundId=row.round_id,
        userCode=row.user_code,
        amount=format_minor(row.amount_minor, currency_exponent(currency)),
        balanceBefore=_money(row.balance_before_minor, currency),
        balanceAfter=_money(row.balance_after_minor, currency),
        createdAtMs=row.created_at_ms,
    )


def _history_page(rows: list[HistoryRow], limit: int, currency: str, position: int) -> Response:
    more = len(rows) > limit
    rows = rows[:limit]
    return _ok(
        TransactionPage(
            items=[_item(row, currency) for row in rows],
            nextCursor=_encode_cursor(f"s{rows[-1].sequence}") if more else None,
            asOfSequence=position,
        )
    )


def _agent_missing() -> ApiError:
    return ApiError(Code.AGENT_NOT_FOUND, "agent not found")


def _user_missing() -> ApiError:
    return ApiError(Code.USER_NOT_FOUND, "user not found")


# ------------------------------------------------------------------ the app

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorEnvelope, "description": "1002 VALIDATION_ERROR, 1012 PARAMETERS_INVALID"},
    401: {"model": ErrorEnvelope, "description": "1007 TOKEN_NOT_FOUND, 1009 TOKEN_INVALID"},
    403: {"model": ErrorEnvelope, "description": "1020 IP_NOT_ALLOWED"},
    404: {
        "model": ErrorEnvelope,
        "description": "2001 AGENT_NOT_FOUND / 2002 USER_NOT_FOUND: also for anything "
        "outside the token's subtree",
    },
    429: {"model": ErrorEnvelope, "description": "1018 SERVER_IS_BUSY: 50 requests in flight"},
    503: {
        "model": ErrorEnvelope,
        "description": "1001: minSequence not reached in time, or the store is unavailable; "
        "see Retry-After",
    },
}


def create_app(settings: Settings) -> FastAPI:
    """The API over the views of `settings` (DATABASE_URL, DATABASE_SCHEMA, VIEWS_SCHEMA)."""
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Ledger read-model API",
        version="1",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        # `/v1/agents/BR/` is an unknown path (1002, the envelope), not a bodiless 307
        # that Starlette's router sends before any handler of ours could answer.
        redirect_slashes=False,
    )
    app.state.runtime = runtime
    _add_error_handlers(app)
    _add_routes(app, runtime)
    app.add_middleware(
        Gate,
        pool=lambda: runtime.pool,
        schema=runtime.views_schema,
        limiter=runtime.limiter,
        on_busy=runtime.metrics.busy.inc,
    )
    app.add_middleware(Stamp, metrics=runtime.metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _add_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return error_response(error)

    async def on_invalid(_: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        where = ", ".join(
            ".".join(str(part) for part in item.get("loc", ())[1:]) for item in error.errors()
        )
        return envelope(Code.VALIDATION_ERROR, f"ill-typed or missing: {where}", {})

    async def on_http(_: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        return envelope(Code.VALIDATION_ERROR, f"no such endpoint ({error.status_code})", {})

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated document, plus the bearer scheme and the request-id header."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    document.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "`ledger tokens create`"}
    }
    request_id = {
        "name": "X-MGP-REQ-ID",
        "in": "header",
        "required": False,
        "description": "Echoed on the response; generated when absent",
        "schema": {"type": "string"},
        "example": "3f1c2a4e-0c1b-4f7e-9a51-0d2f7c9b1e22",
    }
    for path, operations in document["paths"].items():
        for operation in operations.values():
            operation.setdefault("parameters", []).append(request_id)
            if path.startswith("/v1/"):
                operation["security"] = [{"bearer": []}]
    app.openapi_schema = document
    return document


def _caller(request: Request) -> Caller:
    caller = request.scope[CALLER_KEY]
    assert isinstance(caller, Caller)
    return caller


def _add_routes(app: FastAPI, rt: Runtime) -> None:
    _add_agent_routes(app, rt)
    _add_user_routes(app, rt)
    _add_audit_routes(app, rt)
    _add_service_routes(app, rt)


def _add_agent_routes(app: FastAPI, rt: Runtime) -> None:
    @app.get(
        "/v1/agents/{agentCode}",
        response_model=Envelope[AgentData],
        responses=_ERRORS,
        summary="An agent: points, house (GGR), userCount",
    )
    async def get_agent(
        request: Request, agentCode: AgentCode, minSequence: MinSequence = None
    ) -> Response:
        caller = _caller(request)
        async with rt.read(_min_sequence(minSequence)) as (conn, position):
            agent = await rt.q.find_agent(conn, agentCode, caller.agent_code)
        if agent is None:
            raise _agent_missing()
        return _ok(_agent_data(agent, position))

    @app.get(
        "/v1/agents/{agentCode}/children",
        response_model=Envelope[ChildrenData],
        responses=_ERRORS,
        summary="Direct children of an agent, with their balances (by code, paginated)",
    )
    async def get_children(
        request: Request,
        agentCode: AgentCode,
        cursor: Cursor = None,
        limit: Limit = None,
        minSequence: MinSequence = None,
    ) -> Response:
        caller, page_limit = _caller(request), _limit(limit)
        after = _decode_cursor(cursor, "c") or ""
        if after and not AGENT_CODE.fullmatch(after):
            raise ApiError(Code.PARAMETERS_INVALID, "cursor is not valid")
        async with rt.read(_min_sequence(minSequence)) as (conn, position):
            if await rt.q.find_agent(conn, agentCode, caller.agent_code) is None:
                raise _agent_missing()
            children = await rt.q.find_children(conn, agentCode, after, page_limit + 1)
        more = len(children) > page_limit
        children = children[:page_limit]
        return _ok(
            ChildrenData(
                items=[_agent_data(child, None) for child in children],
                nextCursor=_encode_cursor(f"c{children[-1].code}") if more else None,
                asOfSequence=position,
            )
        )

    @app.get(
        "/v1/agents/{agentCode}/transactions",
        response_model=Envelope[TransactionPage],
        responses=_ERRORS,
        summary="The agent's history, oldest first, with its points before and after",
    )
    async def get_agent_transactions(
        request: Request,
        agentCode: AgentCode,
        cursor: Cursor = None,
        limit: Limit = None,
        from_: Annotated[int | None, Query(alias="from", description="Epoch ms, inclusive")] = None,
        to: Annotated[int | None, Query(description="Epoch ms, exclusive")] = None,
        minSequence: MinSequence = None,
    ) -> Response:
        caller, page_limit, after = _caller(request), _limit(limit), _sequence_cursor(cursor)
        window = (0 if from_ is None else from_, TIME_MAX_MS if to is None else to)
        if window[0] < 0 or window[0] > window[1]:
            raise ApiError(Code.PARAMETERS_INVALID, "from must be >= 0 and not after to")
        async with rt.read(_min_sequence(minSequence)) as (conn, position):
            agent = await rt.q.find_agent(conn, agentCode, caller.agent_code)
            if agent is None:
                raise _agent_missing()
            owner = f"agent:{agent.code}"
            rows = await rt.q.find_history(conn, owner, after, window, page_limit + 1)
        return _history_page(rows, page_limit, agent.currency, position)

    @app.get(
        "/v1/agents/{agentCode}/ggr",
        response_model=Envelope[GgrData],
        responses=_ERRORS,
        summary="Daily GGR (UTC days): bets, wins, refunds, ggr = bets - wins - refunds",
    )
    async def get_ggr(
        request: Request,
        agentCode: AgentCode,
        from_: Annotated[
            str | None, Query(alias="from", description="First UTC day, YYYY-MM-DD, inclusive")
        ] = None,
        to: Annotated[str | None, Query(description="Last UTC day, inclusive")] = None,
        minSequence: MinSequence = None,
    ) -> Response:
        caller = _caller(request)
        days = (_day(from_, date.min), _day(to, date.max))
        if days[0] > days[1]:  # as the history's window: an inverted range is the caller's
            raise ApiError(Code.PARAMETERS_INVALID, "from must not be after to")
        async with rt.read(_min_sequence(minSequence)) as (conn, position):
            agent = await rt.q.find_agent(conn, agentCode, caller.agent_code)
            if agent is None:
                raise _agent_missing()
            rows = await rt.q.find_ggr(conn, agent.code, days, GGR_DAYS_MAX + 1)
        if len(rows) > GGR_DAYS_MAX:
            raise ApiError(Code.PARAMETERS_INVALID, f"more than {GGR_DAYS_MAX} days: narrow it")
        return _ok(_ggr_data(agent, rows, position))


def _ggr_data(agent: AgentRecord, rows: list[Any], position: int) -> GgrData:
    exponent = currency_exponent(agent.currency)
    items = []
    for day, bets, wins, refunds in rows:
        bets, wins, refunds = int(bets), int(wins), int(refunds)
        items.append(
            GgrDay(
                date=day.isoformat(),
                bets=format_minor(bets, exponent),
                wins=format_minor(wins, exponent),
                refunds=format_minor(refunds, exponent),
                ggr=format_minor(bets - wins - refunds, exponent),
            )
        )
    return GgrData(
        agentCode=agent.code, currency=agent.currency, items=items, asOfSequence=position
    )


def _add_user_routes(app: FastAPI, rt: Runtime) -> None:
    @app.get(
        "/v1/users/{userCode}",
        response_model=Envelope[UserData],
        responses=_ERRORS,
        summary="A player (balance in transfer mode only)",
    )
    async def get_user(
        request: Request, userCode: UserCode, minSequence: MinSequence = None
    ) -> Response:
        caller = _caller(request)
        async with rt.read(_min_sequence(minSequence)) as (conn, position):
            user = await rt.q.find_user(conn, userCode, caller.agent_code)
        if user is None:
            raise _user_missing()
        return _ok(
            UserData(
                userCode=user.user_code,
                name=user.name,
                agentCode=user.agent_code,
                currency=user.currency,
                balance=_money(user.balance_minor, user.currency),
                asOfSequence=position,
            )
        )

    @app.get(
        "/v1/users/{userCode}/transactions",
        response_model=Envelope[TransactionPage],
        responses=_ERRORS,
        summary="The player's history, oldest first (balances absent in seamless mode)",
    )
    async def get_user_transactions(
        request: Request,
        userCode: UserCode,
        cursor: Cursor = None,
        limit: Limit = None,
        minSequence: MinSequence = None,
    ) -> Response:
        caller, page_limit, after = _caller(request), _limit(limit), _sequence_cursor(cursor)
        async with rt.read(_min_sequence(minSequence)) as (conn, position):
            user = await rt.q.find_user(conn, userCode, caller.agent_code)
            if user is None:
                raise _user_missing()
            owner = f"player:{user.user_code}"
            rows = await rt.q.find_history(conn, owner, after, (0, TIME_MAX_MS), page_limit + 1)
        return _history_page(rows, page_limit, user.currency, position)


def _add_audit_routes(app: FastAPI, rt: Runtime) -> None:
    @app.get(
        "/v1/balances/{account}",
        response_model=Envelope[BalanceData],
        responses=_ERRORS,
        summary="Point-in-time balance of an account, read from the event store",
        description="`account` is `agent:<code>`, `house:<code>` or `player:<userCode>`. "
        "`asOf` below 10^12 is a sequence, from 10^12 on epoch milliseconds; absent: now. "
        "The views index where each balance changed; the balance itself is read from the "
        "stored event that set it. The request waits (as for minSequence) until the views "
        "have reached every event the store holds up to that point, else 1001. "
        "The `issuance` accounts are shared by every broker of a "
        "currency and are answered like an unknown agent.",
    )
    async def get_balance(
        request: Request,
        account: Annotated[str, Path(examples=["player:1001"])],
        asOf: Annotated[
            int | None, Query(description="Sequence (< 10^12) or epoch ms", examples=[1234])
        ] = None,
        minSequence: MinSequence = None,
    ) -> Response:
        caller = _caller(request)
        if asOf is not None and asOf < 0:
            raise ApiError(Code.PARAMETERS_INVALID, "asOf must not be negative")
        kind, _, name = account.partition(":")
        if kind not in ("agent", "house", "player"):
            raise _agent_missing()
        if kind == "player" and not (name.isascii() and name.isdigit() and len(name) <= 18):
            raise _user_missing()
        wanted = _min_sequence(minSequence) or 0
        async with rt.pool.connection() as conn:
            stored = await rt.q.store_position(conn)
        # From the event store: every event the store holds up to the point asked for
        # (`asOf` as a sequence, else all of it now) counts, so the views that locate
        # the balance must have reached it (bounded like minSequence, else 1001).
        reach = min(asOf, stored) if asOf is not None and asOf < ASOF_EPOCH_MS_MIN else stored
        async with rt.read(max(wanted, reach) or None) as (conn, position):
            data = await _balance(rt, conn, caller, (kind, name), asOf, position)
        return _ok(data)


async def _balance(
    rt: Runtime,
    conn: AsyncConnection[Any],
    caller: Caller,
    account: tuple[str, str],
    as_of: int | None,
    position: int,
) -> BalanceData:
    kind, name = account
    if kind == "player":
        user = await rt.q.find_user(conn, int(name), caller.agent_code)
        if user is None:
            raise _user_missing()
        currency, seamless = user.currency, user.mode != "transfer"
        name = str(user.user_code)
    else:
        agent = await rt.q.find_agent(conn, name, caller.agent_code)
        if agent is None:
            raise _agent_missing()
        currency, seamless = agent.currency, False
    account_name = f"{kind}:{name}"
    sequence_max, time_max = position, None
    if as_of is not None and as_of < ASOF_EPOCH_MS_MIN:
        sequence_max = min(as_of, position)
    elif as_of is not None:
        time_max = as_of
    sequence = (
        None if seamless else await rt.q.last_change(conn, account_name, sequence_max, time_max)
    )
    balance_minor = None if seamless else 0
    if sequence is not None:
        event = rt.decode(await rt.q.stored_event(conn, sequence))
        balance_minor = event.balances[account_name]
    return BalanceData(
        account=account_name,
        currency=currency,
        balance=_money(balance_minor, currency),
        sequence=sequence,
        asOfSequence=sequence_max,
    )


def _add_service_routes(app: FastAPI, rt: Runtime) -> None:
    @app.get("/health", response_model=Envelope[HealthData], summary="Liveness and freshness")
    async def health() -> Response:
        async with rt.pool.connection() as conn:
            projection = await rt.q.view_position(conn)
            store = await rt.q.store_position(conn)
        return _ok(HealthData(status="ok", projectionPosition=projection, storePosition=store))

    @app.get("/metrics", summary="Prometheus metrics (text format)")
    async def metrics() -> Response:
        try:
            async with rt.pool.connection() as conn:
                rt.metrics.projection_position.set(await rt.q.view_position(conn))
                rt.metrics.store_position.set(await rt.q.store_position(conn))
        except psycopg.Error:
            log.warning("metrics: the database did not answer")
        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)
