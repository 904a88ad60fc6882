"""`ledger simulate`: send a realistic casino stream to `ledger.commands`.

    ledger simulate --count 200 --seed 1            # setup, then 200 play commands
    ledger simulate --rate 2000 --count 120000      # a steady 2,000 commands/s for a minute

The world's setup goes first, wave by wave, each wave answered before the next
(userCodes come back in results); then play, at `--rate` commands/s or as fast as the
producer goes. With `--wait` (the default) it reads `ledger.results` and ends with the
answers by status and the command-to-result latency. Topics and the broker come from
the same environment variables as `ledger run` (KAFKA_BOOTSTRAP_SERVERS,
COMMANDS_TOPIC, RESULTS_TOPIC).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from bench.bounds import (
    IN_FLIGHT_COMMANDS_MAX,
    RESULTS_WAIT_SECONDS_MAX,
    SIMULATE_COMMANDS_MAX,
    SIMULATE_RATE_PER_S_MAX,
)
from bench.kafka import Pacer, ResultReader, Sender, SetupError, build_world, codes_of
from bench.simulate import Shape, play
from bench.simulate import build_world as plan_world
from bench.stats import percentile
from ledger.commands import Command
from ledger.settings import Settings

__all__ = ["simulate"]

CHUNK_COMMANDS = 500  # sent between two looks at the progress and the in-flight bound
POLL_SECONDS = 0.2


def simulate(
    count: Annotated[
        int, typer.Option(min=1, max=SIMULATE_COMMANDS_MAX, help="Play commands after setup.")
    ] = 10_000,
    rate: Annotated[
        float,
        typer.Option(
            min=0, max=SIMULATE_RATE_PER_S_MAX, help="Commands/s; 0 = as fast as possible."
        ),
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Same seed, same commands (requestIds too).")] = 1,
    prefix: Annotated[
        str | None, typer.Option(help="Agent codes start with this (default S<seed>).")
    ] = None,
    operators: Annotated[int, typer.Option(min=1, max=50)] = 2,
    agents_per_operator: Annotated[int, typer.Option(min=1, max=20)] = 4,
    players_per_agent: Annotated[int, typer.Option(min=1, max=1_000)] = 25,
    wait: Annotated[bool, typer.Option(help="Wait for every result and summarise.")] = True,
) -> None:
    """Send a realistic casino stream (an agent tree, skewed players, rounds, retries,
    refunds that overtake their bets) to the ledger over Kafka."""
    run = _Run(Settings(), Shape(operators, agents_per_operator, players_per_agent), seed, prefix)
    console = Console()
    try:
        asyncio.run(run.main(count, rate, wait, console))
    except SetupError as error:
        console.print(f"[red]setup failed:[/red] {error}")
        raise typer.Exit(code=1) from None


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text("" if task.speed is None else f"{task.speed:,.0f}/s", style="cyan")


@dataclass
class _Run:
    settings: Settings
    shape: Shape
    seed: int
    prefix: str | None

    async def main(self, count: int, rate_per_s: float, wait: bool, console: Console) -> None:
        world = plan_world(self.seed, self.shape, self.prefix)
        bootstrap = self.settings.kafka_bootstrap_servers
        sender = Sender(bootstrap, self.settings.commands_topic)
        reader = ResultReader(bootstrap, self.settings.results_topic)
        try:
            await sender.start()
            await reader.start()
            progress = Progress(
                TextColumn("[bold]{task.description:>9}"),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(),
                TimeElapsedColumn(),
                console=console,
                refresh_per_second=8,
            )
            with progress:
                setup = progress.add_task("setup", total=None)
                user_codes = await build_world(
                    world, sender, reader, lambda n: progress.advance(setup, n)
                )
                progress.update(setup, total=progress.tasks[setup].completed)
                reader.reset()
                commands = itertools.islice(play(world, user_codes, self.seed), count)
                sent_ms: dict[str, float] = {}
                seconds = await _Play(sender, reader, progress, sent_ms, wait).run(
                    commands, count, rate_per_s
                )
            console.print(_summary(world.prefix, count, seconds, reader, sent_ms, wait))
        finally:
            await reader.stop()
            await sender.stop()


@dataclass
class _Play:
    sender: Sender
    reader: ResultReader
    progress: Progress
    sent_ms: dict[str, float]
    wait: bool

    async def run(self, commands: Iterator[Command], count: int, rate_per_s: float) -> float:
        """Send everything (and wait for the answers); returns the seconds it took."""
        started = time.perf_counter()
        sent = self.progress.add_task("sent", total=count)
        answered = self.progress.add_task("answered", total=count, visible=self.wait)
        pacer = Pacer(rate_per_s) if rate_per_s > 0 else None
        while chunk := list(itertools.islice(commands, CHUNK_COMMANDS)):
            await self.sender.send_all(chunk, pacer, self.sent_ms)
            self.progress.advance(sent, len(chunk))
            self._show(answered)
            while self.wait and len(self.sent_ms) - self._answered() > IN_FLIGHT_COMMANDS_MAX:
                await self.reader.wait_for_count(self.reader.received + 1, POLL_SECONDS)
                self._show(answered)
        await self.sender.flush()
        deadline = time.monotonic() + RESULTS_WAIT_SECONDS_MAX
        while self.wait and self._answered() < len(self.sent_ms) and time.monotonic() < deadline:
            await self.reader.wait_for_count(self.reader.received + 1, POLL_SECONDS)
            self._show(answered)
        return time.perf_counter() - started

    def _answered(self) -> int:
        return len(self.reader.arrivals)  # reset after the setup: play answers only

    def _show(self, answered: TaskID) -> None:
        self.progress.update(answered, completed=self._answered(), total=len(self.sent_ms))


def _summary(
    prefix: str,
    count: int,
    seconds: float,
    reader: ResultReader,
    sent_ms: dict[str, float],
    waited: bool,
) -> Table:
    table = Table(title=f"ledger simulate: world {prefix}, {count:,} play commands")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("commands sent", f"{count:,} ({len(sent_ms):,} distinct requestIds)")
    table.add_row("seconds", f"{seconds:,.2f}")
    table.add_row("commands/s", f"{count / seconds:,.0f}")
    if not waited:
        return table
    for status, n in codes_of(reader.arrivals, sent_ms).items():
        table.add_row(f"answered {status}", f"{n:,}")
    latencies = [
        reader.arrivals[r].received_ms - at for r, at in sent_ms.items() if r in reader.arrivals
    ]
    for q in (50, 99):
        value = percentile(latencies, q)
        table.add_row(f"latency ms p{q}", "-" if value is None else f"{value:,.1f}")
    return table
