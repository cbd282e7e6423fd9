"""Leaderboard: a run's summary rendered as methods x metrics, one table per direction."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cfbench.core.errors import UserError
from cfbench.core.names import MAX_NAME, NAME_RULE
from cfbench.core.strict_json import read_json
from cfbench.execution import augment as aug
from cfbench.execution.config import DEFAULTS
from cfbench.records.labels import fmt_value, record_label
from cfbench.records.store import (
    SCHEMA_VERSION,
    check_path_limits,
    load_records,
    read_run_info,
    read_scores,
    record_key,
    write_json_atomic,
)
from cfbench.report import augment
from cfbench.report.markdown import md_cell
from cfbench.report.svg import feature_profile, metric_bars, scarcity_curve
from cfbench.score import registry as R
from cfbench.score.ranking import bootstrap_ci, ci_values, per_query_values, rank_methods
from cfbench.score.summary import (
    empty_scores,
    old_skipped,
    record_id,
    run_frames,
    score_records,
    summarize_frames,
    summarize_run,
    task_meta,
)
from cfbench.tasks.spec import Task, resolve_spec


def columns() -> list[tuple[str, str, str, str]]:
    """The tables' numeric columns from the metric registry: (scope, metric, header, format)."""
    return [(scope, m.name, m.column_header(scope), m.fmt) for scope, m in R.columns()]

#: what the scopes mean, under every Markdown board
SCOPE_NOTE = ("Coverage (queries with a valid CF), returned (queries with any CF), validity and "
              "s/query count every query (a failed query is a failure); distances, #changed, "
              "redundant changes, LOF ≤ p95, yNN, violations and actionable share are means over "
              "*valid* CFs (a CF that misses its target class is no counterfactual); columns "
              "marked *(found)* average every returned CF, valid or not. Definitions and the "
              "peers' conventions: docs/metrics.md.")
#: how the overall rank is made, under every Markdown board's ranks
RANK_NOTE = ("Validity is ranked over the k slots of each query. The quality metrics are ranked "
             "per query among the methods with a valid CF (spread over the full rank range); a "
             "method without one gets the neutral rank (m + 1)/2. Overall = mean of the validity "
             "rank and the mean quality rank, so validity counts once.")
FORMATS = ("table", "markdown", "json")


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        raise UserError(f"{run_dir}: no summary.json (expected the --out folder of a finished cfbench run)")
    summary = read_json(path, strict=False)  # older summaries hold NaN tokens
    version = summary.get("schema_version") if isinstance(summary, dict) else None
    rescore = (f"it has schema_version {version!r}, this cfbench reads {SCHEMA_VERSION}: rebuild "
               f"it from the run folder with `cfbench leaderboard {run_dir} --rescore`")
    problem = summary_problem(summary)
    if problem:
        fix = (rescore if version != SCHEMA_VERSION else
               "re-create it with `cfbench run ... --resume` on that folder")
        raise UserError(f"{path}: not a cfbench summary ({problem}); {fix}")
    if version != SCHEMA_VERSION:
        raise UserError(f"{path}: {rescore}")
    return summary


def run_summary(run_dir: Path) -> dict[str, Any]:
    """A run folder's summary: ``summary.json`` when it is current, else rebuilt from the
    records and ``scores.parquet`` (an unfinished run, or a summary by older code; the task is
    loaded only for a folder without usable scores)."""


    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    version = None
    if path.exists():
        try:
            version = read_json(path, strict=False).get("schema_version")
        except (UserError, AttributeError):
            version = SCHEMA_VERSION  # load_summary says what is wrong with it
    if version == SCHEMA_VERSION or not (run_dir / "records.jsonl").exists():
        return load_summary(run_dir)
    read_scores(run_dir)  # an unreadable scores.parquet is one line naming it
    if path.exists():
        print(f"{run_dir}: summary.json is from an older cfbench (schema_version {version!r}); "
              "summarised again from the records (store it: cfbench leaderboard RUN --rescore)",
              file=sys.stderr)
        return summarize_run(run_dir)

    print(f"{run_dir}: not finished (running or interrupted); {len(load_records(run_dir))} "
          "records so far", file=sys.stderr)
    return summarize_run(run_dir, partial=True)


