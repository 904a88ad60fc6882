"""The auditor's commands over the read side (registered in `ledger/cli.py`):

    ledger replay --projection NAME|all        rebuild views from zero, swap them in atomically
    ledger balance ACCOUNT [--as-of POINT]     a balance at a sequence or time, from the store
    ledger statement --agent CODE [--user N] [--from POINT] [--to POINT] [--format F]

and `check_views`, the read side's part of `ledger audit verify`: the views' balances
against the balances the audit recomputed from the events.

POINT is a sequence (`1234`) or an ISO 8601 time (`2025-01-31T12:00:00Z`, a date is its
midnight, no offset is UTC); see `projections/statements.py` for how each is read.
"""

from __future__ import annotations

import csv
import sys
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

import orjson
import psycopg
import typer
from eventsourcing.persistence import StoredEvent
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ledger.application import Ledger
from ledger.audit import AuditReport
from ledger.money import currency_exponent, format_minor
from ledger.settings import Settings, store_env
from projections.bounds import AUDIT_VIEWS_WAIT_SECONDS
from projections.queries import HistoryRow
from projections.reconcile import compare_views, wait_for_views
from projections.replay import ReplayError, projection_names, replay
from projections.statements import (
    AuditReads,
    Point,
    PointInTime,
    Statement,
    StatementError,
    change_of,
    parse_point,
)
from projections.views import EPOCH, ProjectionError
from schemas.api import BalanceData, dump
from schemas.statement import (
    STATEMENT_CSV_COLUMNS,
    StatementData,
    StatementEntry,
    StatementTotal,
)

__all__ = ["StatementFormat", "balance", "check_views", "replay_command", "statement"]


class StatementFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _ledger(settings: Settings) -> Ledger:
    return Ledger(store_env(settings.database_url, settings.database_schema, pool_size=1))


def _reads(settings: Settings, ledger: Ledger) -> AuditReads:
    recorder: Any = ledger.recorder

    def decode(row: Any) -> Any:
        return ledger.mapper.to_domain_event(StoredEvent(*row))

    return AuditReads(
        settings.views_schema_name, recorder.datastore.schema, recorder.events_table_name, decode
    )


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[red]{message}[/red]")
    return typer.Exit(1)


# ------------------------------------------------------------------ audit verify


def check_views(report: AuditReport, settings: Settings, console: Console) -> list[str]:
    """Compare the views with the audit's balances (as of `report.last_sequence`).

    Views behind that sequence get AUDIT_VIEWS_WAIT_SECONDS to catch up (a running
    projector does); if they do not, they are reported behind and not compared, which
    is not a finding. Returns one line per view row that differs, and per event the
    views name that the store no longer holds (see projections/reconcile.py).
    """
    views_schema, target = settings.views_schema_name, report.last_sequence
    if settings.database_url == "memory":
        return []  # an in-memory store has no read side
    try:
        position = wait_for_views(settings.database_url, views_schema, target, 0)
        if position < target:
            console.print(f"views at sequence {position}: waiting for sequence {target}")
            position = wait_for_views(
                settings.database_url, views_schema, target, AUDIT_VIEWS_WAIT_SECONDS
            )
    except psycopg.errors.UndefinedTable:
        console.print(f"[yellow]no views in schema {views_schema!r}: not compared[/yellow]")
        return []
    ledger = _ledger(settings)
    try:
        result = compare_views(settings.database_url, views_schema, ledger, report.balances, target)
    finally:
        ledger.close()
    lines = [f"{f.table} {f.key}: {f.what}" for f in result.findings]
    if result.behind:
        console.print(f"[yellow]views behind by {result.behind:,} events, not compared[/yellow]")
        return lines  # what the views witness (events gone from the store) still counts
    skipped = (
        f"; {result.skipped:,} accounts changed after sequence {target} skipped"
        if result.skipped
        else ""
    )
    console.print(
        f"views ({views_schema} at sequence {result.position}): {result.agents:,} agents and "
        f"{result.users:,} players compared with the events{skipped}; "
        f"findings: {result.mismatches}"
    )
    if result.mismatches > len(result.findings):
        lines.append(f"... and {result.mismatches - len(result.findings)} more")
    return lines


# ------------------------------------------------------------------ replay


