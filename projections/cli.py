"""Command line of the read side (registered in `ledger/cli.py`):

    ledger project [--rebuild] [--once]     run the projector (catch up, then follow)
    ledger serve                            run the HTTP API on 127.0.0.1:API_PORT
    ledger tokens create --agent CODE       print a new API token (shown only this once)
    ledger tokens revoke ID_OR_TOKEN        revoke a token
    ledger tokens list [--agent CODE]       token ids, agents, dates (never the secrets)
    ledger agents allow-ip CODE IP          add an IP or CIDR network to an agent's allow list
    ledger agents disallow-ip CODE IP       remove one (an empty list allows any IP)
    ledger agents ips CODE                  show the list

`ReadSide` runs the projector and the API beside the Kafka consumer in `ledger run`, in a
child process of their own.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import socket
import sys
import threading
from typing import Annotated, Any

import psycopg
import typer
import uvicorn

from ledger.application import Ledger
from ledger.book import AgentBook
from ledger.settings import Settings, store_env
from ledger.store import queries_for
from projections.api import create_app
from projections.security import (
    allow_ip,
    allowed_ips,
    create_token,
    disallow_ip,
    ensure_security_tables,
    list_tokens,
    parse_network,
    revoke_token,
)
from projections.views import ProjectionError, Projector

__all__ = [
    "API_HOST",
    "ReadSide",
    "ReadSideThreads",
    "agents_app",
    "api_server",
    "project",
    "serve",
    "tokens_app",
]

log = logging.getLogger("ledger.read_side")

# The API listens on the loopback interface only; a reverse proxy publishes it.
API_HOST = "127.0.0.1"
STOP_SECONDS_MAX = 10.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

tokens_app = typer.Typer(help="API tokens: create, revoke, list.", no_args_is_help=True)
agents_app = typer.Typer(help="Per-agent API settings (IP allow lists).", no_args_is_help=True)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def _ledger(settings: Settings) -> Ledger:
    return Ledger(store_env(settings.database_url, settings.database_schema, pool_size=1))


def projector_for(settings: Settings, ledger: Ledger) -> Projector:
    return Projector(
        settings.database_url, ledger, settings.views_schema_name, settings.projection_page_events
    )


def project(
    rebuild: Annotated[
        bool, typer.Option(help="Drop the views and rebuild them from zero.")
    ] = False,
    once: Annotated[bool, typer.Option(help="Catch up with the store, then exit.")] = False,
) -> None:
    """Run the projector: build the views from the event store, exactly once, and follow it."""
    _logging()
    settings = Settings()
    ledger = _ledger(settings)
    try:
        projector = projector_for(settings, ledger)
        if rebuild:
            projector.rebuild()
        if once:
            position = projector.catch_up()
            typer.echo(f"views at sequence {position}")
            return
        # SIGINT and SIGTERM ask the loop to stop between pages (it looks at least every
        # LISTEN_WAIT_SECONDS), rather than raising KeyboardInterrupt wherever the
        # projector happens to be: in the middle of a PostgreSQL exchange or a lock, that
        # left a `ledger project` still running 10 s after its SIGINT (a CI run of
        # tests/integration/test_projections.py).
        stop = threading.Event()
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda *_: stop.set())
        projector.run_forever(stop)
    finally:
        ledger.close()


def api_server(settings: Settings, app: Any | None = None) -> uvicorn.Server:
    """A uvicorn server for the API on 127.0.0.1:API_PORT (proxy headers are not trusted)."""
    config = uvicorn.Config(
        app if app is not None else create_app(settings),
        host=API_HOST,
        port=settings.api_port,
        proxy_headers=False,
        server_header=False,
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


def serve() -> None:
    """Run the HTTP query API on 127.0.0.1:API_PORT."""
    _logging()
    settings = Settings()
    if settings.api_port == 0:
        raise typer.BadParameter("API_PORT is 0: the API is turned off")
    api_server(settings).run()


class ReadSide:
    """The projector and the API beside `ledger run`'s consumer, in a child process.

    The consumer's process is bound by Python's GIL: the projector and the API threads
    took a quarter of it (bench/profile.py). In a process of their own they run on the
    other core. The child dies with its parent (PR_SET_PDEATHSIG, SIGKILL: a kill -9 of
    the service leaves no projector behind holding the API port; the projector's
    transactions are atomic, so a kill loses nothing).

    The read side must never take the write path down: a port already in use or a
    projector error is logged in the child, and the consumer keeps running.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> None:
        if not (self.settings.projector_enabled or self.settings.api_port):
            return
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(
            target=_read_side_main,
            args=(self.settings, os.getpid()),
            name="ledger-read-side",
            daemon=True,
        )
        self.process.start()

    def stop(self) -> None:
        process = self.process
        if process is None or process.pid is None:
            return
        if process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
        process.join(timeout=STOP_SECONDS_MAX)
        if process.is_alive():
            log.error("the read side did not stop in %ss: killed", STOP_SECONDS_MAX)
            process.kill()
            process.join(timeout=STOP_SECONDS_MAX)


