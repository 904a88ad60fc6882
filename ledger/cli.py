"""`ledger`: the service's command line (typer).

ledger run        the whole service: Kafka consumer, projector and HTTP API
ledger project    the projector alone; `ledger serve` the HTTP API alone
ledger tokens ... / ledger agents ...   API tokens and IP allow lists
"""

from __future__ import annotations

import asyncio
import logging

import typer

from ledger.application import Ledger
from ledger.settings import Settings, store_env

__all__ = ["app"]

app = typer.Typer(
    help="Event-sourced transaction ledger for casino platforms.", no_args_is_help=True
)


@app.callback()
def main() -> None:
    """Event-sourced transaction ledger for casino platforms."""


@app.command()
def run() -> None:
    """Run the ledger service in the foreground: consume commands, answer results, and
    keep the read side (projector and HTTP API on 127.0.0.1:API_PORT) beside it."""
    from consumers.app import build_app
    from projections.cli import ReadSide

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    ledger = Ledger(
        store_env(settings.database_url, settings.database_schema, settings.database_pool_size)
    )
    read_side = ReadSide(settings)
    try:
        read_side.start()
        asyncio.run(build_app(settings, ledger).run())
    finally:
        read_side.stop()
        ledger.close()


def _register_read_side() -> None:
    from projections.cli import agents_app, project, serve, tokens_app

    app.command("project")(project)
    app.command("serve")(serve)
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(agents_app, name="agents")


_register_read_side()


def _register_audit() -> None:
    from ledger.audit_cli import audit_app

    app.add_typer(audit_app, name="audit")


_register_audit()


def _register_read_side_audit() -> None:
    # Replay, point-in-time balances and statements read the views; the views' side of
    # `ledger audit verify` is a check the read side adds (ledger/ imports none of it).
    from ledger.audit_cli import REPORT_CHECKS
    from projections.audit_cli import balance, check_views, replay_command, statement

    app.command("replay")(replay_command)
    app.command("balance")(balance)
    app.command("statement")(statement)
    REPORT_CHECKS.append(check_views)


_register_read_side_audit()


def _register_simulate() -> None:
    # The simulator is a Kafka producer: it lives outside the core, in bench/.
    from bench.simulate_cli import simulate

    app.command("simulate")(simulate)


_register_simulate()

if __name__ == "__main__":
    app()
