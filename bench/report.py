"""The benchmark's figures as markdown: the full page (docs/benchmarks.md) and the
README's Performance section (between two marker comments, rewritten in place)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "README_BEGIN",
    "README_END",
    "full_page",
    "ratios",
    "readme_section",
    "update_readme",
]

README_BEGIN = "<!-- bench:begin (written by `make bench`) -->"
README_END = "<!-- bench:end -->"

R = dict[str, Any]


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def ratios(r: R) -> dict[str, float | None]:
    """The ledger's end-to-end rate over each baseline's and each limit's."""
    e2e, base, lim = r.get("e2e") or {}, r.get("baselines") or {}, r.get("limits") or {}
    core = (r.get("growth") or [{}])[0]

    def over(ledger: float | None, other: float | None) -> float | None:
        return ledger / other if ledger and other else None

    rate, events_rate = e2e.get("commands_per_s"), e2e.get("events_per_s")
    return {
        "ledger_over_baseline_a": over(rate, (base.get("a") or {}).get("messages_per_s")),
        "ledger_over_baseline_b": over(rate, (base.get("b") or {}).get("messages_per_s")),
        "ledger_over_limit_c": over(rate, (lim.get("c") or {}).get("records_per_s")),
        "ledger_events_over_limit_d": over(events_rate, (lim.get("d") or {}).get("rows_per_s")),
        "ledger_over_limit_e": over(rate, (lim.get("e") or {}).get("records_per_s")),
        "ledger_over_core_alone": over(rate, core.get("commands_per_s")),
    }


def _times(ledger: float | None, other: float | None) -> str:
    if not ledger or not other:
        return "-"
    return f"ledger {ledger / other:,.1f}x faster"


def _share(ledger: float | None, limit: float | None) -> str:
    if not ledger or not limit:
        return "-"
    return f"ledger at {100 * ledger / limit:,.0f}%"


def machine_lines(r: R) -> list[str]:
    run, machine = r["run"], r["run"]["machine"]
    loads = [v["before"][0] for v in r["loadavg"].values()] + [
        v["after"][0] for v in r["loadavg"].values()
    ]
    load_text = f"{min(loads):.1f} to {max(loads):.1f}" if loads else "-"
    return [
        f"Run {run['started_at']} (commit {run['commit']}), `BENCH_SCALE={r['sizes']['scale']}`, "
        f"{run['seconds']:,.0f} s.",
        f"Machine: {machine['cpus']} x {machine['cpu_model']}, "
        f"{machine['memory_gib']:.1f} GiB RAM, "
        f"{machine['os']}; Python {machine['python']}; PostgreSQL {machine['postgres']['version']} "
        f"(fsync {machine['postgres']['fsync']}, synchronous_commit "
        f"{machine['postgres']['synchronous_commit']}, shared_buffers "
        f"{machine['postgres']['shared_buffers']}); one Kafka broker{_broker(machine)}; "
        "all on 127.0.0.1.",
        f"Noise: the cores are shared with other test runs (1-minute load average {load_text} "
        "during this run; per phase in the JSON): differences under ~20% are noise.",
    ]


def _broker(machine: R) -> str:
    held = machine.get("kafka_before_run")
    if not held:
        return ""
    return f" (holding {held['topics']:,} topics, {held['partitions']:,} partitions before the run)"


def _messages(run: R) -> str:
    capped = " (time cap)" if run.get("time_bound") else ""
    return f"{_n(run.get('messages'))} messages{capped}"


