"""`ledger`: the service's command line (typer)."""

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
    """Run the ledger service in the foreground: consume commands, answer results."""
    from consumers.app import build_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    ledger = Ledger(
        store_env(settings.database_url, settings.database_schema, settings.database_pool_size)
    )
    try:
        asyncio.run(build_app(settings, ledger).run())
    finally:
        ledger.close()


if __name__ == "__main__":
    app()