def replay_command(
    projection: Annotated[
        str,
        typer.Option(
            "--projection",
            help="The projection to rebuild: `ledger` (every view table: the projector "
            "applies them together) or `all`.",
        ),
    ],
) -> None:
    """Rebuild read models from the event store into fresh tables and swap them in
    atomically, while the API keeps serving; tokens and IP allow lists are kept."""
    try:
        names = projection_names(projection)
    except ReplayError as error:
        raise _fail(str(error)) from None
    settings = Settings()
    console = Console(stderr=True)
    ledger = _ledger(settings)
    try:
        with Progress(
            TextColumn(f"replaying {', '.join(names)}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("events"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("replay", total=None)
            result = replay(
                settings.database_url,
                ledger,
                settings.views_schema_name,
                settings.replay_page_events,
                projection,
                lambda done, total: progress.update(task, completed=done, total=total),
            )
    except ProjectionError as error:
        raise _fail(str(error)) from None
    finally:
        ledger.close()
    typer.echo(
        f"replayed {', '.join(result.projections)}: {result.events_applied:,} events applied;"
        f" views at sequence {result.position} swapped in for views at {result.replaced_position}"
        f" in {result.swap_ms} ms (attempt {result.swap_attempts})"
    )


# ------------------------------------------------------------------ balance


def _balance_data(point: PointInTime) -> BalanceData:
    return BalanceData(
        account=point.account,
        currency=point.currency,
        balance=_money(point.balance_minor, point.currency),
        sequence=point.sequence,
        asOfSequence=point.as_of_sequence,
    )


def _money(amount_minor: int | None, currency: str) -> str | None:
    return None if amount_minor is None else format_minor(amount_minor, currency_exponent(currency))


def _point(text: str | None) -> Point | None:
    try:
        return None if text is None else parse_point(text)
    except StatementError as error:
        raise typer.BadParameter(str(error)) from None


def balance(
    account: Annotated[
        str, typer.Argument(help="agent:CODE, house:CODE or player:USERCODE", show_default=False)
    ],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="A sequence, or an ISO 8601 time (default: now)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON body.")] = False,
) -> None:
    """The balance of an account at a point: the last event up to it that set the
    balance, read from the event store (as `GET /v1/balances/{account}?asOf=`)."""
    point = _point(as_of)
    settings = Settings()
    ledger = _ledger(settings)
    try:
        reads = _reads(settings, ledger)
        with reads.snapshot(settings.database_url) as (conn, position):
            found = reads.balance_at(conn, reads.account(conn, account), point, position)
            store = reads.store_position(conn)
    except StatementError as error:
        raise _fail(str(error)) from None
    finally:
        ledger.close()
    past_views = point is None or point.sequence is None or point.sequence > position
    if store > position and past_views:
        Console(stderr=True).print(
            f"[yellow]the views are {store - position:,} events behind the store: the answer "
            f"is complete up to sequence {position}[/yellow]"
        )
    data = _balance_data(found)
    if as_json:
        typer.echo(orjson.dumps(dump(data)).decode())
        return
    shown = "no balance (seamless player)" if data.balance is None else data.balance
    setter = f"set by sequence {data.sequence}" if data.sequence else "never changed by then"
    typer.echo(
        f"{data.account} {shown} {data.currency} ({setter}; as of sequence {data.asOfSequence})"
    )


# ------------------------------------------------------------------ statement


def statement(
    agent: Annotated[str, typer.Option("--agent", help="The agent.", show_default=False)],
    user: Annotated[
        int | None, typer.Option("--user", help="A player of the agent or its subtree.")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--from", help="First point, inclusive: a sequence or an ISO 8601 time."),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="End point, exclusive (default: now).")
    ] = None,
    output: Annotated[
        StatementFormat, typer.Option("--format", help="table, csv or json.")
    ] = StatementFormat.table,
) -> None:
    """An account statement: opening balance, every entry, closing balance and totals
    by transType; exits 1 unless opening + entries == closing."""
    points = _range(_point(start), _point(end))
    settings = Settings()
    ledger = _ledger(settings)
    try:
        reads = _reads(settings, ledger)
        with reads.snapshot(settings.database_url) as (conn, position):
            if user is None:
                account = reads.account(conn, f"agent:{agent}")
            else:
                account = reads.account(conn, f"player:{user}", within=agent)
            found = reads.statement(conn, account, *points, position)
    except StatementError as error:
        raise _fail(str(error)) from None
    finally:
        ledger.close()
    data = _statement_data(found, start, end)
    if output is StatementFormat.json:
        typer.echo(orjson.dumps(dump(data), option=orjson.OPT_INDENT_2).decode())
    elif output is StatementFormat.csv:
        _write_csv(data)
    else:
        _print_table(data)
    if found.reconciled is False:
        raise _fail(
            f"opening {data.opening.balance} + entries {data.entriesChange} is not the "
            f"closing {data.closing.balance}: the history and the events disagree"
        )


