"""The figures of a fault-suite session: every test records what it did, the session prints
them at the end (see `conftest.pytest_terminal_summary`) and writes them as JSON."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["FIGURES", "record", "summary_lines", "write_json"]

# test id -> its figures (plain JSON-able values)
FIGURES: dict[str, dict[str, Any]] = {}

FIGURES_FILE_ENV = "LEDGER_FAULTS_FIGURES"


def record(name: str, figures: Any) -> None:
    """Keep one test's figures (a dataclass or a dict), printed at the end of the session."""
    values = dataclasses.asdict(figures) if dataclasses.is_dataclass(figures) else dict(figures)
    FIGURES[name] = values
    print(f"faults figures {name}: {json.dumps(values, sort_keys=True)}")


def _sum(key: str) -> int:
    return sum(int(v.get(key, 0)) for v in FIGURES.values())


def summary_lines() -> list[str]:
    faults: dict[str, int] = {}
    for values in FIGURES.values():
        for kind, count in values.get("faults", {}).items():
            faults[kind] = faults.get(kind, 0) + count
    lines = [f"{name}: {json.dumps(values, sort_keys=True)}" for name, values in FIGURES.items()]
    lines.append(
        "TOTAL: faults injected {} ({}); commands {}; lost {}; applied twice {}; "
        "inconsistent {}; wrong {}; balances wrong {}; audit findings {}; "
        "bad inputs tried {}; crashes {}".format(
            sum(faults.values()),
            ", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none",
            _sum("commands"),
            _sum("lost"),
            _sum("doubled"),
            _sum("inconsistent"),
            _sum("wrong"),
            _sum("balances_wrong"),
            _sum("audit_findings"),
            _sum("bad_inputs"),
            _sum("crashes"),
        )
    )
    return lines


def write_json(default_dir: Path) -> Path | None:
    """Write the figures to $LEDGER_FAULTS_FIGURES, else `default_dir/faults-figures.json`."""
    if not FIGURES:
        return None
    path = Path(os.environ.get(FIGURES_FILE_ENV) or default_dir / "faults-figures.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(FIGURES, indent=2, sort_keys=True))
    return path
