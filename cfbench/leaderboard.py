"""Leaderboard: a run's summary rendered as methods x metrics, one table per direction."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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


# ----------------------------------------------------------------------------- committed boards

SCHEMA_VERSION = 1
BOARD_DIR = Path("leaderboard")


def build_board(run_dir: Path, augment_dir: Path | None = None) -> dict[str, Any]:
    """The machine-readable leaderboard of one task, from a run folder (and an augment folder)."""
    from cfbench import augment as aug
    from cfbench.ranking import RANKED, bootstrap_ci, per_query_values, rank_methods
    from cfbench.store import load_records
    from cfbench.summary import score_records
    from cfbench.task import Task, resolve_spec

    summary = load_summary(run_dir)
    run_info = json.loads((Path(run_dir) / "run.json").read_text())
    spec = resolve_spec(summary["task"])
    if spec.hash != summary["task_hash"]:
        raise UserError(f"{run_dir}: the run used another version of task {spec.name!r} "
                        f"(hash {summary['task_hash'][:12]}, now {spec.hash[:12]}); re-run it")
    data_dir = run_info.get("data_dir")
    task = Task.load(spec, dataset_options={"data_dir": data_dir} if data_dir else None)
    records = load_records(run_dir)
    cf, q = score_records(task, records)
    values = per_query_values(cf, q) if len(q) else pd.DataFrame()
    ci: dict[str, dict[str, list[float]]] = {}
    for metric, (how, _, _) in RANKED.items():
        ci[metric] = {}
        for label, g in values.groupby("method_label") if len(values) else []:
            v = g[metric].to_numpy(float)
            ci[metric][label] = list(bootstrap_ci(v if how == "slot_mean" else v[np.isfinite(v)]))
    board: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "task": summary["task"],
        "task_hash": summary["task_hash"],
        "data_source": summary["data_source"],
        "classifier": summary["classifier"],
        "config": run_info.get("config", {}),
        "provenance": records[0]["provenance"] if records else {},
        "skipped_methods": summary.get("skipped_methods", {}),
        "methods": summary["methods"],
        "ranks": rank_methods(values) if len(values) else {"methods": [], "metrics": {}, "overall": {}},
        "ci": ci,
        "augmentation": None,
    }
    if augment_dir is not None:
        doc = aug.load(augment_dir)
        board["augmentation"] = {k: doc[k] for k in ("fraction", "seeds", "scenarios", "max_per_class",
                                                     "methods", "timeout", "aggregate") if k in doc}
    return board


def board_markdown(board: dict[str, Any]) -> str:
    """The Markdown leaderboard, rendered from the board JSON only."""
    from cfbench import augment as aug

    name = board["task"]
    cfg = board.get("config", {})
    prov = board.get("provenance", {})
    body = to_markdown(board).replace(f"# {name}", f"# Leaderboard: {name}", 1)
    head, sep, tail = body.partition("## Direction")
    intro = (
        f"Run: `cfbench run --task {name} --methods {cfg.get('methods', 'all')} "
        f"--seeds {','.join(map(str, cfg.get('seeds', [0])))} --k {cfg.get('k', 1)} "
        f"--timeout {cfg.get('timeout', 60):g}"
        + (f" --n-queries {cfg['n_queries']}" if cfg.get("n_queries") else "") + "`; "
        f"cfbench {prov.get('cfbench', '?')}, Python {prov.get('python', '?')}, task hash "
        f"`{board['task_hash'][:12]}`. Validity etc. under *all* count a failed query as a failure; "
        "the *found* columns (distances, sparsity, LOF, yNN, violations) use returned CFs only."
    )
    text = [head + intro + "\n\n" + sep + tail, ""]
    if board.get("skipped_methods"):
        text.append("Not run (unavailable here): " + "; ".join(
            f"{m} ({why})" for m, why in board["skipped_methods"].items()) + "\n")
    ranks = board["ranks"]
    if ranks["methods"]:
        metrics = list(ranks["metrics"])
        text += ["## Ranks (1 = best; mean over queries, failures ranked last)", "",
                 "| method | overall | " + " | ".join(metrics) + " |",
                 "|---|---|" + "---|" * len(metrics)]
        order = sorted(ranks["methods"], key=lambda m: ranks["overall"].get(m, np.inf))
        for m in order:
            text.append(f"| {m} | {ranks['overall'][m]:.2f} | " + " | ".join(
                f"{ranks['metrics'][x]['mean_rank'][m]:.2f}" for x in metrics) + " |")
        text.append("| Friedman p | | " + " | ".join(
            _p(ranks["metrics"][x]["friedman"]["p_value"]) for x in metrics) + " |")
        text.append("| Nemenyi CD (α = 0.05) | | " + " | ".join(
            _num(ranks["metrics"][x]["nemenyi_cd"]) for x in metrics) + " |")
        n = {ranks["metrics"][x]["n_queries"] for x in metrics}
        text += ["", f"Blocks: {', '.join(map(str, sorted(n)))} queries (seed × test instance). "
                 "Two methods differ significantly on a metric when their mean ranks differ by more "
                 "than the CD.", ""]
    if board.get("augmentation"):
        a = board["augmentation"]
        text += ["## Augmentation under label scarcity", "",
                 f"{a['fraction']:.0%} of the training rows removed (A: positives, B: negatives, "
                 f"C: both); mean ± std over seeds {', '.join(map(str, a['seeds']))}; F1 in points "
                 "on the fixed test split. *valid* adds only the CFs the scarce classifier assigns "
                 "to their target class; *all* adds every CF."
                 + (f" At most {a['max_per_class']} CFs per depleted class." if a.get("max_per_class") else "")
                 + (f" Run: `cfbench augment --task {name} --methods {a['methods']} --seeds "
                    f"{','.join(map(str, a['seeds']))} --fraction {a['fraction']:g}"
                    + (f" --max-per-class {a['max_per_class']}" if a.get("max_per_class") else "")
                    + (f" --timeout {a['timeout']:g}" if a.get("timeout") else "") + "`."
                    if a.get("methods") else ""),
                 "", aug.to_markdown(a["aggregate"]), ""]
    text += ["## Plots", "", f"![metrics]({name}-metrics.svg)", "",
             f"![feature-change profile]({name}-features.svg)", ""]
    return "\n".join(text)


def _num(v: float | None) -> str:
    return "–" if v is None or v != v else f"{v:.2f}"  # None: NaN read back from strict JSON


def _p(p: float | None) -> str:
    return "–" if p is None or p != p else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")


def write_board(board: dict[str, Any], out_dir: Path = BOARD_DIR) -> list[Path]:
    """Write ``<task>.json``, ``<task>.md`` and the two SVG plots; returns the paths."""
    from cfbench.plots import feature_profile, metric_bars
    from cfbench.store import write_json_atomic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = board["task"]
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md",
             out_dir / f"{name}-metrics.svg", out_dir / f"{name}-features.svg"]
    write_json_atomic(paths[0], board)
    paths[1].write_text(board_markdown(board))
    metric_bars(board["ci"], f"{name}: means over queries, 95% bootstrap CI", paths[2])
    prof = pd.DataFrame({m: d["all"]["feature_change"] for m, d in board["methods"].items()}).T
    feature_profile(prof.fillna(0.0), f"{name}: share of CFs changing each feature", paths[3])
    return paths