def _range(start: Point | None, end: Point | None) -> tuple[Point | None, Point | None]:
    """Both bounds of one kind (sequences and times need not run in the same order
    across writers), the first not after the second."""
    if start is None or end is None:
        return start, end
    if (start.sequence is None) != (end.sequence is None):
        raise typer.BadParameter("--from and --to must both be sequences or both be times")
    if (start.sequence or 0) > (end.sequence or 0) or (start.time_ms or 0) > (end.time_ms or 0):
        raise typer.BadParameter("--from is after --to")
    return start, end


def _entry(row: HistoryRow, currency: str) -> StatementEntry:
    return StatementEntry(
        transId=str(row.trans_id),
        sequence=row.sequence,
        type=row.type,
        transType=row.trans_type,
        txnId=row.txn_id,
        roundId=row.round_id,
        userCode=row.user_code,
        amount=format_minor(row.amount_minor, currency_exponent(currency)),
        change=_money(change_of(row), currency),
        balanceBefore=_money(row.balance_before_minor, currency),
        balanceAfter=_money(row.balance_after_minor, currency),
        createdAtMs=row.created_at_ms,
    )


def _statement_data(found: Statement, start: str | None, end: str | None) -> StatementData:
    currency = found.account.currency
    return StatementData(
        account=found.account.key,
        currency=currency,
        start=start,
        end=end,
        asOfSequence=found.as_of_sequence,
        opening=_balance_data(found.opening),
        closing=_balance_data(found.closing),
        entries=[_entry(row, currency) for row in found.entries],
        totals=[
            StatementTotal(
                transType=total.trans_type,
                name=total.name,
                count=total.count,
                amount=format_minor(total.amount_minor, currency_exponent(currency)),
                change=_money(total.change_minor, currency),
            )
            for total in found.totals()
        ],
        entriesChange=_money(found.entries_change_minor, currency),
        reconciled=found.reconciled,
    )


def _write_csv(data: StatementData) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=STATEMENT_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerow(
        {
            "record": "opening",
            "sequence": data.opening.sequence,
            "balanceAfter": data.opening.balance,
        }
    )
    for entry in data.entries:
        writer.writerow({"record": "entry", **dump(entry)})
    for total in data.totals:
        writer.writerow({"record": "total", **dump(total)})
    writer.writerow(
        {
            "record": "closing",
            "sequence": data.closing.sequence,
            "balanceAfter": data.closing.balance,
        }
    )


def _iso(created_at_ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=created_at_ms)).isoformat(timespec="milliseconds")


def _print_table(data: StatementData) -> None:
    console = Console()
    entries = Table(title=f"statement of {data.account} ({data.currency})")
    for column in ("sequence", "recorded (UTC)", "transType", "txnId", "roundId", "user"):
        entries.add_column(column)
    for column in ("amount", "change", "balance after"):
        entries.add_column(column, justify="right")
    for e in data.entries:
        entries.add_row(
            str(e.sequence),
            _iso(e.createdAtMs).removesuffix("+00:00"),
            f"{e.transType} {e.type}",
            e.txnId or "",
            e.roundId or "",
            "" if e.userCode is None else str(e.userCode),
            e.amount,
            e.change or "",
            e.balanceAfter or "",
        )
    console.print(entries)
    summary = Table(title="summary")
    for column in ("", "count", "amount", "change / balance"):
        summary.add_column(column, justify="right" if column else "left")
    summary.add_row("opening", "", "", data.opening.balance or "-")
    for t in data.totals:
        summary.add_row(f"{t.transType} {t.name}", str(t.count), t.amount, t.change or "")
    summary.add_row("entries", str(len(data.entries)), "", data.entriesChange or "")
    summary.add_row("closing", "", "", data.closing.balance or "-")
    console.print(summary)
    verdict = {True: "yes", False: "[red]NO[/red]", None: "n/a (no balance kept)"}
    console.print(
        f"opening + entries == closing: {verdict[data.reconciled]}"
        f" (as of sequence {data.asOfSequence})"
    )
