"""Shared output for benchmarks: a rich table on the terminal and a JSON file on disk."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS_DIR = Path(__file__).with_name("results")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def emit(name: str, title: str, rows: list[dict[str, Any]], *, extra: dict[str, Any] | None = None) -> Path:
    """Print ``rows`` as a table and write them (with machine facts) to ``results/<name>.json``."""
    table = Table(title=title)
    columns = list(rows[0]) if rows else []
    for column in columns:
        table.add_column(column, justify="right" if _numeric(rows, column) else "left")
    for row in rows:
        table.add_row(*(_fmt(row[c]) for c in columns))
    Console().print(table)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {
        "benchmark": name,
        "title": title,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": rows,
        **(extra or {}),
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def _numeric(rows: list[dict[str, Any]], column: str) -> bool:
    return all(isinstance(r[column], int | float) for r in rows)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