def _read_side_main(settings: Settings, parent_pid: int) -> None:
    """The read side's process: its threads until SIGTERM or SIGINT (or its parent dies)."""
    _die_with_parent(parent_pid)
    _logging()
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    threads = ReadSideThreads(settings)
    try:
        threads.start()
        stop.wait()
    finally:
        threads.stop()


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            log.error("prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())
    if os.getppid() != parent_pid:
        os._exit(0)


class ReadSideThreads:
    """The projector and the API as threads of the read side's process.

    A port already in use or a projector error is logged; the other part keeps running.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop_projector = threading.Event()
        self.threads: list[threading.Thread] = []
        self.server: uvicorn.Server | None = None
        self.ledger: Ledger | None = None

    def start(self) -> None:
        if self.settings.projector_enabled:
            self.ledger = _ledger(self.settings)
            projector = projector_for(self.settings, self.ledger)
            self._thread("projector", lambda: self._project(projector))
        if self.settings.api_port:
            # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets
            # that say so, and without it every keep-alive response waits ~40 ms for an ACK.
            listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listening.bind((API_HOST, self.settings.api_port))
            except OSError as error:
                listening.close()
                log.error("API not started: %s:%s %s", API_HOST, self.settings.api_port, error)
                return
            server = self.server = api_server(self.settings)
            self._thread("api", lambda: server.run(sockets=[listening]))
            log.warning("API listening on http://%s:%s", API_HOST, self.settings.api_port)

    def _thread(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=f"ledger-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def _project(self, projector: Projector) -> None:
        try:
            projector.run_forever(self.stop_projector)
        except ProjectionError:
            log.exception("the projector stopped; the views are no longer updated")

    def stop(self) -> None:
        self.stop_projector.set()
        if self.server is not None:
            self.server.should_exit = True
        for thread in self.threads:
            thread.join(timeout=STOP_SECONDS_MAX)
        if self.ledger is not None:
            self.ledger.close()


# ------------------------------------------------------------------ administration


def _admin(settings: Settings) -> psycopg.Connection[Any]:
    conn = psycopg.connect(
        settings.database_url,
        autocommit=True,
        connect_timeout=10,
        application_name="ledger-admin",
    )
    ensure_security_tables(conn, settings.views_schema_name)
    return conn


def _require_agent(settings: Settings, code: str) -> None:
    """Exit with an error unless the agent exists in the event store."""
    ledger = _ledger(settings)
    try:
        found = queries_for(ledger.recorder).first_events([AgentBook.create_id(code)])
    finally:
        ledger.close()
    if not found:
        typer.echo(f"agent {code!r} does not exist", err=True)
        raise typer.Exit(code=1)


AgentOption = Annotated[str, typer.Option("--agent", help="The agent the token belongs to.")]


@tokens_app.command("create")
def tokens_create(
    agent: AgentOption,
    label: Annotated[str | None, typer.Option(help="A note for whoever reads the list.")] = None,
) -> None:
    """Create a token for an agent and print it (stdout) — the only time it is shown."""
    settings = Settings()
    _require_agent(settings, agent)
    with _admin(settings) as conn:
        token, token_id = create_token(conn, settings.views_schema_name, agent, label)
    typer.echo(token)
    typer.echo(
        f"token id {token_id} for agent {agent}; revoke: ledger tokens revoke {token_id}", err=True
    )


@tokens_app.command("revoke")
def tokens_revoke(
    id_or_token: Annotated[str, typer.Argument(help="The token id (tok_...) or the token.")],
) -> None:
    """Revoke a token: from now on it is answered TOKEN_INVALID."""
    settings = Settings()
    with _admin(settings) as conn:
        revoked = revoke_token(conn, settings.views_schema_name, id_or_token)
    if not revoked:
        typer.echo("no such token", err=True)
        raise typer.Exit(code=1)
    typer.echo("revoked")


@tokens_app.command("list")
def tokens_list(
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's.")] = None,
) -> None:
    """List tokens (ids, agents, dates; never the secrets)."""
    settings = Settings()
    with _admin(settings) as conn:
        for info in list_tokens(conn, settings.views_schema_name, agent):
            revoked = (
                f"revoked {info.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if info.revoked_at else "active"
            )
            typer.echo(
                f"{info.token_id}\t{info.agent_code}\t{info.created_at:%Y-%m-%dT%H:%M:%SZ}"
                f"\t{revoked}\t{info.label or ''}"
            )


def _network(text: str) -> str:
    try:
        return str(parse_network(text))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an IP address or CIDR network") from None


@agents_app.command("allow-ip")
def agents_allow_ip(
    code: Annotated[str, typer.Argument(help="The agent's code.")],
    ip: Annotated[str, typer.Argument(help="An IP address or a CIDR network.")],
) -> None:
    """Allow an IP (or network) to use the agent's tokens; the first entry closes all others."""
    settings = Settings()
    network = _network(ip)
    _require_agent(settings, code)
    with _admin(settings) as conn:
        added = allow_ip(conn, settings.views_schema_name, code, network)
    typer.echo(f"{'allowed' if added else 'already allowed'}: {network} for {code}")


@agents_app.command("disallow-ip")
def agents_disallow_ip(
    code: Annotated[str, typer.Argument(help="The agent's code.")],
    ip: Annotated[str, typer.Argument(help="An entry of the allow list.")],
) -> None:
    """Remove an entry from the agent's allow list (an empty list allows any IP)."""
    settings = Settings()
    network = _network(ip)
    with _admin(settings) as conn:
        removed = disallow_ip(conn, settings.views_schema_name, code, network)
    if not removed:
        typer.echo(f"{network} is not in {code}'s allow list", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"removed: {network} for {code}")


@agents_app.command("ips")
def agents_ips(code: Annotated[str, typer.Argument(help="The agent's code.")]) -> None:
    """Show the agent's allow list (empty: any IP)."""
    settings = Settings()
    with _admin(settings) as conn:
        networks = allowed_ips(conn, settings.views_schema_name, code)
    typer.echo("\n".join(networks) if networks else "(empty: any IP is allowed)")
