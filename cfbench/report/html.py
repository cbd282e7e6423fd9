"""HTML leaderboard: a run folder or the committed boards rendered as one self-contained page.

``cfbench report RUN_DIR --out DIR`` reads the run folder (``summary.json``, ``run.json``,
``records.jsonl``, ``scores.parquet``, optional ``augment.json`` folders) and ``cfbench report
--board leaderboard/`` the committed ``<task>.json`` boards and their SVG plots.  Nothing is
re-scored: the task's data and classifier are not loaded (only a run folder made before schema
version 2 is summarised again with its task), so a report can be built where the files are.  The page
inlines its CSS, JavaScript, plots and data (strict JSON, ``null`` for undefined numbers); it
needs no network when viewed.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfbench.core.errors import UserError
from cfbench.core.strict_json import json_safe, read_json
from cfbench.records.labels import record_label
from cfbench.records.store import (
    RUN_INFO,
    check_path_limits,
    load_records,
    read_run_info,
    read_scores,
)
from cfbench.report import augment
from cfbench.report.augment import fmt_ci, fmt_count, fmt_p, fmt_recovery
from cfbench.report.board import (
    RANK_NOTE,
    SCOPE_NOTE,
    board_from_frames,
    board_problem,
    run_summary,
)
from cfbench.report.board import run_command as command
from cfbench.report.svg import feature_profile
from cfbench.score import registry as R
from cfbench.score.registry import columns
from cfbench.score.summary import run_frames
from cfbench.tasks.spec import resolve_spec

# ----------------------------------------------------------------------------- metric view
# Headers, formats, better directions and help texts come from ``cfbench.score.registry``.

_SCOPE_HELP = {"all": "every query's k slots; a failed query or invalid CF counts as 0",
               "valid": "mean over valid CFs", "found": "mean over every returned CF, valid or not"}


@dataclass(frozen=True)
class Column:
    """A numeric column of a direction table: where its value lives and how to show it."""

    scope: str  # "all" (failures count), "valid" (valid CFs) or "found" (returned CFs)
    key: str
    header: str
    fmt: str
    better: str | None  # "higher", "lower" or None (no better direction, e.g. runtime)
    help: str


#: augmentation columns: (key, header, ×100 as points, better)
AUG_COLUMNS = (("n_added", "added", False, None), ("f1", "F1", True, "higher"),
               ("macro_f1", "macro F1", True, "higher"),
               ("balanced_accuracy", "bal. acc.", True, "higher"),
               ("f1_recovered", "F1 recovered (pts)", True, "higher"),
               ("f1_recovered_rel", "rel. recovery", False, "higher"),
               ("macro_f1_recovered", "macro F1 recovered (pts)", True, "higher"))
SCENARIOS = {"A": "positives removed", "B": "negatives removed", "C": "both removed"}


def table_columns() -> list[Column]:
    """The direction tables' numeric columns, in the order of the terminal and Markdown tables."""

    return [Column(scope, m.name, m.column_header(scope), m.fmt, m.better,
                   f"{m.description} ({_SCOPE_HELP[scope]})") for scope, m in columns()]


def ranked_header(metric: str) -> str:

    try:
        return R.get(metric).header
    except KeyError:
        return metric


# ----------------------------------------------------------------------------- strict JSON


def embed_json(obj: Any) -> str:
    """Strict JSON safe inside ``<script type="application/json">`` (no ``<`` can end the tag)."""
    text = json.dumps(json_safe(obj), allow_nan=False, separators=(",", ":"), sort_keys=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_ABS_PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.~+-]+/)+([\w.~+-]+)")


def scrub(text: str) -> str:
    """Drop the folders of absolute paths (``/a/b/c`` → ``…/c``): pages carry no local paths."""
    return _ABS_PATH.sub(lambda m: "…/" + m.group(1), str(text))


# ----------------------------------------------------------------------------- loading


def _feature_info(task: str, task_hash: str, n: int) -> tuple[list[dict[str, Any]], str]:
    """Names, kinds and category labels from the task's spec file (a file read, no data load).

    Returns the features and a note when they could not be matched to the run.
    """
    try:

        spec = resolve_spec(task)
    except Exception:  # noqa: BLE001 - no spec here: fall back to positions
        spec = None
    if spec is not None and len(spec.schema) == n:
        feats = [{"name": f.name, "kind": f.kind, "unit": f.unit,
                  "labels": dict(zip(f.categories, f.labels, strict=False))} for f in spec.schema]
        note = "" if spec.hash == task_hash else (
            f"feature names from the current task spec {task!r}, whose hash differs from the run's")
        return feats, note
    return ([{"name": f"feature {i + 1}", "kind": "numeric", "unit": "", "labels": {}}
             for i in range(n)], f"task spec {task!r} not found here: features shown by position")


def load_run(run_dir: Path, augment_dirs: list[Path] | None = None, n_examples: int = 3
             ) -> dict[str, Any]:
    """A board-like dict from a run folder alone, plus example CFs from its records; ranks and
    bootstrap CIs when the folder has ``scores.parquet``."""

    run_dir = Path(run_dir)
    summary = run_summary(run_dir)
    info = read_run_info(run_dir) if (run_dir / RUN_INFO).exists() else {}
    records = load_records(run_dir)  # a corrupt line is skipped with a warning, as everywhere
    board: dict[str, Any] = {
        "task": summary["task"], "task_hash": summary["task_hash"],
        "data_source": summary.get("data_source", ""), "classifier": summary["classifier"],
        "config": info.get("config", {}),
        "provenance": records[0].get("provenance", {}) if records else {},
        "skipped_methods": summary.get("skipped_methods", {}),
        "methods": summary["methods"], "ranks": None, "ci": None, "augmentation": None,
    }
    board["ranks"], board["ci"] = _run_ranks(run_dir)
    augs = []
    for d in augment_dirs or []:

        doc = augment.load(d)
        if doc.get("task") not in (None, board["task"]):
            raise UserError(f"{d}: augmentation of task {doc.get('task')!r}, not {board['task']!r}")
        augs.append({k: doc[k] for k in ("protocol", "fraction", "curve", "seeds", "scenarios",
                                         "max_per_class", "methods", "timeout", "budget",
                                         "aggregate") if k in doc})
    board["augmentations"] = augs
    board["libraries"] = _libraries(records)
    board["examples"], board["examples_note"] = _examples(board, records, n_examples)
    return board