def throughput_table(r: R) -> list[str]:
    e2e, base, lim = r.get("e2e") or {}, r.get("baselines", {}), r.get("limits", {})
    a, b = base.get("a") or {}, base.get("b") or {}
    c, d, e = lim.get("c") or {}, lim.get("d") or {}, lim.get("e") or {}
    core = (r.get("growth") or [{}])[0]
    rate = e2e.get("commands_per_s")
    rows = [
        "| what (same preloaded commands) | work | seconds | rate | compared |",
        "|---|---:|---:|---:|---|",
        f"| **Ledger end to end**: Kafka -> core -> PostgreSQL (fsync) -> results on Kafka "
        f"| {_n(e2e.get('commands'))} commands | {_n(e2e.get('seconds'), 2)} "
        f"| **{_n(rate)} commands/s** | |",
        f"| ledger end to end, until the views caught up "
        f"| {_n(e2e.get('commands'))} commands | {_n(e2e.get('projections_seconds'), 2)} "
        f"| {_n(e2e.get('projections_commands_per_s'))} commands/s "
        f"| {r.get('projections_note') or ''} |",
        f"| Baseline A: eventsourcing the plain way (get, apply, save per message) "
        f"| {_messages(a)} | {_n(a.get('seconds'), 2)} "
        f"| {_n(a.get('messages_per_s'))} messages/s | {_times(rate, a.get('messages_per_s'))} |",
        f"| Baseline B: hand-written wallet (SELECT FOR UPDATE, UPDATE, INSERT per message) "
        f"| {_messages(b)} | {_n(b.get('seconds'), 2)} "
        f"| {_n(b.get('messages_per_s'))} messages/s | {_times(rate, b.get('messages_per_s'))} |",
        f"| Limit C: aiokafka consuming the same topic, nothing else "
        f"| {_n(c.get('records'))} records | {_n(c.get('seconds'), 2)} "
        f"| {_n(c.get('records_per_s'))} records/s | {_share(rate, c.get('records_per_s'))} |",
        f"| Limit D: COPY (binary) of the same event rows, one transaction "
        f"| {_n(d.get('rows'))} events | {_n(d.get('seconds'), 2)} "
        f"| {_n(d.get('rows_per_s'))} events/s "
        f"| {_share(e2e.get('events_per_s'), d.get('rows_per_s'))} (ledger: "
        f"{_n(e2e.get('events_per_s'))} events/s) |",
        f"| Limit E: the thinnest pipeline: per batch of up to 1,000, a row per record in one "
        f"PostgreSQL transaction (fsync), a result per record, acknowledged "
        f"| {_n(e.get('records'))} records | {_n(e.get('seconds'), 2)} "
        f"| {_n(e.get('records_per_s'))} records/s | {_share(rate, e.get('records_per_s'))} |",
        f"| Core alone (store growth phase): `Ledger.handle_batch`, 1,000-command batches "
        f"| {_n(core.get('store_events'))} events stored | | "
        f"{_n(core.get('commands_per_s'))} commands/s "
        f"| {_share(rate, core.get('commands_per_s'))} |",
    ]
    return rows