def summary_problem(summary: Any) -> str | None:
    """What stops ``summary`` from being rendered (a missing key or a wrong type), or None."""
    def need(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            raise ValueError(f"missing {where}{key!r}")
        if not isinstance(obj[key], kind):
            raise ValueError(f"{where}{key!r} is {type(obj[key]).__name__}")
        return obj[key]

    num = (int, float)
    try:
        need(summary, "task", str, "")
        need(summary, "data_source", str, "")
        clf = need(summary, "classifier", dict, "")
        need(clf, "model", str, "classifier ")
        for key in ("accuracy", "f1", "n_train", "n_test"):
            need(clf, key, num, "classifier ")
        for label, per_dir in need(summary, "methods", dict, "").items():
            if not isinstance(per_dir, dict):
                raise ValueError(f"method {label!r} is not an object")
            for direction, d in per_dir.items():
                where = f"methods/{label}/{direction} "
                need(d, "n_queries", int, where)
                if not all(isinstance(n, int) for n in need(d, "status_counts", dict, where).values()):
                    raise ValueError(f"{where}status_counts holds a non-integer")
                for scope, metric, _, _ in columns():
                    v = need(d, scope, dict, where).get(metric)
                    if v is not None and (isinstance(v, bool) or not isinstance(v, num)):
                        raise ValueError(f"{where}{scope}/{metric} is not a number")
    except ValueError as exc:
        return str(exc)
    return None


def board_problem(board: Any) -> str | None:
    """What stops a board JSON from being rendered, or None: the keys a summary has
    (``summary_problem``), a task name that can name files, and the types of the board's own
    keys (``--validate`` checks the rest against the schema and the records)."""
    if not isinstance(board, dict):
        return "not a JSON object"
    problem = summary_problem(board)
    if problem:
        return problem
    if not isinstance(board["task"], str) or not NAME_RULE.fullmatch(board["task"]):
        return f"task name {board['task']!r} cannot name leaderboard files"
    nothing = type(None)
    for key, kind in (("config", (dict, nothing)), ("provenance", (dict, nothing)),
                      ("skipped_methods", (dict, nothing)), ("ranks", (dict, nothing)),
                      ("ci", (dict, nothing)), ("augmentation", (dict, list, nothing))):
        if not isinstance(board.get(key), kind):
            return f"{key!r} is {type(board[key]).__name__}"
    for key, kind in (("methods", list), ("metrics", dict), ("overall", dict)):
        v = (board.get("ranks") or {}).get(key, kind())
        if not isinstance(v, kind):
            return f"'ranks/{key}' is {type(v).__name__}"
    return None


def rows(summary: dict[str, Any], direction: str) -> list[list[str]]:
    out = []
    for label, per_dir in summary["methods"].items():
        d = per_dir.get(direction)
        if d is None:
            continue
        cells = [label, str(d["n_queries"])]
        for scope, metric, _, fmt in columns():
            v = d[scope].get(metric)
            cells.append("–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt))
        failures = {s: n for s, n in d["status_counts"].items() if s != "ok" and n}
        cells.append(", ".join(f"{s} {n}" for s, n in failures.items()) or "–")
        out.append(cells)
    return out


def headers() -> list[str]:
    return ["method", "queries", *(c[2] for c in columns()), "failures"]


def directions(summary: dict[str, Any]) -> list[str]:
    found = sorted({d for per in summary["methods"].values() for d in per if d != "all"})
    return [*found, "all"]


def to_markdown(summary: dict[str, Any]) -> str:
    clf = summary["classifier"]
    lines = [
        f"# {summary['task']}",
        "",
        f"Classifier: {md_cell(clf['model'])}, test accuracy {clf['accuracy']:.3f}, F1 "
        f"{clf['f1']:.3f} ({clf['n_train']} train / {clf['n_test']} test rows). Data: "
        f"{md_cell(summary['data_source'])}.",
        "",
    ]
    for direction in directions(summary):
        lines += [f"## Direction {md_cell(direction)}", "", "| " + " | ".join(headers()) + " |",
                  "|" + "---|" * len(headers())]
        lines += ["| " + " | ".join(map(md_cell, r)) + " |" for r in rows(summary, direction)]
        lines.append("")
    if summary.get("skipped_methods"):
        lines += ["## Skipped methods", "", "Not run (unavailable where the run was made):", "",
                  "| method | why |", "|---|---|"]
        lines += [f"| {md_cell(m)} | {md_cell(why)} |" for m, why in skipped(summary)]
        lines.append("")
    return "\n".join(lines)


def skipped(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, why) of every method the run skipped, by name."""
    return sorted((str(m), str(why)) for m, why in (summary.get("skipped_methods") or {}).items())


def print_table(summary: dict[str, Any], wide: bool = False, console: Any = None) -> None:
    """The run's tables on the terminal: the key columns (readable at 80 columns), or every
    column with ``wide`` (the Markdown and JSON outputs always have every column)."""

    console = console or Console()
    if wide:
        console = Console(width=max(console.width, 220), file=console.file)
    elif not console.is_terminal and console.width > 100:
        console = Console(width=100, file=console.file)
    clf = summary["classifier"]
    budget = summary.get("budget")
    console.print(
        f"[bold]{escape(summary['task'])}[/bold]  classifier {escape(clf['model'])}: "
        f"accuracy {clf['accuracy']:.3f}, F1 {clf['f1']:.3f}"
        + (f"; budget {budget:g} s/query" if isinstance(budget, (int, float)) else "")
    )
    all_headers = headers()
    keep = list(range(len(all_headers))) if wide else [
        all_headers.index(h) for h in ("method", *R.key_columns())]
    for direction in directions(summary):
        table = Table(title=f"direction {direction}", pad_edge=False,
                      box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD)
        for i in keep:
            h = all_headers[i]
            if h in ("method", "failures"):
                table.add_column(h, justify="left", no_wrap=h == "method")
            else:
                table.add_column(_stacked(h), justify="right", no_wrap=True)
        failed = []
        for r in rows(summary, direction):
            table.add_row(*(Text(r[i]) for i in keep))  # Text: a label's [key=value] is not markup
            if r[-1] != "–":
                failed.append(f"{r[0]} {r[-1]}")
        console.print(table)
        if failed and not wide:  # the failures column, as lines under the table
            console.print("failures: " + "; ".join(failed), markup=False)
    if not wide:
        console.print("[dim]all columns: --wide, or --format markdown / json[/dim]")
    if summary.get("skipped_methods"):
        console.print("[bold]skipped methods[/bold] (unavailable where the run was made):")
        for m, why in skipped(summary):
            console.print(f"  [yellow]{escape(m)}[/yellow]: {escape(why)}")


def _stacked(header: str) -> str:
    """A long header on two lines (``LOF\n≤ p95``, ``L1/MAD\n+cat``), so the narrow terminal
    table fits 80 columns: broken at its first space, else before a '+'."""
    if len(header) <= 7:
        return header
    for sep, keep in ((" ", ""), ("+", "+")):
        head, found, tail = header.partition(sep)
        if found and head:
            return f"{head}\n{keep}{tail}"
    return header


# ----------------------------------------------------------------------------- committed boards

BOARD_DIR = Path("leaderboard")


#: the record fields a board is computed from; ``<task>.records.jsonl.gz`` keeps only these
RECORD_FIELDS = ("task", "method", "variant", "seed", "query_id", "source", "target", "direction",
                 "k", "status", "reason", "n_cfs", "cfs", "seconds", "batch_size", "fit_seconds")
#: the board keys recomputed from the records by ``cfbench leaderboard --validate``
FROM_RECORDS = ("task_hash", "data_source", "classifier", "methods", "ranks", "ci", "identical")


def check_task_name(name: Any) -> str:
    """``name`` if it is usable as a board file name (``settings.NAME_RULE``, at most
    ``MAX_NAME`` characters), else one clear line (exit 2)."""
    if not isinstance(name, str) or not NAME_RULE.fullmatch(name) or len(name) > MAX_NAME:
        raise UserError(f"task name {name!r} cannot name leaderboard files; a task name is a "
                        "letter or digit followed by letters, digits, '.', '_' or '-', at most "
                        f"{MAX_NAME} characters")
    return name


def records_path(board_dir: Path, name: str) -> Path:
    return Path(board_dir) / f"{check_task_name(name)}.records.jsonl.gz"


def build_board(run_dir: Path, augment_dir: Path | None = None) -> dict[str, Any]:
    """The machine-readable leaderboard of one task, from a run folder (and an augment folder).

    Reads ``records.jsonl``, ``scores.parquet`` and ``run.json``; the task is loaded only for a
    run folder made before ``scores.parquet`` existed (see ``summary.run_frames``).
    """

    run_info = read_run_info(run_dir)
    read_scores(run_dir)  # an unreadable scores.parquet is one line naming it
    full = sorted(load_records(run_dir), key=record_key)
    records = canonical_records(full)
    cf, q, meta = run_frames(run_dir, records, ids=[record_id(r) for r in full])
    skipped_methods = run_info.get("skipped_methods")
    if skipped_methods is None:
        skipped_methods = old_skipped(run_dir)
    augmentation = None
    if augment_dir is not None:
        doc = augment.load(augment_dir)
        augmentation = {k: doc[k] for k in ("protocol", "fraction", "curve", "seeds", "scenarios",
                                            "max_per_class", "methods", "timeout", "budget",
                                            "params", "aggregate")
                        if k in doc}
    return board_from_frames(cf, q, meta, config=run_info.get("config", {}),
                             provenance=full[0]["provenance"] if full else {},
                             skipped_methods=skipped_methods or {}, augmentation=augmentation,
                             identical=identical_methods(records))


def board_from_records(task: Any, records: list[dict[str, Any]], *, config: dict[str, Any],
                       provenance: dict[str, Any], skipped_methods: dict[str, str],
                       augmentation: dict[str, Any] | None) -> dict[str, Any]:
    """The board of ``task`` re-scored from its per-query records (``--validate`` and
    ``--rescore`` on committed records; loads the task)."""

    records = canonical_records(records)
    cf, q = score_records(task, records)
    return board_from_frames(cf, q, task_meta(task), config=config, provenance=provenance,
                             skipped_methods=skipped_methods, augmentation=augmentation,
                             identical=identical_methods(records))


def identical_methods(records: list[dict[str, Any]]) -> list[list[str]]:
    """Groups of methods that returned the same CFs for every query (same queries, same
    statuses, same values) and at least one CF: their rows differ only in time, which a
    reader must be told (on heart, ``llm-fewshot`` and its free-text twin)."""

    answers: dict[str, list[Any]] = {}
    for r in records:
        answers.setdefault(record_label(r), []).append(
            [r.get("seed"), r.get("query_id"), r.get("status"), r.get("cfs") or []])
    groups: dict[str, list[str]] = {}
    for label, rows in answers.items():
        if any(row[3] for row in rows):
            key = json.dumps(sorted(rows, key=lambda row: json.dumps(row[:2])), default=_plain)
            groups.setdefault(key, []).append(label)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def board_from_frames(cf: pd.DataFrame, q: pd.DataFrame, meta: dict[str, Any], *,
                      config: dict[str, Any], provenance: dict[str, Any],
                      skipped_methods: dict[str, str],
                      augmentation: dict[str, Any] | None,
                      identical: list[list[str]] | None = None) -> dict[str, Any]:
    """The board from per-CF scores and the per-query table of the canonical records (the one
    path of ``--update``, ``--rescore`` and ``--validate``, so a board is recomputed exactly)."""

    summary = summarize_frames(cf, q, meta)
    if cf.empty:  # no CF at all: every query is a failure
        cf = empty_scores(meta["features"])
    values = per_query_values(cf, q) if len(q) else pd.DataFrame()
    ci: dict[str, dict[str, list[float]]] = {}
    for m in R.ranked():
        ci[m.name] = {}
        for label, g in values.groupby("method_label") if len(values) else []:
            ci[m.name][label] = list(bootstrap_ci(ci_values(g, m.name)))
    return {
        "schema_version": SCHEMA_VERSION,
        "task": summary["task"],
        "task_hash": summary["task_hash"],
        "data_source": summary["data_source"],
        "classifier": summary["classifier"],
        "config": config,
        #: {"file", "sha256"} of the suite file the run came from (``cfbench run --config``)
        "suite": config.get("suite"),
        "provenance": provenance,
        "skipped_methods": skipped_methods,
        "methods": summary["methods"],
        "ranks": rank_methods(values) if len(values) else {"methods": [], "metrics": {},
                                                            "overall": {}, "unranked": {}},
        "ci": ci,
        "identical": identical or [],
        "augmentation": augmentation,
    }


def canonical_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The board-relevant fields of ``records``, in key order (independent of arrival order)."""

    return sorted(({f: r.get(f) for f in RECORD_FIELDS} for r in records), key=record_key)


def records_bytes(records: list[dict[str, Any]]) -> bytes:
    """Deterministic gzip'd JSON lines of the canonical records (no timestamp, no file name)."""
    lines = []
    for r in canonical_records(records):
        r = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        lines.append(json.dumps(r, sort_keys=True, separators=(",", ":"), allow_nan=False,
                                default=_plain))
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(("\n".join(lines) + "\n").encode())
    return buf.getvalue()


def read_records_bytes(blob: bytes) -> list[dict[str, Any]]:
    """Records from :func:`records_bytes` output (``null`` times back to NaN)."""
    text = gzip.decompress(blob).decode("utf-8")
    out = []
    for line in text.splitlines():
        r = json.loads(line)
        for f in ("seconds", "fit_seconds"):
            if r.get(f) is None:
                r[f] = float("nan")
        out.append(r)
    return out


def _plain(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def run_command(cfg: dict[str, Any], task: str) -> str:
    """The ``cfbench run`` command of a run's configuration: every flag that changes results
    (the one home of this text, for boards, Markdown and HTML reports alike)."""
    params = "".join(f" --param {t}.{k}={fmt_value(v)}" for t, vals in cfg.get("params") or []
                     for k, v in vals.items())
    fit = cfg.get("fit_timeout")
    return (f"cfbench run --task {task} --methods {cfg.get('methods', 'all')} "
            f"--seeds {','.join(map(str, cfg.get('seeds', [0])))} --k {cfg.get('k', 1)} "
            + (f"--budget {cfg['budget']:g} " if cfg.get("budget") else "")
            + f"--timeout {cfg.get('timeout', 60):g}"
            + (f" --n-queries {cfg['n_queries']}" if cfg.get("n_queries") else "")
            + (f" --fit-timeout {fit:g}" if isinstance(fit, (int, float)) and fit != DEFAULTS["fit_timeout"] else "")
            + (" --data-dir DATA_DIR" if cfg.get("data_dir") else "") + params)


def board_markdown(board: dict[str, Any]) -> str:
    """The Markdown leaderboard, rendered from the board JSON only."""

    name = board["task"]
    cfg = board.get("config", {})
    prov = board.get("provenance", {})
    body = to_markdown(board).replace(f"# {name}", f"# Leaderboard: {name}", 1)
    head, sep, tail = body.partition("## Direction")
    suite = cfg.get("suite") or {}
    intro = (
        (f"Run: `cfbench run --config {suite['file']}` (suite file SHA-256 "
         f"`{suite['sha256'][:16]}`), i.e. " if suite else "Run: ")
        + f"`{run_command(cfg, name)}`; "
        f"cfbench {prov.get('cfbench', '?')}, Python {prov.get('python', '?')}, task hash "
        f"`{board['task_hash'][:12]}`. " + SCOPE_NOTE
    )
    text = [head + intro + added_note(board) + "\n\n" + sep + tail, ""]
    ranks = board["ranks"]
    if ranks["methods"]:
        metrics = list(ranks["metrics"])
        text += ["## Ranks (1 = best; mean over queries)", "", RANK_NOTE, "",
                 "| method | overall | " + " | ".join(map(md_cell, metrics)) + " |",
                 "|---|---|" + "---|" * len(metrics)]
        order = sorted(ranks["methods"], key=lambda m: ranks["overall"].get(m, np.inf))
        for m in order:
            text.append(f"| {md_cell(m)} | {ranks['overall'][m]:.2f} | " + " | ".join(
                f"{ranks['metrics'][x]['mean_rank'][m]:.2f}" for x in metrics) + " |")
        text.append("| Friedman p | | " + " | ".join(
            _p(ranks["metrics"][x]["friedman"]["p_value"]) for x in metrics) + " |")
        text.append("| Nemenyi CD (α = 0.05) | | " + " | ".join(
            _num(ranks["metrics"][x]["nemenyi_cd"]) for x in metrics) + " |")
        n = {ranks["metrics"][x]["n_queries"] for x in metrics}
        text += ["", f"Blocks: {', '.join(map(str, sorted(n)))} queries (seed × test instance). "
                 "Two methods differ significantly on a metric when their mean ranks differ by more "
                 "than the CD.", ""]
        for metric, why in (ranks.get("unranked") or {}).items():
            text += [f"{md_cell(str(metric))} is {md_cell(str(why))}.", ""]
    for group in board.get("identical") or []:
        text += [f"**Identical answers:** {', '.join(md_cell(str(m)) for m in group)} returned "
                 "the same CFs for every query; their rows differ only in time.", ""]
    if board.get("augmentation"):
        a = board["augmentation"]
        text += ["## Augmentation under label scarcity", "", _kept_note(board) + (
                 _augment_intro(a, name) if
                 a.get("protocol") == aug.PROTOCOL else
                 f"{a['fraction']:.0%} of the training rows removed (A: positives, B: negatives, "
                 f"C: both); mean ± std over seeds {', '.join(map(str, a['seeds']))}; F1 in points "
                 "on the fixed test split. *valid* adds only the CFs the scarce classifier assigns "
                 "to their target class; *all* adds every CF."
                 + (f" At most {a['max_per_class']} CFs per depleted class." if a.get("max_per_class") else "")
                 + (f" Run: `cfbench augment --task {name} --methods {a['methods']} --seeds "
                    f"{','.join(map(str, a['seeds']))} --fraction {a['fraction']:g}"
                    + (f" --max-per-class {a['max_per_class']}" if a.get("max_per_class") else "")
                    + (f" --timeout {a['timeout']:g}" if a.get("timeout") else "")
                    + "".join(f" --param {t}.{k}={fmt_value(v)}" for t, vals in a.get("params") or []
                              for k, v in vals.items()) + "`."
                    if a.get("methods") else "")),
                 "", augment.to_markdown(a["aggregate"], a["fraction"]), ""]
        if _has_curve(a):
            text += [f"![scarcity curve]({name}-scarcity.svg)", ""]
    text += ["## Plots", "", f"![metrics]({name}-metrics.svg)", "",
             f"![feature-change profile]({name}-features.svg)", ""]
    return "\n".join(text)


def added_note(board: dict[str, Any]) -> str:
    """Which methods were added to the board by ``--add``, each with its own run command and
    the plugin that made it (rendered under the run line)."""
    out = []
    study = board.get("augmentation") or {}
    in_study = set(str(study.get("methods") or "").split(",")) if isinstance(study, dict) else set()
    for e in board.get("added") or []:
        prov = e.get("provenance") or {}
        dist = prov.get("plugin_distribution") or {}
        made = (f" ({md_cell(str(dist.get('name')))} {md_cell(str(dist.get('version')))})"
                if isinstance(dist, dict) and dist.get("name") else "")
        added_study = (f"; in the augmentation study: {', '.join(map(md_cell, e['augment_methods']))}"
                       if e.get("augment_methods") else "")
        older = sorted(m for m in e.get("methods") or [] if m in in_study
                       and m not in set(e.get("augment_methods") or []))
        if older:  # a method replaced here whose study rows were not: they are the earlier run's
            added_study += (f"; the augmentation study's rows for {', '.join(map(md_cell, older))} "
                            "are from before this run (not re-run with it)")
        out.append(f"{', '.join(md_cell(str(m)) for m in e.get('methods') or [])}: added from "
                   f"`{e.get('command')}`{made}{added_study}.")
    return (" Added to this board later (`cfbench leaderboard RUN --add`), with the board's "
            "task, classifier, queries and settings: " + " ".join(out)) if out else ""


def _kept_note(board: dict[str, Any]) -> str:
    """Says when the study was kept from an earlier board by ``--keep-augmentation``."""
    kept = board.get("augmentation_kept")
    if not kept:
        return ""
    sha = str(kept.get("records_sha256") or "?")[:16]
    return (f"This study was not re-run with the rows above: it was kept from the board it "
            f"replaced (records SHA-256 `{sha}`, cfbench {kept.get('cfbench', '?')}) by "
            "`--keep-augmentation`; its methods and the task are the same. ")


def _num(v: float | None) -> str:
    return "–" if v is None or v != v else f"{v:.2f}"  # None: NaN read back from strict JSON


def _p(p: float | None) -> str:
    return "–" if p is None or p != p else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")


def write_board(board: dict[str, Any], out_dir: Path = BOARD_DIR,
                records: list[dict[str, Any]] | None = None) -> list[Path]:
    """Write ``<task>.json``, ``<task>.md`` and the two SVG plots; returns the paths.

    With ``records`` (the run's), also ``<task>.records.jsonl.gz``, whose SHA-256 goes into the
    board as ``records_sha256`` so that ``--validate`` can recompute the board from them.  The
    Markdown and plots are rendered from the JSON as written, exactly as ``--validate`` does.
    Every file is made in a scratch folder inside ``out_dir`` first and moved into place only
    when all of them are done, so a failure leaves the previous board as it was.
    """


    out_dir = Path(out_dir)
    name = check_task_name(board.get("task"))
    check_path_limits(out_dir, "--dir")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_dir))
    except OSError as exc:
        raise UserError(f"--dir {out_dir}: cannot write the board ({exc.strerror or exc})") from None
    try:
        made = [stage / f"{name}.json"]
        if records is not None:
            blob = records_bytes(records)
            made.append(records_path(stage, name))
            made[-1].write_bytes(blob)
            board = {**board, "records_sha256": hashlib.sha256(blob).hexdigest()}
        write_json_atomic(made[0], board)
        made += render_companions(json.loads(made[0].read_text()), stage)
        for p in reversed(made):  # the companions first, the JSON (what --validate reads) last
            os.replace(p, out_dir / p.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return [out_dir / p.name for p in made]


def _has_curve(a: dict[str, Any] | None) -> bool:
    """A protocol-2 augmentation with more than one fraction removed: it has a scarcity curve."""
    return bool(a and isinstance(a.get("aggregate"), dict)
                and len({d["fraction"] for d in a["aggregate"]["deficit"]}) > 1)


def _augment_intro(a: dict[str, Any], name: str) -> str:
    """What the protocol-2 augmentation tables show, and the command that made them."""
    seeds = a["seeds"]
    rep = (f"{seeds[0]}-{seeds[-1]}" if list(seeds) == list(range(seeds[0], seeds[-1] + 1))
           else ",".join(map(str, seeds)))
    curve = [f for f in a.get("curve") or [] if f != a["fraction"]]
    cmd = (f"cfbench augment --task {name} --methods {a['methods']} --seeds {rep} "
           f"--fraction {a['fraction']:g}" + (f" --curve {','.join(f'{f:g}' for f in curve)}" if curve else "")
           + (f" --max-per-class {a['max_per_class']}" if a.get("max_per_class") else "")
           + (f" --budget {a['budget']:g}" if a.get("budget") else "")
           + (f" --timeout {a['timeout']:g}" if a.get("timeout") else "")
           + "".join(f" --param {t}.{k}={fmt_value(v)}" for t, vals in a.get("params") or []
                     for k, v in vals.items()))
    return (f"{a['fraction']:.0%} of the training rows removed (A: positives, B: negatives, C: both) "
            f"in each of {len(seeds)} repetitions; every repetition draws its own stratified "
            "train/test split, so the spread includes the test set. Every row adds exactly as many "
            "rows per depleted class as were removed (*added*); a CF method fills that budget from "
            "its own CFs, drawing with replacement when it has fewer (*distinct* counts the CFs "
            "used). *valid* adds only CFs the scarce classifier assigns to their target class, "
            "*all* every CF. Numbers are means over repetitions with 95 % CIs (corrected resampled "
            "t, Nadeau and Bengio 2003, clipped to the score's range); *gain vs none* and *vs SMOTE* are corrected paired "
            "t-tests on F1 (* p < 0.05); *rel. recovery* is mean gain / mean F1 lost with a "
            "bootstrap CI, shown only where the F1 lost is positive and its CI excludes 0. "
            f"Protocol: docs/leaderboard.md. Run: `{cmd}`.")


def render_companions(board: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the board's Markdown and SVG plots (rendered from ``board`` only) into ``out_dir``."""

    name = check_task_name(board.get("task"))
    paths = [out_dir / f"{name}.md", out_dir / f"{name}-metrics.svg", out_dir / f"{name}-features.svg"]
    paths[0].write_text(board_markdown(board))
    metric_bars(board["ci"], f"{name}: means over queries, 95% bootstrap CI", paths[1])
    prof = pd.DataFrame({m: d["all"]["feature_change"] for m, d in board["methods"].items()}).T
    feature_profile(prof.astype(float).fillna(0.0), f"{name}: share of CFs changing each feature",
                    paths[2])
    a = board.get("augmentation")
    if _has_curve(a):
        paths.append(out_dir / f"{name}-scarcity.svg")
        scarcity_curve(a["aggregate"], f"{name}: F1 under label scarcity (means over "
                       f"{len(a['seeds'])} repetitions, 95% CI)", paths[-1])
    return paths


def rebuild_boards(board_dir: Path = BOARD_DIR) -> list[Path]:
    """Re-score every committed ``<task>.json`` board in ``board_dir`` from its committed
    ``<task>.records.jsonl.gz`` with the current metrics and rewrite its files (loads each task;
    config, provenance, skipped methods, augmentation, the added methods' entries and the
    kept-study note are kept from the board)."""

    paths: list[Path] = []
    for path in sorted(Path(board_dir).glob("*.json")):
        if path.name == "schema.json":
            continue
        board = read_json(path)
        if not isinstance(board, dict):
            raise UserError(f"{path}: not a board (a JSON object)")
        name = check_task_name(board.get("task"))
        rpath = records_path(path.parent, name)
        if not rpath.exists():
            raise UserError(f"{path}: no {rpath.name} to rebuild it from; use "
                            "`cfbench leaderboard RUN_DIR --update` with its run folder")
        try:
            records = read_records_bytes(rpath.read_bytes())
        except (OSError, ValueError, RecursionError) as exc:  # gzip, UTF-8 or JSON errors
            raise UserError(f"{rpath}: cannot be read ({str(exc)[:160]}); restore it from "
                            "version control or `--update` the board from its run") from None
        spec = resolve_spec(name)
        if spec.hash != board.get("task_hash"):
            raise UserError(f"{path}: made with another version of task {name!r} (hash "
                            f"{str(board.get('task_hash'))[:12]}, now {spec.hash[:12]}); re-run it")
        data_dir = (board.get("config") or {}).get("data_dir")
        task = Task.load(spec, dataset_options={"data_dir": data_dir} if data_dir else None)
        new = board_from_records(task, records, config=board.get("config", {}),
                                 provenance=board.get("provenance", {}),
                                 skipped_methods=board.get("skipped_methods", {}),
                                 augmentation=board.get("augmentation"))
        for key in ("added", "augmentation_kept"):  # where rows came from: the board's own word
            if board.get(key):
                new[key] = board[key]
        paths += write_board(new, path.parent, records=records)
    if not paths:
        raise UserError(f"{board_dir}: no <task>.json board to rebuild; --rescore without a run "
                        "folder re-scores the committed boards of --dir (default: leaderboard)")
    return paths