def _run_ranks(run_dir: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(ranks, ci) of a run folder from its ``scores.parquet``; (None, None) without one."""

    if read_scores(run_dir) is None:  # an unreadable file is one line, not "no ranks"
        return None, None
    try:
        cf, q, meta = run_frames(run_dir, load_records(run_dir), rescore=False)
    except UserError:
        return None, None  # scores of an unfinished run: no ranks, as without scores
    b = board_from_frames(cf, q, meta, config={}, provenance={},
                          skipped_methods=read_run_info(run_dir).get("skipped_methods") or {},
                          augmentation=None)
    return b["ranks"], b["ci"]


def _libraries(records: list[dict[str, Any]]) -> dict[str, str]:
    libs: dict[str, str] = {}
    for r in records:
        for k, v in (r.get("provenance") or {}).get("libraries", {}).items():
            libs.setdefault(str(k), str(v))
    return libs


def _examples(board: dict[str, Any], records: list[dict[str, Any]], n: int
              ) -> tuple[dict[str, Any], str]:
    """Per method: up to ``n`` answered queries (directions alternating) and failure reasons."""

    n_feat = next((len(c) for r in records for c in r.get("cfs") or [] if isinstance(c, list)),
                  len(next(iter(r["query"] for r in records if r.get("query")), [])))
    feats, note = _feature_info(board["task"], board["task_hash"], n_feat) if n_feat else ([], "")
    out: dict[str, Any] = {}
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_method.setdefault(record_label(r), []).append(r)  # the board's label, params included
    for label, recs in sorted(by_method.items()):
        recs = sorted(recs, key=lambda r: (r["seed"], r["direction"], r["query_id"]))
        ok = [r for r in recs if r.get("status") == "ok" and r.get("cfs")]
        picked: list[dict[str, Any]] = []
        per_dir: dict[str, list[dict[str, Any]]] = {}
        for r in ok:
            per_dir.setdefault(r["direction"], []).append(r)
        while len(picked) < n and any(per_dir.values()):
            for d in sorted(per_dir):
                if per_dir[d] and len(picked) < n:
                    picked.append(per_dir[d].pop(0))
        reasons = Counter(f"{r.get('status')}: {r.get('reason') or '(no reason given)'}"
                          for r in recs if r.get("status") != "ok")
        out[label] = {"examples": [_example(r, n_feat) for r in picked],
                      "failures": reasons.most_common(5), "n_failed": sum(reasons.values())}
    board["features"] = feats
    return out, note


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _example(r: dict[str, Any], n_feat: int) -> dict[str, Any]:
    q = r.get("query")
    query = [_num(v) for v in q] if isinstance(q, list) and len(q) == n_feat else None
    cfs = [[_num(v) for v in c] for c in r["cfs"] if isinstance(c, list) and len(c) == n_feat]
    return {"seed": r["seed"], "query_id": r["query_id"], "direction": r["direction"],
            "source": r.get("source"), "target": r.get("target"), "query": query, "cfs": cfs}


def load_boards(board_dir: Path) -> list[dict[str, Any]]:
    """Every committed ``<task>.json`` board of ``board_dir`` (not the schema), with its plots."""

    board_dir = Path(board_dir)
    if not board_dir.is_dir():
        raise UserError(f"--board {board_dir}: not a folder (expected the leaderboard/ folder)")
    boards = []
    for p in sorted(board_dir.glob("*.json")):
        if p.name == "schema.json":
            continue
        doc = read_json(p)
        if not isinstance(doc, dict) or "task" not in doc or "methods" not in doc:
            continue  # not a board
        problem = board_problem(doc)
        if problem:
            raise UserError(f"{p}: not a cfbench board ({problem}); check the boards with "
                            f"`cfbench leaderboard --validate --dir {board_dir}`")
        doc["plots"] = [(board_dir / f"{doc['task']}-{kind}.svg", alt) for kind, alt in (
            ("metrics", "metric bars with 95% bootstrap CIs"),
            ("features", "share of each method's CFs changing each feature"))]
        doc["augmentations"] = [doc["augmentation"]] if doc.get("augmentation") else []
        boards.append(doc)
    if not boards:
        raise UserError(f"--board {board_dir}: no <task>.json boards found")
    return boards


# ----------------------------------------------------------------------------- rendering

E = html.escape


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def _fmt(v: Any, fmt: str) -> str:
    f = _num(v)
    return "–" if f is None else format(f, fmt)


def _dv(v: Any) -> str:
    f = _num(v)
    return "" if f is None else repr(f)


def _th_sort(label: str, first: str, help_text: str = "", cls: str = "") -> str:
    title = f' title="{E(help_text)}"' if help_text else ""
    c = f' class="{cls}"' if cls else ""
    return (f'<th scope="col"{c} data-first="{first}"><button type="button"{title}>'
            f"{E(label)}</button></th>")


def _first(better: str | None) -> str:
    return "descending" if better == "higher" else "ascending"


def _best_marks(values: list[float | None], better: str | None) -> set[int]:
    vals = [(i, v) for i, v in enumerate(values) if v is not None]
    if better is None or len(vals) < 2 or len({v for _, v in vals}) < 2:
        return set()
    best = (max if better == "higher" else min)(v for _, v in vals)
    marks = {i for i, v in vals if v == best}
    return marks if len(marks) <= len(vals) / 2 else set()  # a best shared by most says little


def _cell(text: str, v: Any, best: bool = False) -> str:
    if best:
        return (f'<td data-v="{_dv(v)}" class="best"><strong>{E(text)}</strong>'
                '<span class="sr-only"> (best)</span></td>')
    return f'<td data-v="{_dv(v)}">{E(text)}</td>'


def _table(tid: str, caption: str, head: list[str], body_rows: list[list[str]],
           foot_rows: list[str] | None = None) -> str:
    foot = f"<tfoot>{''.join(foot_rows)}</tfoot>" if foot_rows else ""
    rows = "".join(f"<tr>{''.join(r)}</tr>" for r in body_rows)
    return (f'<div class="table-wrap" role="region" tabindex="0" aria-labelledby="{tid}-cap">'
            f'<table class="sortable" id="{tid}"><caption id="{tid}-cap">{caption}</caption>'
            f"<thead><tr>{''.join(head)}</tr></thead><tbody>{rows}</tbody>{foot}</table></div>")


def directions(methods: dict[str, Any]) -> list[str]:
    """``all`` first, then each direction found."""
    found = sorted({d for per in methods.values() for d in per if d != "all"})
    return ["all", *found] if found else ["all"]


def _direction_table(tid: str, methods: dict[str, Any], direction: str) -> str:
    cols = table_columns()
    labels = [m for m in sorted(methods) if direction in methods[m]]
    head = [_th_sort("method", "ascending", cls="text"), _th_sort("queries", "descending")]
    head += [_th_sort(c.header, _first(c.better), c.help + (
        f" ({c.better} is better)" if c.better else "")) for c in cols]
    head.append(_th_sort("failures", "ascending", "queries without a CF, by status", cls="text"))
    values = {c: [_num(methods[m][direction].get(c.scope, {}).get(c.key)) for m in labels]
              for c in cols}
    best = {c: _best_marks(values[c], c.better) for c in cols}
    rows = []
    for i, m in enumerate(labels):
        d = methods[m][direction]
        fails = {s: n for s, n in (d.get("status_counts") or {}).items() if s != "ok" and n}
        row = [f'<th scope="row" data-v="{E(m)}">{E(m)}</th>',
               _cell(str(d.get("n_queries", "–")), d.get("n_queries"))]
        row += [_cell(_fmt(values[c][i], c.fmt), values[c][i], i in best[c]) for c in cols]
        row.append(f'<td data-v="{sum(fails.values())}" class="text wrap">'
                   f"{E(', '.join(f'{s} {n}' for s, n in fails.items()) or '–')}</td>")
        rows.append(row)
    name = "all directions" if direction == "all" else f"direction {direction.replace('->', ' → ')}"
    cap = (f"Metrics per method, {E(name)} ({len(labels)} methods). <span class=hint>Sort by "
           "a column with its header button; a best value held by at most half the methods is "
           "bold.</span>")
    return _table(tid, cap, head, rows)


def _ci_table(tid: str, board: dict[str, Any]) -> str:
    ci = board.get("ci") or {}
    metrics = [m for m in ci if ci[m]]
    if not metrics:
        return ""
    higher = {m: (board.get("ranks") or {}).get("metrics", {}).get(m, {}).get("higher_is_better")
              for m in metrics}
    labels = sorted({lab for m in metrics for lab in ci[m]})
    head = [_th_sort("method", "ascending", cls="text")]
    head += [_th_sort(ranked_header(m), "descending" if higher[m] is not False else "ascending",
                      f"per-query mean with 95% bootstrap CI, {ranked_header(m)}") for m in metrics]
    rows = []
    for lab in labels:
        row = [f'<th scope="row" data-v="{E(lab)}">{E(lab)}</th>']
        for m in metrics:
            v = ci[m].get(lab) or [None, None, None]
            mean, lo, hi = (_num(x) for x in (list(v) + [None] * 3)[:3])
            text = "–" if mean is None else f"{mean:.2f}" + (
                f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else "")
            row.append(_cell(text, mean))
        rows.append(row)
    cap = ("Ranked metrics: mean over queries (seed × test instance, both directions) with the "
           "95% percentile bootstrap interval. Validity counts failures as 0; the others are "
           "over valid CFs only.")
    return _table(tid, cap, head, rows)


def _p(v: Any) -> str:
    f = _num(v)
    return "–" if f is None else (f"{f:.2g}" if f >= 1e-4 else "<1e-4")


def _ranks_table(tid: str, ranks: dict[str, Any]) -> str:
    metrics = list(ranks.get("metrics", {}))
    methods = list(ranks.get("methods", []))
    head = [_th_sort("method", "ascending", cls="text"),
            _th_sort("overall", "ascending", "mean of the per-metric mean ranks (1 = best)")]
    head += [_th_sort(ranked_header(m), "ascending", f"mean rank on {ranked_header(m)}")
             for m in metrics]
    overall = ranks.get("overall") or {}
    rows = []
    for lab in sorted(methods, key=lambda m: (_num(overall.get(m)) or math.inf, m)):
        row = [f'<th scope="row" data-v="{E(lab)}">{E(lab)}</th>',
               _cell(_fmt(overall.get(lab), ".2f"), overall.get(lab))]
        row += [_cell(_fmt(ranks["metrics"][m]["mean_rank"].get(lab), ".2f"),
                      ranks["metrics"][m]["mean_rank"].get(lab)) for m in metrics]
        rows.append(row)
    foot = [
        "<tr><th scope=\"row\">Friedman p</th><td></td>" + "".join(
            f"<td>{_p(ranks['metrics'][m].get('friedman', {}).get('p_value'))}</td>"
            for m in metrics) + "</tr>",
        "<tr><th scope=\"row\">Nemenyi CD (α = 0.05)</th><td></td>" + "".join(
            f"<td>{_fmt(ranks['metrics'][m].get('nemenyi_cd'), '.2f')}</td>" for m in metrics)
        + "</tr>",
    ]
    n = sorted({ranks["metrics"][m].get("n_queries") for m in metrics} - {None})
    cap = ("Mean ranks (1 = best; failures ranked last) over "
           f"{', '.join(map(str, n))} queries (seed × test instance)."
           + "".join(f" {E(ranked_header(m))} is {E(str(why))}."
                     for m, why in (ranks.get("unranked") or {}).items()))
    return _table(tid, cap, head, rows, foot)


def cliques(ranks: dict[str, float], cd: float | None) -> list[list[str]]:
    """Maximal groups of methods whose mean ranks lie within the CD of each other."""
    if cd is None or not ranks:
        return []
    order = sorted(ranks, key=lambda m: ranks[m])
    groups: list[list[str]] = []
    for i in range(len(order)):
        j = i
        while j + 1 < len(order) and ranks[order[j + 1]] - ranks[order[i]] <= cd:
            j += 1
        group = order[i: j + 1]
        if len(group) > 1 and not any(set(group) <= set(g) for g in groups):
            groups.append(group)
    return groups


def cd_diagram(sid: str, metric: str, mean_rank: dict[str, float], cd: float | None) -> str:
    """Demšar's critical-difference diagram as inline SVG: ranks on an axis, groups joined."""
    ranks = {m: r for m, r in mean_rank.items() if _num(r) is not None}
    k = len(ranks)
    if k < 2:
        return ""
    order = sorted(ranks, key=lambda m: (ranks[m], m))
    left, right = order[: (k + 1) // 2], order[(k + 1) // 2:]
    width, margin, top = 760, 210, 44
    x0, x1 = margin, width - margin

    def x(r: float) -> float:
        return x0 + (r - 1) / max(k - 1, 1) * (x1 - x0)

    groups = cliques(ranks, cd)
    line_h = 17
    y_axis = top + 10
    y_lab = y_axis + 22 + 6 * len(groups)
    height = y_lab + line_h * max(len(left), len(right)) + 8
    p = [f'<svg class="cd" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
         f'role="img" aria-labelledby="{sid}-t {sid}-d" xmlns="http://www.w3.org/2000/svg">',
         f'<title id="{sid}-t">Critical-difference diagram, {E(ranked_header(metric))}</title>',
         f'<desc id="{sid}-d">Mean ranks, 1 = best: ' + E("; ".join(
             f"{m} {ranks[m]:.2f}" for m in order)) + (
             f". Nemenyi CD {cd:.2f}. Not significantly different: " + E("; ".join(
                 ", ".join(g) for g in groups)) if cd is not None else ". CD undefined") + ".</desc>",
         f'<line x1="{x0}" y1="{y_axis}" x2="{x1}" y2="{y_axis}" class="ax"/>']
    step = 1 if k <= 12 else 2
    for t in range(1, k + 1):
        p.append(f'<line x1="{x(t):.1f}" y1="{y_axis - 5}" x2="{x(t):.1f}" y2="{y_axis}" class="ax"/>')
        if (t - 1) % step == 0 or t == k:
            p.append(f'<text x="{x(t):.1f}" y="{y_axis - 8}" text-anchor="middle">{t}</text>')
    if cd is not None:
        p.append(f'<line x1="{x0}" y1="14" x2="{x0 + cd / max(k - 1, 1) * (x1 - x0):.1f}" '
                 'y2="14" class="cdbar"/>')
        p.append(f'<text x="{x0}" y="10" class="small">CD = {cd:.2f}</text>')
    for gi, g in enumerate(groups):
        y = y_axis + 10 + 6 * gi
        p.append(f'<line x1="{x(ranks[g[0]]) - 3:.1f}" y1="{y}" x2="{x(ranks[g[-1]]) + 3:.1f}" '
                 f'y2="{y}" class="clique"/>')
    for side, names in (("l", left), ("r", right)):
        for i, m in enumerate(names if side == "l" else list(reversed(names))):
            y = y_lab + line_h * i
            xr = x(ranks[m])
            xe = x0 - 14 if side == "l" else x1 + 14
            p.append(f'<polyline points="{xr:.1f},{y_axis} {xr:.1f},{y} {xe:.1f},{y}" class="lead"/>')
            anchor = "end" if side == "l" else "start"
            tx = xe - 4 if side == "l" else xe + 4
            p.append(f'<text x="{tx:.1f}" y="{y + 4}" text-anchor="{anchor}">'
                     f"{E(m)} ({ranks[m]:.2f})</text>")
    p.append("</svg>")
    return "".join(p)


def _aug2_tables(tid: str, a: dict[str, Any]) -> str:
    """Protocol 2: the deficit per scenario, then every method with 95 % CIs and paired tests."""

    agg, main = a["aggregate"], a.get("fraction")
    defs = {(d["fraction"], d["scenario"]): d for d in agg["deficit"]}
    head = [_th_sort("scenario", "ascending", cls="text"),
            _th_sort("full model F1", "descending", "mean [95 % CI] over repetitions (points)"),
            _th_sort("scarce model F1", "descending", "mean [95 % CI] (points)"),
            _th_sort("F1 lost (pts)", "descending", "full minus scarce, mean [95 % CI]"),
            _th_sort("deficit", "ascending", "yes when the F1 lost is positive and its CI excludes 0",
                     cls="text")]
    rows = []
    for (f, sc), d in sorted(defs.items()):
        if f != main:
            continue
        rows.append([f'<th scope="row" data-v="{E(sc)}">{E(sc)} ({E(SCENARIOS.get(sc, ""))})</th>',
                     _cell(fmt_ci(d["f1_full"]), _num(d["f1_full"]["mean"])),
                     _cell(fmt_ci(d["f1_scarce"]), _num(d["f1_scarce"]["mean"])),
                     _cell(fmt_ci(d["f1_gap"], True), _num(d["f1_gap"]["mean"])),
                     f'<td class="text">{"yes" if d["f1_present"] else "no"}</td>'])
    n_rep = len(a.get("seeds") or [])
    out = [_table(f"{tid}-deficit", f"F1 lost to scarcity ({_num(main) or 0:.0%} of the training "
                  f"rows removed; {n_rep} repetitions, each on its own train/test split)", head, rows)]
    cols = (("added", "rows added per repetition (the budget: as many as were removed)"),
            ("distinct", "distinct CFs used to fill the budget"),
            ("F1", "mean [95 % CI], points"), ("macro F1", "mean [95 % CI], points"),
            ("bal. acc.", "mean [95 % CI], points"), ("F1 gain (pts)", "over no augmentation"),
            ("gain vs none", "corrected paired t-test on F1; * p < 0.05"),
            ("Δ F1 vs SMOTE (pts)", "mean [95 % CI]"), ("vs SMOTE", "corrected paired t-test"),
            ("rel. recovery", "mean gain / mean F1 lost, bootstrap 95 % CI"),
            ("n", "repetitions averaged"))
    head = [_th_sort("scenario", "ascending", cls="text"), _th_sort("method", "ascending", cls="text"),
            _th_sort("CFs", "ascending", "all: every CF; valid: only those the scarce classifier "
                     "assigns to their target class", cls="text")]
    head += [_th_sort(h, "descending", help_text) for h, help_text in cols]
    rows = []
    for r in agg["methods"]:
        if r["fraction"] != main:
            continue
        sc = str(r["scenario"])
        smote = r.get("vs_smote")
        d = defs[(r["fraction"], r["scenario"])]
        rec = fmt_recovery(r, d)
        added = r.get("n_added") or {}
        distinct = r.get("n_distinct") or {}
        rows.append([
            f'<th scope="row" data-v="{E(sc)}">{E(sc)}</th>',
            f'<td class="text" data-v="{E(str(r["method"]))}">{E(str(r["method"]))}</td>',
            f'<td class="text" data-v="{E(str(r["cfs"]))}">{E(str(r["cfs"]))}</td>',
            _cell(fmt_count(r.get("n_added")), _num(added.get("mean"))),
            _cell(fmt_count(r.get("n_distinct")), _num(distinct.get("mean"))),
            _cell(fmt_ci(r["f1"]), _num(r["f1"]["mean"])),
            _cell(fmt_ci(r["macro_f1"]), _num(r["macro_f1"]["mean"])),
            _cell(fmt_ci(r["balanced_accuracy"]), _num(r["balanced_accuracy"]["mean"])),
            _cell(fmt_ci(r["f1_gain"], True), _num(r["f1_gain"]["mean"])),
            _cell(fmt_p(r.get("vs_no-augmentation")), _num((r.get("vs_no-augmentation") or {}).get("p"))),
            _cell(fmt_ci(smote, True), _num((smote or {}).get("mean"))),
            _cell(fmt_p(smote), _num((smote or {}).get("p"))),
            _cell(rec, _num((r.get("f1_recovery") or {}).get("value"))),
            _cell(str(r["n_seeds"]), r["n_seeds"])])
    out.append(_table(f"{tid}-methods", "Augmentation: every row adds the same number of rows; "
                      "means over repetitions with 95 % CIs (corrected resampled t)", head, rows))
    return "".join(out)


def _aug_table(tid: str, a: dict[str, Any]) -> str:
    if isinstance(a.get("aggregate"), dict):
        return _aug2_tables(tid, a)
    agg = a.get("aggregate") or []
    head = [_th_sort("scenario", "ascending", cls="text"), _th_sort("method", "ascending", cls="text"),
            _th_sort("CFs", "ascending", "all: every CF added; valid: only those the scarce "
                     "classifier assigns to their target class", cls="text")]
    head += [_th_sort(h, _first(b), "mean ± std over seeds" + (" (points)" if pts else ""))
             for _, h, pts, b in AUG_COLUMNS]
    rows = []
    for r in agg:
        sc = str(r.get("scenario", ""))
        row = [f'<th scope="row" data-v="{E(sc)}">{E(sc)} ({E(SCENARIOS.get(sc, ""))})</th>',
               f'<td class="text" data-v="{E(str(r.get("method")))}">{E(str(r.get("method")))}</td>',
               f'<td class="text" data-v="{E(str(r.get("cfs")))}">{E(str(r.get("cfs")))}</td>']
        for key, _, pts, _ in AUG_COLUMNS:
            v, s = _num(r.get(key)), _num(r.get(f"{key}_std"))
            scale = 100 if pts else 1
            if v is None:
                text = "–"
            elif key == "n_added":
                text = f"{v:.0f}"
            elif pts:
                text = f"{v * scale:.1f}" + (f" ± {s * scale:.1f}" if s is not None else "")
            else:
                text = f"{v:.2f}"
            row.append(_cell(text, v))
        rows.append(row)
    frac = _num(a.get("fraction"))
    seeds = ", ".join(map(str, a.get("seeds") or []))
    cap = (f"Augmentation under label scarcity: {frac:.0%} of the training rows removed"
           if frac is not None else "Augmentation under label scarcity") + (
        f"; mean ± std over seeds {E(seeds)}; F1 in points on the fixed test split." if seeds else ".")
    return _table(tid, cap, head, rows)


_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999933")


def _fractions(a: dict[str, Any]) -> list[float]:
    """The shares removed in one augmentation document (protocol 2 holds several)."""
    if isinstance(a.get("aggregate"), dict):
        return [float(d["fraction"]) for d in a["aggregate"]["deficit"]]
    f = _num(a.get("fraction"))
    return [] if f is None else [f]


def scarcity_plot(sid: str, augs: list[dict[str, Any]]) -> str:
    """F1 against the share of training rows removed, one panel per scenario (≥ 2 fractions)."""
    fracs = sorted({f for a in augs for f in _fractions(a)})
    if len(fracs) < 2:
        return ""
    series: dict[tuple[str, str, str], dict[float, float]] = {}
    for a in augs:
        if isinstance(a.get("aggregate"), dict):  # protocol 2: every fraction in one study
            for r in a["aggregate"]["methods"]:
                v = _num(r["f1"]["mean"])
                if v is not None and r["cfs"] in ("reference", "valid"):
                    key = (str(r["scenario"]), str(r["method"]), str(r["cfs"]))
                    series.setdefault(key, {})[float(r["fraction"])] = v * 100
            continue
        for r in a.get("aggregate") or []:
            v = _num(r.get("f1"))
            if v is not None and _num(a.get("fraction")) is not None:
                key = (str(r.get("scenario")), str(r.get("method")), str(r.get("cfs")))
                series.setdefault(key, {})[float(a["fraction"])] = v * 100
    scenarios = sorted({k[0] for k in series})
    lines = sorted({(k[1], k[2]) for k in series})
    colour = {ln: _PALETTE[i % len(_PALETTE)] for i, ln in enumerate(lines)}
    dash = {ln: "" if i < len(_PALETTE) else ' stroke-dasharray="4 3"' for i, ln in enumerate(lines)}
    allv = [v for s in series.values() for v in s.values()]
    lo, hi = math.floor(min(allv) / 5) * 5, math.ceil(max(allv) / 5) * 5 or 5
    hi = hi if hi > lo else lo + 5
    pw, ph, pad = 260, 180, 40
    width = pad + len(scenarios) * (pw + pad)
    height = ph + 2 * pad + 18 * len(lines)
    p = [f'<svg class="scarcity" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
         f'role="img" aria-labelledby="{sid}-t" xmlns="http://www.w3.org/2000/svg">',
         f'<title id="{sid}-t">F1 (points) against the share of training rows removed, per '
         "scenario; the tables above hold the numbers</title>"]
    for si, sc in enumerate(scenarios):
        ox, oy = pad + si * (pw + pad), pad

        def px(f: float, ox: float = ox) -> float:
            return ox + (f - fracs[0]) / (fracs[-1] - fracs[0]) * pw

        def py(v: float, oy: float = oy) -> float:
            return oy + ph - (v - lo) / (hi - lo) * ph

        p.append(f'<text x="{ox}" y="{oy - 10}">{E(sc)} ({E(SCENARIOS.get(sc, ""))})</text>')
        p.append(f'<line x1="{ox}" y1="{oy + ph}" x2="{ox + pw}" y2="{oy + ph}" class="ax"/>'
                 f'<line x1="{ox}" y1="{oy}" x2="{ox}" y2="{oy + ph}" class="ax"/>')
        for f in fracs:
            p.append(f'<text x="{px(f):.1f}" y="{oy + ph + 14}" text-anchor="middle" '
                     f'class="small">{f:.0%}</text>')
        for v in (lo, hi):
            p.append(f'<text x="{ox - 4}" y="{py(v) + 4:.1f}" text-anchor="end" class="small">'
                     f"{v:g}</text>")
        for ln in lines:
            pts = series.get((sc, *ln), {})
            if pts:
                coords = " ".join(f"{px(f):.1f},{py(v):.1f}" for f, v in sorted(pts.items()))
                p.append(f'<polyline points="{coords}" fill="none" stroke="{colour[ln]}" '
                         f'stroke-width="2"{dash[ln]}/>')
    for i, ln in enumerate(lines):
        y = ph + 2 * pad + 18 * i
        p.append(f'<line x1="{pad}" y1="{y - 4}" x2="{pad + 24}" y2="{y - 4}" stroke="{colour[ln]}" '
                 f'stroke-width="2"{dash[ln]}/><text x="{pad + 30}" y="{y}">{E(ln[0])} '
                 f"({E(ln[1])} CFs)</text>")
    p.append("</svg>")
    return "".join(p)


def _value(v: float | None, feat: dict[str, Any]) -> str:
    if v is None:
        return "–"
    text = f"{v:.4g}"
    labels = feat.get("labels") or {}
    for code, word in labels.items():
        if _num(code) == v:
            return text if str(word) == text else f"{text} ({word})"
    return text


def _changed(q: float | None, c: float | None) -> bool:
    if q is None or c is None:
        return q is not c
    return abs(q - c) > 1e-9 * max(1.0, abs(q))


def _example_html(tid: str, ex: dict[str, Any], feats: list[dict[str, Any]], open_: bool) -> str:
    q = ex["query"]
    cfs = ex["cfs"]
    changed = set()
    if q is not None:
        changed = {i for c in cfs for i in range(len(feats)) if _changed(q[i], c[i])}
    names = ", ".join(feats[i]["name"] for i in sorted(changed)) or "none"
    head = ['<th scope="col">feature</th>'] + (['<th scope="col">query</th>'] if q else []) + [
        f'<th scope="col">CF {j + 1}</th>' for j in range(len(cfs))]
    rows = []
    for i, f in enumerate(feats):
        unit = f" ({E(f['unit'])})" if f.get("unit") else ""
        cells = [f'<th scope="row">{E(f["name"])}{unit}</th>']
        if q is not None:
            cells.append(f"<td>{E(_value(q[i], f))}</td>")
        for c in cfs:
            if q is not None and _changed(q[i], c[i]):
                cells.append(f'<td class="chg"><mark>{E(_value(c[i], f))}</mark>'
                             '<span class="sr-only"> (changed)</span></td>')
            else:
                cells.append(f"<td>{E(_value(c[i], f))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    d = str(ex["direction"]).replace("->", " → ")
    summary = (f"seed {E(str(ex['seed']))}, test row {E(str(ex['query_id']))}, class {E(d)}: "
               f"{len(cfs)} CF{'s' if len(cfs) != 1 else ''}"
               + (f"; changed: {E(names)}" if q is not None else ""))
    cap = (f"Query (test row {E(str(ex['query_id']))}, predicted class {E(str(ex['source']))}) and "
           f"its counterfactuals for target class {E(str(ex['target']))}"
           + ("; changed values are highlighted." if q is not None else
              "; the query's values are not in this run's records."))
    return (f'<details{" open" if open_ else ""}><summary>{summary}</summary>'
            f'<div class="table-wrap" role="region" tabindex="0" aria-labelledby="{tid}-cap">'
            f'<table class="example" id="{tid}"><caption id="{tid}-cap">{cap}</caption>'
            f"<thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            "</div></details>")


def _examples_section(pre: str, board: dict[str, Any]) -> str:
    ex = board.get("examples")
    if ex is None:
        return ("<p>The board holds aggregate numbers only, no records, so it has no example "
                "counterfactuals. <code>cfbench report RUN_DIR</code> on the run folder shows them.</p>")
    if not ex:
        return "<p>This run folder holds no records.</p>"
    feats = board.get("features") or []
    has_query = any(e["query"] is not None for m in ex.values() for e in m["examples"])
    parts = [
        "<p>A few answered queries per method (directions alternating; seeds and test rows in "
        "order). Each table shows the query and the method's CFs; changed values are highlighted "
        "and marked “changed” for screen readers. The records of this run do not hold the "
        "classifier's probabilities, and this report does not reload the classifier, so no "
        "probabilities are shown; the validity columns above say how often CFs reach the target."
        + ("" if has_query else " These records predate the query values being stored, so only "
           "the CFs are shown.") + "</p>"]
    if board.get("examples_note"):
        parts.append(f'<p class="note">{E(board["examples_note"])}</p>')
    for mi, (label, m) in enumerate(sorted(ex.items())):
        parts.append(f'<section class="method" aria-labelledby="{pre}-ex{mi}"><h4 id="{pre}-ex{mi}">'
                     f"{E(label)}</h4>")
        if not m["examples"]:
            parts.append("<p>No query was answered with a CF.</p>")
        for j, e in enumerate(m["examples"]):
            parts.append(_example_html(f"{pre}-ex{mi}-{j}", e, feats, open_=j == 0))
        if m["n_failed"]:
            parts.append(f"<p>{m['n_failed']} quer{'ies' if m['n_failed'] != 1 else 'y'} without "
                         "a CF; most frequent reasons:</p><ul>" + "".join(
                             f"<li>{E(scrub(reason))} ({n}×)</li>" for reason, n in m["failures"])
                         + "</ul>")
        parts.append("</section>")
    return "".join(parts)


def _img(path: Path, alt: str) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return f"<p>Plot {E(path.name)} not found next to the board.</p>"
    b64 = base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="data:image/svg+xml;base64,{b64}" alt="{E(alt)}">'
            f"<figcaption>{E(alt)}</figcaption></figure>")


def _run_plots(board: dict[str, Any]) -> str:
    """The feature-change profile of a run (plots.py; the metric bars need per-query CIs)."""
    import tempfile

    try:
        import pandas as pd

    except ImportError:
        return "<p>Plots need matplotlib (<code>pip install cfbench-harness[augment]</code>).</p>"
    prof = pd.DataFrame({m: d["all"].get("feature_change", {}) for m, d in board["methods"].items()
                         if "all" in d}).T
    if prof.empty:
        return ""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "features.svg"
        feature_profile(prof.astype(float).fillna(0.0),
                        f"{board['task']}: share of CFs changing each feature", path)
        return _img(path, "share of each method's CFs changing each feature")


def run_command(cfg: dict[str, Any], task: str) -> str:
    """The ``cfbench run`` command of a run's configuration, into an example folder."""

    return command(cfg, task) + f" --out runs/{task}"


def augment_command(a: dict[str, Any], task: str, i: int = 0) -> str:
    if not a.get("methods"):
        return ""
    cmd = (f"cfbench augment --task {task} --methods {a['methods']} "
           f"--seeds {','.join(map(str, a.get('seeds', [])))} --fraction {a.get('fraction', 0.5):g}")
    if a.get("scenarios") and list(a["scenarios"]) != ["A", "B", "C"]:
        cmd += f" --scenarios {','.join(a['scenarios'])}"
    curve = [f for f in a.get("curve") or [] if f != a.get("fraction")]
    if curve:
        cmd += f" --curve {','.join(f'{f:g}' for f in curve)}"
    if a.get("max_per_class"):
        cmd += f" --max-per-class {a['max_per_class']}"
    if a.get("budget"):
        cmd += f" --budget {a['budget']:g}"
    if a.get("timeout"):
        cmd += f" --timeout {a['timeout']:g}"
    return cmd + f" --out runs/{task}-aug{i or ''}"


def _commands(board: dict[str, Any], is_board: bool) -> list[str]:
    task = board["task"]
    cfg = board.get("config") or {}
    suite = cfg.get("suite") or {}
    cmds = []
    if is_board and suite:  # a committed board's suite file sits beside it in leaderboard/
        cmds.append(f"cfbench run --config leaderboard/{suite['file']} --out runs/{task}   "
                    f"# suite file SHA-256 {suite['sha256'][:16]}, i.e.:")
    cmds.append(run_command(cfg, task))
    augs = board.get("augmentations") or []
    cmds += [c for i, a in enumerate(augs) if (c := augment_command(a, task, i))]
    aug_flags = "".join(f" --augment runs/{task}-aug{i or ''}" for i in range(len(augs)))
    if is_board:
        cmds.append(f"cfbench leaderboard runs/{task} --update{aug_flags}")
        cmds.append("cfbench report --board leaderboard/")
    else:
        cmds.append(f"cfbench report runs/{task}{aug_flags} --out report/{task}")
    return cmds


def _provenance(board: dict[str, Any]) -> str:
    prov = board.get("provenance") or {}
    cfg = board.get("config") or {}
    libs = dict(prov.get("libraries") or {})
    libs.update(board.get("libraries") or {})
    items = [
        ("task", board["task"]), ("task hash", board.get("task_hash", "")),
        ("data", scrub(board.get("data_source", ""))),
        ("data fingerprint", prov.get("data_fingerprint", "")),
        ("seeds", ", ".join(map(str, cfg.get("seeds", [])))), ("CFs per query (k)", cfg.get("k", "")),
        ("queries per class", cfg.get("n_queries") or "the task's default"),
        ("timeout per query (s)", cfg.get("timeout", "")),
        ("cfbench", prov.get("cfbench", "")), ("Python", prov.get("python", "")),
        ("platform", prov.get("platform", "")),
        ("libraries", ", ".join(f"{k} {v}" for k, v in sorted(libs.items()))),
    ]
    rows = "".join(f'<tr><th scope="row">{E(k)}</th><td>{E(str(v))}</td></tr>'
                   for k, v in items if v not in ("", None))
    return f'<table class="kv"><caption>Provenance</caption><tbody>{rows}</tbody></table>'


def _skipped(board: dict[str, Any]) -> str:
    sk = board.get("skipped_methods") or {}
    if not sk:
        return "<p>No method was skipped.</p>"
    return ("<p>Not run because unavailable where the run was made:</p><dl class=skipped>" + "".join(
        f"<dt>{E(m)}</dt><dd>{E(scrub(why))}</dd>" for m, why in sorted(sk.items())) + "</dl>")


def task_section(board: dict[str, Any], is_board: bool) -> str:
    """Everything about one task: tables, ranks, examples, augmentation, plots, provenance."""
    t = board["task"]
    pre = _slug(t)
    clf = board.get("classifier") or {}
    parts = [f'<section class="task" id="{pre}" aria-labelledby="{pre}-h">',
             f'<h2 id="{pre}-h">{E(t)}</h2>',
             f"<p>Classifier {E(str(clf.get('model', '?')))}: test accuracy "
             f"{_fmt(clf.get('accuracy'), '.3f')}, F1 {_fmt(clf.get('f1'), '.3f')} "
             f"({E(str(clf.get('n_train', '?')))} train / {E(str(clf.get('n_test', '?')))} test "
             f"rows). Data: {E(scrub(board.get('data_source', '')))}.</p>",
             f'<p class="note">{E(SCOPE_NOTE)} Hover or focus a header for its definition.</p>',
             f'<nav aria-label="{E(t)} sections"><ul class="toc">' + "".join(
                 f'<li><a href="#{pre}-{s}">{lab}</a></li>' for s, lab in (
                     ("tables", "tables"), ("ranks", "ranks"), ("examples", "examples"),
                     ("augmentation", "augmentation"), ("plots", "plots"),
                     ("skipped", "skipped methods"), ("provenance", "provenance"))) + "</ul></nav>",
             f'<h3 id="{pre}-tables">Metrics per direction</h3>']
    methods = board.get("methods") or {}
    for d in directions(methods):
        parts.append(_direction_table(f"{pre}-dir-{_slug(d)}", methods, d))
    for group in board.get("identical") or []:
        parts.append(f'<p class="note"><strong>Identical answers:</strong> '
                     f'{E(", ".join(group))} returned the same CFs for every query; their rows '
                     "differ only in time.</p>")
    parts.append(f'<h3 id="{pre}-ranks">Ranks and critical differences</h3>')
    ranks = board.get("ranks")
    if ranks and ranks.get("methods"):
        parts.append(f'<p class="note">{E(RANK_NOTE)}</p>')
        parts.append(_ranks_table(f"{pre}-ranks-t", ranks))
        parts.append(_ci_table(f"{pre}-ci", board))
        parts.append("<p>Critical-difference diagrams (Demšar 2006): methods on the rank axis, "
                     "1 = best; a bar joins methods whose mean ranks differ by less than the "
                     "Nemenyi CD, i.e. not significantly.</p>")
        for i, (m, info) in enumerate(ranks.get("metrics", {}).items()):
            svg = cd_diagram(f"{pre}-cd{i}", m, info.get("mean_rank", {}), _num(info.get("nemenyi_cd")))
            if svg:
                parts.append(f'<details{" open" if i == 0 else ""}><summary>{E(ranked_header(m))}'
                             f'</summary><figure class="cdfig">{svg}</figure></details>')
    else:
        parts.append("<p>Ranks, bootstrap CIs and critical differences come from per-query "
                     "scores, which this run folder does not hold (made before "
                     "<code>scores.parquet</code>); <code>cfbench leaderboard RUN_DIR --rescore"
                     "</code> writes them.</p>")
    parts.append(f'<h3 id="{pre}-examples">Example counterfactuals</h3>')
    parts.append(_examples_section(pre, board))
    parts.append(f'<h3 id="{pre}-augmentation">Augmentation under label scarcity</h3>')
    augs = board.get("augmentations") or []
    if not augs:
        parts.append("<p>No augmentation results " + (
            "on this board.</p>" if is_board else "given (<code>--augment AUG_DIR</code>).</p>"))
    for i, a in enumerate(sorted(augs, key=lambda a: _num(a.get("fraction")) or 0)):
        parts.append(_aug_table(f"{pre}-aug{i}", a))
    if augs:
        plot = scarcity_plot(f"{pre}-scarcity", augs)
        parts.append(f"<figure>{plot}</figure>" if plot else
                     "<p>One scarcity level only, so no scarcity curve" + (
                         ".</p>" if is_board else "; give several <code>--augment</code> folders "
                         "run with different <code>--fraction</code> values to draw one.</p>"))
    parts.append(f'<h3 id="{pre}-plots">Plots</h3>')
    if board.get("plots"):
        parts += [_img(p, alt) for p, alt in board["plots"]]
    else:
        parts.append(_run_plots(board))
    parts.append(f'<h3 id="{pre}-skipped">Skipped methods</h3>')
    parts.append(_skipped(board))
    parts.append(f'<h3 id="{pre}-provenance">Provenance and commands</h3>')
    parts.append(_provenance(board))
    parts.append("<p>Commands (folder names are examples):</p><pre><code>" + E("\n".join(
        _commands(board, is_board))) + "</code></pre>")
    parts.append("</section>")
    return "".join(parts)


def _overview(boards: list[dict[str, Any]]) -> str:
    head = [_th_sort("task", "ascending", cls="text"), _th_sort("classifier", "ascending", cls="text"),
            _th_sort("accuracy", "descending"), _th_sort("F1", "descending"),
            _th_sort("methods", "descending"), _th_sort("skipped", "ascending"),
            '<th scope="col" class="text">best overall rank</th>']
    rows = []
    for b in boards:
        clf = b.get("classifier") or {}
        ov = (b.get("ranks") or {}).get("overall") or {}
        best = sorted((v, m) for m, v in ov.items() if _num(v) is not None)[:3]
        rows.append([f'<th scope="row" data-v="{E(b["task"])}"><a href="#{_slug(b["task"])}">'
                     f'{E(b["task"])}</a></th>',
                     f'<td class="text" data-v="{E(str(clf.get("model")))}">{E(str(clf.get("model")))}</td>',
                     _cell(_fmt(clf.get("accuracy"), ".3f"), clf.get("accuracy")),
                     _cell(_fmt(clf.get("f1"), ".3f"), clf.get("f1")),
                     _cell(str(len(b.get("methods") or {})), len(b.get("methods") or {})),
                     _cell(str(len(b.get("skipped_methods") or {})), len(b.get("skipped_methods") or {})),
                     '<td class="text">' + (E(", ".join(f"{m} ({v:.2f})" for v, m in best)) or "–")
                     + "</td>"])
    return _table("overview", "Tasks on this leaderboard", head, rows)


CSS = """
:root{--fg:#1b1f24;--muted:#4a5360;--bg:#fff;--line:#c9d1db;--head:#eef2f6;--accent:#0b57a4;
--mark:#ffe38a;--best:#e6f2e6}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg)}
header,main,footer{max-width:1500px;margin:0 auto;padding:0 1.2rem}
header{padding-top:1rem}
h1{font-size:1.6rem;margin:.4rem 0}h2{font-size:1.35rem;border-bottom:2px solid var(--line);
padding-bottom:.2rem;margin-top:2rem}h3{font-size:1.1rem;margin-top:1.6rem}h4{margin:1rem 0 .3rem}
a{color:var(--accent)}
.note,.hint{color:var(--muted)}
.toc{display:flex;flex-wrap:wrap;gap:.3rem 1rem;list-style:none;padding:0;margin:.4rem 0}
.table-wrap{overflow-x:auto;margin:.6rem 0 1rem;border:1px solid var(--line);border-radius:4px}
.table-wrap:focus{outline:3px solid var(--accent)}
table{border-collapse:collapse;font-size:13.5px;font-variant-numeric:tabular-nums}
caption{text-align:left;padding:.45rem .6rem;font-weight:600;caption-side:top}
caption .hint{font-weight:400}
th,td{padding:.25rem .45rem;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
thead th{background:var(--head);vertical-align:bottom;white-space:normal;min-width:4.2em}
th[scope=row],td.text,th.text{text-align:left}
tbody th[scope=row]{font-weight:600}
td.wrap{white-space:normal;min-width:7em}
tbody tr:hover td,tbody tr:hover th{background:#f5f8fb}
td.best{background:var(--best)}
tfoot th,tfoot td{background:var(--head)}
thead button{font:inherit;font-weight:600;color:var(--fg);background:none;border:0;padding:.1rem .15rem;
cursor:pointer;text-align:inherit}
thead button:hover{text-decoration:underline}
thead button:focus-visible{outline:3px solid var(--accent);outline-offset:1px}
th[aria-sort] button::after{content:" \\2195";color:var(--muted);font-weight:400}
th[aria-sort=ascending] button::after{content:" \\25B2";color:var(--fg)}
th[aria-sort=descending] button::after{content:" \\25BC";color:var(--fg)}
table.kv th{text-align:left;background:var(--head)}table.kv td{text-align:left;white-space:normal}
table.example td.chg{background:var(--mark)}
mark{background:var(--mark);color:var(--fg);font-weight:700}
details{margin:.3rem 0}summary{cursor:pointer}
figure{margin:.6rem 0}figure img{max-width:100%;height:auto;border:1px solid var(--line)}
svg{max-width:100%;height:auto;font:12px system-ui,sans-serif;fill:var(--fg)}
svg .ax{stroke:var(--fg);stroke-width:1}svg .lead{stroke:var(--muted);fill:none;stroke-width:1}
svg .clique{stroke:#b3261e;stroke-width:4;stroke-linecap:round}
svg .cdbar{stroke:var(--fg);stroke-width:3}svg .small{font-size:11px}
dl.skipped dt{font-weight:700}dl.skipped dd{margin:0 0 .5rem 1.2rem}
pre{background:#f4f6f8;border:1px solid var(--line);padding:.6rem;overflow-x:auto;font-size:13px}
.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
footer{color:var(--muted);padding:2rem 1.2rem}
"""

JS = """
(function () {
  "use strict";
  function key(cell) {
    var v = cell.getAttribute("data-v");
    if (v === null || v === "") return null;
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function compare(a, b) {
    if (a === null && b === null) return 0;
    if (a === null) return 1;
    if (b === null) return -1;
    if (typeof a !== typeof b) return typeof a === "number" ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  var live = document.getElementById("sort-status");
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.tHead.rows[0].cells;
    var body = table.tBodies[0];
    Array.prototype.forEach.call(body.rows, function (r, i) { r.setAttribute("data-i", i); });
    Array.prototype.forEach.call(heads, function (th, col) {
      var button = th.querySelector("button");
      if (!button) return;
      th.setAttribute("aria-sort", "none");
      button.addEventListener("click", function () {
        var first = th.getAttribute("data-first") || "ascending";
        var now = th.getAttribute("aria-sort");
        var dir = now === first ? (first === "ascending" ? "descending" : "ascending") : first;
        Array.prototype.forEach.call(heads, function (o) {
          if (o.hasAttribute("aria-sort")) o.setAttribute("aria-sort", "none");
        });
        th.setAttribute("aria-sort", dir);
        var sign = dir === "ascending" ? 1 : -1;
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var ka = key(a.cells[col]), kb = key(b.cells[col]);
          if (ka === null || kb === null) {
            var c0 = compare(ka, kb);
            if (c0 !== 0) return c0;
          }
          var c = sign * compare(ka, kb);
          return c !== 0 ? c : Number(a.getAttribute("data-i")) - Number(b.getAttribute("data-i"));
        });
        rows.forEach(function (r) { body.appendChild(r); });
        if (live) live.textContent = (table.caption ? table.caption.textContent.split(".")[0] : "") +
          ": sorted by " + button.textContent + ", " + dir + ".";
      });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll('script[type="application/json"]'),
    function (s) { JSON.parse(s.textContent); });
})();
"""


def render_page(boards: list[dict[str, Any]], title: str, is_board: bool) -> str:
    """The whole page: one section per task, data embedded as strict JSON."""
    data = [{k: v for k, v in b.items() if k not in ("plots", "augmentations")} for b in boards]
    for d in data:  # no local paths in the page
        d["config"] = {k: v for k, v in (d.get("config") or {}).items() if k not in ("out", "data_dir")}
        d["provenance"] = {k: v for k, v in (d.get("provenance") or {}).items()
                           if k not in ("task_path", "host")}
        d["data_source"] = scrub(d.get("data_source", ""))
        if isinstance(d["provenance"].get("data_source"), str):
            d["provenance"]["data_source"] = scrub(d["provenance"]["data_source"])
    nav = "".join(f'<li><a href="#{_slug(b["task"])}">{E(b["task"])}</a></li>' for b in boards)
    intro = ("Counterfactual-explanation generators compared on tabular health tasks. Every "
             "number comes from the committed board files (<code>leaderboard/&lt;task&gt;.json</code>);"
             " nothing is re-computed in the page." if is_board else
             "The report of one cfbench run, rendered from its run folder alone.")
    body = [f"<header><h1>{E(title)}</h1><p>{intro}</p>",
            f'<nav aria-label="tasks"><ul class="toc">{nav}</ul></nav></header>',
            '<main><p id="sort-status" class="sr-only" aria-live="polite"></p>']
    if len(boards) > 1:
        body.append(_overview(boards))
    body += [task_section(b, is_board) for b in boards]
    body.append("</main>")
    body.append("<footer>Generated by <code>cfbench report</code>. "
                "The data behind this page is embedded as JSON in the element "
                "<code>#cfbench-data</code>.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{E(title)}</title><style>{CSS}</style></head><body>"
            + "".join(body)
            + f'<script type="application/json" id="cfbench-data">{embed_json(data)}</script>'
            f"<script>{JS}</script></body></html>\n")


def write_page(text: str, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    check_path_limits(out_dir, "--out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "index.html"
        tmp = out_dir / "index.html.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise UserError(f"--out {out_dir}: cannot write ({exc.strerror or exc})") from None
    return path


def build_run_report(run_dir: Path, out_dir: Path, augment_dirs: list[Path] | None = None) -> Path:
    board = load_run(run_dir, augment_dirs)
    return write_page(render_page([board], f"cfbench report: {board['task']}", False), out_dir)


def build_board_index(board_dir: Path, out_dir: Path | None = None) -> Path:
    boards = load_boards(board_dir)
    try:
        page = render_page(boards, "cfbench leaderboard", True)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # a hand-made board
        raise UserError(f"--board {board_dir}: a board cannot be rendered ({type(exc).__name__}: "
                        f"{str(exc)[:120]}); check the boards with `cfbench leaderboard --validate "
                        f"--dir {board_dir}`") from None
    return write_page(page, out_dir or board_dir)