def latency_table(r: R) -> list[str]:
    rows = [
        "| offered load | achieved send rate | p50 ms | p99 ms | max ms "
        "| send -> batch start p50 / p99 ms | unanswered |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in r.get("latency") or []:
        rows.append(
            f"| {_n(p['offered_per_s'])}/s{' (80% of max)' if p.get('of_max') else ''} "
            f"| {_n(p['achieved_per_s'])}/s | {_n(p['latency_ms_p50'], 1)} "
            f"| {_n(p['latency_ms_p99'], 1)} | {_n(p['latency_ms_max'], 1)} "
            f"| {_n(p['to_processing_ms_p50'], 1)} / {_n(p['to_processing_ms_p99'], 1)} "
            f"| {p['unanswered']} |"
        )
    return rows


def replay_table(r: R) -> list[str]:
    rp = r.get("replay") or {}
    return [
        "| replay of the whole store | events | seconds | events/s |",
        "|---|---:|---:|---:|",
        "| `ledger replay`: rebuild every view beside the live ones, swap them in "
        f"| {_n(rp.get('events'))} "
        f"| {_n(rp.get('projections_seconds'), 2)} | {_n(rp.get('projections_events_per_s'))} |",
        f"| `ledger audit verify` (stream, check chains, seals, postings) | {_n(rp.get('events'))} "
        f"| {_n(rp.get('audit_seconds'), 2)} | {_n(rp.get('audit_events_per_s'))} |",
    ]


def growth_table(r: R) -> list[str]:
    rows = [
        "| store size (events) | ms per 1,000 commands (all timed batches) | vs the smallest "
        "| median batch | slowest batch | commands/s | bulk load, 5,000-command batches |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    points = r.get("growth") or []
    first = points[0]["ms_per_1000_commands"] if points else None
    for g in points:
        cost = g["ms_per_1000_commands"]
        change = f"{(cost / first - 1) * 100:+.1f}%" if first else "-"
        rows.append(
            f"| {_n(g['store_events'])} | {_n(cost, 1)} | {change} "
            f"| {_n(g.get('ms_per_1000_commands_median'), 1)} "
            f"| {_n(g['ms_per_1000_commands_max'], 1)} | {_n(g['commands_per_s'])} "
            f"| {_n(g['bulk_commands_per_s'])} commands/s |"
        )
    return rows


def cpu_table(r: R) -> list[str]:
    e2e = r.get("e2e") or {}
    cpu, commands = e2e.get("cpu_seconds") or {}, e2e.get("commands") or 0
    rows = [
        "| process (sustained run, until the views caught up) | CPU seconds"
        " | CPU ms per 1,000 commands |",
        "|---|---:|---:|",
    ]
    for name, seconds in cpu.items():
        per = 1000 * 1000 * seconds / commands if commands else None
        rows.append(f"| {name} | {_n(seconds, 2)} | {_n(per)} |")
    return rows


def loadavg_table(r: R) -> list[str]:
    rows = ["| phase | seconds | load average before | after |", "|---|---:|---|---|"]
    for name, v in r["loadavg"].items():
        before = " / ".join(f"{x:.2f}" for x in v["before"])
        after = " / ".join(f"{x:.2f}" for x in v["after"])
        rows.append(f"| {name} | {v['seconds']:,.1f} | {before} | {after} |")
    return rows


def full_page(r: R) -> str:
    parts = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`); the JSON with every figure is in "
        "`bench-results/`. Benchmarks print numbers; they never fail a build.",
        "",
        *machine_lines(r),
        "",
        "## Throughput and the baselines and limits",
        "",
        *throughput_table(r),
        "",
        "## Latency: command sent -> its result read back, at fixed offered loads",
        "",
        *latency_table(r),
        "",
        "## Replay",
        "",
        *replay_table(r),
        "",
        "## Cost per command as the store grows (core alone, PostgreSQL)",
        "",
        *growth_table(r),
        "",
        "## Where the CPU went during the sustained run",
        "",
        *cpu_table(r),
        "",
        "## Load average per phase (1 / 5 / 15 minutes)",
        "",
        *loadavg_table(r),
        "",
        *_errors(r),
        *_method(),
    ]
    return "\n".join(parts) + "\n"


def _errors(r: R) -> list[str]:
    if not r.get("errors"):
        return []
    return ["## Phases that failed", "", *(f"- {k}: `{v}`" for k, v in r["errors"].items()), ""]


def _method() -> list[str]:
    return [
        "## How it is measured",
        "",
        "- Workload: `ledger simulate`'s generator (`bench/simulate.py`): one broker, 4 "
        "operators, 20 casinos in both modes, 2,000 players with Zipf-skewed activity; rounds "
        "of bet then win or refund, deposits, withdrawals, point transfers, ~1% repeated "
        "requestIds, refunds that overtake their bets. Setup goes in dependency waves.",
        "- End to end: one `ledger run` process (projector inside, as in production) starts on "
        "a topic preloaded with the play commands (8 partitions). Time runs from the earliest "
        "`processedAtMs` (the first batch starting) to the last result read back; results are "
        "published after the PostgreSQL commit, so every counted command is durable.",
        "- Latency: a paced producer puts the send time in `timestampMs`; a reader in the same "
        "process notes each result's arrival. Loads above capacity queue up: their latency "
        "grows with the duration of the run.",
        "- Baselines A and B and limits C and E read the same records from the same topic; A "
        "and B apply the first messages only (they are slow), one PostgreSQL transaction each, "
        "and publish nothing. D copies the very event rows the ledger wrote. E does, one batch "
        "after the other, the least any ledger must: per batch of up to 1,000 records, read "
        "each requestId, write a row per record in one transaction (fsync on), publish a "
        "result per record and await the acknowledgements; no validation, rules or events.",
        "- Growth: one process and one fresh schema per size, `Ledger.handle_batch`, "
        "bulk-loaded in 5,000-command batches one size after the other; then the sizes take "
        "turns, one timed batch of 1,000 commands each, 20 turns in alternating order, so the "
        "machine's drift falls on every size alike; the cost is their total time over their "
        "commands, garbage-collection pauses included.",
        "- CPU: /proc times of the ledger process, its read side, the PostgreSQL postmaster "
        "and its backends (other users' sessions included), and the Kafka broker, from the "
        "service's start until the views caught up with the sustained run.",
        "",
    ]


def readme_section(r: R) -> str:
    return "\n".join(
        [
            README_BEGIN,
            *machine_lines(r),
            "",
            *throughput_table(r),
            "",
            *latency_table(r),
            "",
            "Replay, cost as the store grows, and CPU per process: `docs/benchmarks.md`.",
            README_END,
        ]
    )


def update_readme(readme: Path, r: R) -> bool:
    """Rewrite the text between the markers; False (and nothing written) without them."""
    text = readme.read_text()
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        return False
    readme.write_text(text[:begin] + readme_section(r) + text[end + len(README_END) :])
    return True


def main() -> None:
    """`python -m bench.report RESULTS.json`: render a saved run again (docs and README)."""
    results = json.loads(Path(sys.argv[1]).read_text())
    page = full_page(results)
    Path("docs/benchmarks.md").write_text(page)
    updated = update_readme(Path("README.md"), results)
    print(page)
    print("written: docs/benchmarks.md" + (", README.md" if updated else ""))


if __name__ == "__main__":
    main()
