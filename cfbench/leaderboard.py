"""Leaderboard: a run's summary rendered as methods x metrics, one table per direction."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cfbench.errors import UserError

#: (scope, metric, column header, format)
COLUMNS = (
    ("all", "coverage", "coverage", ".2f"),
    ("all", "valid", "validity", ".2f"),
    ("found", "valid", "validity (found)", ".2f"),
    ("found", "l1_mad", "L1/MAD", ".2f"),
    ("found", "l2_minmax", "L2 minmax", ".3f"),
    ("found", "n_changed", "#changed", ".2f"),
    ("found", "lof_inlier", "LOF inlier", ".2f"),
    ("found", "ynn", "yNN", ".2f"),
    ("found", "violates_constraints", "violations", ".2f"),
    ("found", "actionable_share", "actionable", ".2f"),
    ("found", "diversity", "diversity", ".2f"),
    ("found", "seconds_median", "s/query", ".3g"),
)
FORMATS = ("table", "markdown", "json")


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        raise UserError(f"{run_dir}: no summary.json (expected the --out folder of a finished cfbench run)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def rows(summary: dict[str, Any], direction: str) -> list[list[str]]:
    out = []
    for label, per_dir in summary["methods"].items():
        d = per_dir.get(direction)
        if d is None:
            continue
        cells = [label, str(d["n_queries"])]
        for scope, metric, _, fmt in COLUMNS:
            v = d[scope].get(metric)
            cells.append("–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt))
        failures = {s: n for s, n in d["status_counts"].items() if s != "ok" and n}
        cells.append(", ".join(f"{s} {n}" for s, n in failures.items()) or "–")
        out.append(cells)
    return out


def headers() -> list[str]:
    return ["method", "queries", *(c[2] for c in COLUMNS), "failures"]


def directions(summary: dict[str, Any]) -> list[str]:
    found = sorted({d for per in summary["methods"].values() for d in per if d != "all"})
    return [*found, "all"]


def to_markdown(summary: dict[str, Any]) -> str:
    clf = summary["classifier"]
    lines = [
        f"# {summary['task']}",
        "",
        f"Classifier: {clf['model']}, test accuracy {clf['accuracy']:.3f}, F1 {clf['f1']:.3f} "
        f"({clf['n_train']} train / {clf['n_test']} test rows). Data: {summary['data_source']}.",
        "",
    ]
    for direction in directions(summary):
        lines += [f"## Direction {direction}", "", "| " + " | ".join(headers()) + " |",
                  "|" + "---|" * len(headers())]
        lines += ["| " + " | ".join(r) + " |" for r in rows(summary, direction)]
        lines.append("")
    return "\n".join(lines)


def print_table(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    clf = summary["classifier"]
    console.print(
        f"[bold]{summary['task']}[/bold]  classifier {clf['model']}: "
        f"accuracy {clf['accuracy']:.3f}, F1 {clf['f1']:.3f}"
    )
    for direction in directions(summary):
        table = Table(title=f"direction {direction}")
        for h in headers():
            table.add_column(h, justify="left" if h in ("method", "failures") else "right")
        for r in rows(summary, direction):
            table.add_row(*r)
        console.print(table)
