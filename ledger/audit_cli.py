"""`ledger audit ...`: the auditor's commands over the event store.

Other layers add checks that need the event pass's figures to `REPORT_CHECKS` (the read
side compares its views with the recomputed balances); `ledger/cli.py` registers them,
so that ledger/ imports nothing of theirs.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ledger.application import Ledger
from ledger.audit import AuditReport, parse_anchor, verify
from ledger.settings import Settings, store_env

__all__ = ["REPORT_CHECKS", "ReportCheck", "audit_app"]

# A check run after the event pass: it reads the report (the recomputed balances are as
# of `report.last_sequence`), prints what it did, and returns its findings as text.
ReportCheck = Callable[[AuditReport, Settings, Console], list[str]]
REPORT_CHECKS: list[ReportCheck] = []

audit_app = typer.Typer(help="Verify the event store.", no_args_is_help=True)


@audit_app.command("verify")
def verify_command(
    checks: Annotated[
        bool,
        typer.Option(
            "--views/--no-views",
            help="Then compare the read model's balances with the recomputed ones.",
        ),
    ] = True,
    anchor: Annotated[
        list[str] | None,
        typer.Option(
            "--anchor",
            help="A seal kept outside the store, WRITER:VERSION:HASH as the ledger logs it "
            "('seal anchor'); it must be in the store with that hash. Repeatable.",
        ),
    ] = None,
) -> None:
    """Stream the whole store once and check every hash, seal, posting, claimed
    balance and request, then compare the read model's balances with the recomputed
    ones; exit 1 naming every event and every view row that is wrong."""
    try:
        anchors = [parse_anchor(text) for text in anchor or []]
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--anchor") from error
    settings = Settings()
    console = Console(stderr=True)
    ledger = Ledger(store_env(settings.database_url, settings.database_schema, 2))
    try:
        total = ledger.recorder.max_notification_id() or 0
        started = time.perf_counter()
        with Progress(
            TextColumn("verifying"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} events"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("verify", total=total)
            report = verify(
                ledger.recorder,
                ledger.mapper.transcoder,
                progress=lambda done: progress.update(task, completed=done),
                anchors=anchors,
            )
            progress.update(task, completed=report.events)
        elapsed = time.perf_counter() - started
    finally:
        ledger.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = Table(title="audit verify")
    table.add_column("what")
    table.add_column("value", justify="right")
    for what, value in (
        ("events", f"{report.events:,}"),
        ("commands", f"{report.commands:,}"),
        ("seals (transactions)", f"{report.seals:,}"),
        ("streams", f"{report.streams:,}"),
        ("accounts", f"{report.accounts:,}"),
        (
            "sum per currency",
            ", ".join(f"{c} {t}" for c, t in sorted(report.totals_by_currency.items())) or "-",
        ),
        ("speed", f"{report.events / elapsed:,.0f} events/s" if elapsed else "-"),
        ("peak memory", f"{peak_mb:,.0f} MiB"),
        ("anchors checked", str(len(anchors))),
        ("findings", str(len(report.findings))),
    ):
        table.add_row(what, value)
    Console().print(table)
    for finding in report.findings:
        Console().print(
            f"[red]sequence {finding.sequence}[/red] stream {finding.stream}: {finding.what}"
        )
    problems = [
        problem
        for check in (REPORT_CHECKS if checks else [])
        for problem in check(report, settings, Console())
    ]
    for problem in problems:
        Console().print(f"[red]{problem}[/red]")
    if not report.ok or problems:
        raise typer.Exit(1)
