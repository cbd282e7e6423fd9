"""HTML leaderboard: a run folder or the committed boards rendered as one self-contained page.

``cfbench report RUN_DIR --out DIR`` reads the run folder (``summary.json``, ``run.json``,
``records.jsonl``, ``scores.parquet``, optional ``augment.json`` folders) and ``cfbench report
--board leaderboard/`` the committed ``<task>.json`` boards and their SVG plots.  Nothing is
re-scored: the task's data and classifier are not loaded (only a run folder made before schema
version 2 is summarised again with its task), so a report can be built where the files are.  The page
inlines its CSS, JavaScript, plots and data (strict JSON, ``null`` for undefined numbers); it
needs no network when viewed.

This module renders; the data is read by ``page_data.py``, the charts are drawn by ``svg.py``,
and the CSS and JavaScript are the package files ``static/report.css`` and ``static/report.js``.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import tempfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import pandas as pd

from cfbench.core.errors import UserError
from cfbench.core.strict_json import json_safe
from cfbench.records.store import check_path_limits
from cfbench.report.augment import fmt_ci, fmt_count, fmt_p, fmt_recovery
from cfbench.report.board import RANK_NOTE, SCOPE_NOTE
from cfbench.report.board import run_command as command
from cfbench.report.page_data import load_boards, load_run
from cfbench.report.svg import cd_diagram, feature_profile, scarcity_plot
from cfbench.report.values import SCENARIOS, num, ranked_header
from cfbench.score.ranking import rank_across_tasks
from cfbench.score.registry import columns

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


def table_columns() -> list[Column]:
    """The direction tables' numeric columns, in the order of the terminal and Markdown tables."""
    return [Column(scope, m.name, m.column_header(scope), m.fmt, m.better,
                   f"{m.description} ({_SCOPE_HELP[scope]})") for scope, m in columns()]


# ----------------------------------------------------------------------------- strict JSON


def embed_json(obj: Any) -> str:
    """Strict JSON safe inside ``<script type="application/json">`` (no ``<`` can end the tag)."""
    text = json.dumps(json_safe(obj), allow_nan=False, separators=(",", ":"), sort_keys=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_ABS_PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.~+-]+/)+([\w.~+-]+)")


def scrub(text: str) -> str:
    """Drop the folders of absolute paths (``/a/b/c`` → ``…/c``): pages carry no local paths."""
    return _ABS_PATH.sub(lambda m: "…/" + m.group(1), str(text))


# ----------------------------------------------------------------------------- rendering

E = html.escape


def _slug(text: str) -> str:
    """An id fragment for ``text``: lower case, other runs as ``-`` (``x`` when nothing is left)."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def _fmt(v: Any, fmt: str) -> str:
    """``v`` formatted with ``fmt``, or "–" when it is no finite number."""
    f = num(v)
    return "–" if f is None else format(f, fmt)


def _dv(v: Any) -> str:
    """The ``data-v`` sort key of a cell: the exact float, or empty (sorted last)."""
    f = num(v)
    return "" if f is None else repr(f)


def _th_sort(label: str, first: str, help_text: str = "", cls: str = "") -> str:
    """A column header whose button sorts the table; ``first`` is the order of the first click."""
    title = f' title="{E(help_text)}"' if help_text else ""
    c = f' class="{cls}"' if cls else ""
    return (f'<th scope="col"{c} data-first="{first}"><button type="button"{title}>'
            f"{E(label)}</button></th>")


def _first(better: str | None) -> str:
    """A column's first sort order: better values on top."""
    return "descending" if better == "higher" else "ascending"


def _best_marks(values: list[float | None], better: str | None) -> set[int]:
    """Rows holding the best value; none when no direction is better or most rows share it."""
    vals = [(i, v) for i, v in enumerate(values) if v is not None]
    if better is None or len(vals) < 2 or len({v for _, v in vals}) < 2:
        return set()
    best = (max if better == "higher" else min)(v for _, v in vals)
    marks = {i for i, v in vals if v == best}
    return marks if len(marks) <= len(vals) / 2 else set()  # a best shared by most says little


def _cell(text: str, v: Any, best: bool = False) -> str:
    """A data cell with its sort key; the best one bold, and said so to screen readers."""
    if best:
        return (f'<td data-v="{_dv(v)}" class="best"><strong>{E(text)}</strong>'
                '<span class="sr-only"> (best)</span></td>')
    return f'<td data-v="{_dv(v)}">{E(text)}</td>'


def _table(tid: str, caption: str, head: list[str], body_rows: list[list[str]],
           foot_rows: list[str] | None = None) -> str:
    """A sortable table in a scrollable, keyboard-focusable region labelled by its caption."""
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
    """Every method's metrics in one direction (or all), best values marked."""
    cols = table_columns()
    labels = [m for m in sorted(methods) if direction in methods[m]]
    head = [_th_sort("method", "ascending", cls="text"), _th_sort("queries", "descending")]
    head += [_th_sort(c.header, _first(c.better), c.help + (
        f" ({c.better} is better)" if c.better else "")) for c in cols]
    head.append(_th_sort("failures", "ascending", "queries without a CF, by status", cls="text"))
    values = {c: [num(methods[m][direction].get(c.scope, {}).get(c.key)) for m in labels]
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
    """The ranked metrics' means with 95% bootstrap intervals; empty without CIs."""
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
            mean, lo, hi = (num(x) for x in (list(v) + [None] * 3)[:3])
            text = "–" if mean is None else f"{mean:.2f}" + (
                f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else "")
            row.append(_cell(text, mean))
        rows.append(row)
    cap = ("Ranked metrics: mean over queries (seed × test instance, both directions) with the "
           "95% percentile bootstrap interval. Validity counts failures as 0; the others are "
           "over valid CFs only.")
    return _table(tid, cap, head, rows)


def _p(v: Any) -> str:
    """A p-value in two significant digits; "<1e-4" below that."""
    f = num(v)
    return "–" if f is None else (f"{f:.2g}" if f >= 1e-4 else "<1e-4")


def _ranks_table(tid: str, ranks: dict[str, Any]) -> str:
    """Mean ranks per metric and overall, the Friedman p and Nemenyi CD as the footer."""
    metrics = list(ranks.get("metrics", {}))
    methods = list(ranks.get("methods", []))
    head = [_th_sort("method", "ascending", cls="text"),
            _th_sort("overall", "ascending", "mean of the per-metric mean ranks (1 = best)")]
    head += [_th_sort(ranked_header(m), "ascending", f"mean rank on {ranked_header(m)}")
             for m in metrics]
    overall = ranks.get("overall") or {}
    rows = []
    for lab in sorted(methods, key=lambda m: (num(overall.get(m)) or math.inf, m)):
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
                     _cell(fmt_ci(d["f1_full"]), num(d["f1_full"]["mean"])),
                     _cell(fmt_ci(d["f1_scarce"]), num(d["f1_scarce"]["mean"])),
                     _cell(fmt_ci(d["f1_gap"], True), num(d["f1_gap"]["mean"])),
                     f'<td class="text">{"yes" if d["f1_present"] else "no"}</td>'])
    n_rep = len(a.get("seeds") or [])
    out = [_table(f"{tid}-deficit", f"F1 lost to scarcity ({num(main) or 0:.0%} of the training "
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
            _cell(fmt_count(r.get("n_added")), num(added.get("mean"))),
            _cell(fmt_count(r.get("n_distinct")), num(distinct.get("mean"))),
            _cell(fmt_ci(r["f1"]), num(r["f1"]["mean"])),
            _cell(fmt_ci(r["macro_f1"]), num(r["macro_f1"]["mean"])),
            _cell(fmt_ci(r["balanced_accuracy"]), num(r["balanced_accuracy"]["mean"])),
            _cell(fmt_ci(r["f1_gain"], True), num(r["f1_gain"]["mean"])),
            _cell(fmt_p(r.get("vs_no-augmentation")), num((r.get("vs_no-augmentation") or {}).get("p"))),
            _cell(fmt_ci(smote, True), num((smote or {}).get("mean"))),
            _cell(fmt_p(smote), num((smote or {}).get("p"))),
            _cell(rec, num((r.get("f1_recovery") or {}).get("value"))),
            _cell(str(r["n_seeds"]), r["n_seeds"])])
    out.append(_table(f"{tid}-methods", "Augmentation: every row adds the same number of rows; "
                      "means over repetitions with 95 % CIs (corrected resampled t)", head, rows))
    return "".join(out)


def _aug_table(tid: str, a: dict[str, Any]) -> str:
    """One augmentation document's tables: protocol 2's, or the older per-seed means ± std."""
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
            v, s = num(r.get(key)), num(r.get(f"{key}_std"))
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
    frac = num(a.get("fraction"))
    seeds = ", ".join(map(str, a.get("seeds") or []))
    cap = (f"Augmentation under label scarcity: {frac:.0%} of the training rows removed"
           if frac is not None else "Augmentation under label scarcity") + (
        f"; mean ± std over seeds {E(seeds)}; F1 in points on the fixed test split." if seeds else ".")
    return _table(tid, cap, head, rows)


def _value(v: float | None, feat: dict[str, Any]) -> str:
    """A feature value as shown: four significant digits, with its category label if any."""
    if v is None:
        return "–"
    text = f"{v:.4g}"
    labels = feat.get("labels") or {}
    for code, word in labels.items():
        if num(code) == v:
            return text if str(word) == text else f"{text} ({word})"
    return text


def _changed(q: float | None, c: float | None) -> bool:
    """Whether a CF changed a feature: beyond float noise, or a value missing on one side only."""
    if q is None or c is None:
        return q is not c
    return abs(q - c) > 1e-9 * max(1.0, abs(q))


def _example_html(tid: str, ex: dict[str, Any], feats: list[dict[str, Any]], open_: bool) -> str:
    """One query and its CFs as a collapsible table, changed values highlighted."""
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
    """The example counterfactuals of every method, or why there are none."""
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
    """An SVG file inlined as a data-URI image with its caption; a note when it is missing."""
    try:
        data = path.read_bytes()
    except OSError:
        return f"<p>Plot {E(path.name)} not found next to the board.</p>"
    b64 = base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="data:image/svg+xml;base64,{b64}" alt="{E(alt)}">'
            f"<figcaption>{E(alt)}</figcaption></figure>")


def _run_plots(board: dict[str, Any]) -> str:
    """The feature-change profile of a run (svg.py; the metric bars need per-query CIs)."""
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
    """The ``cfbench augment`` command of an augmentation document ("" without methods)."""
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
    """The commands that rebuild a task's section: run, augment, then leaderboard or report."""
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
        for i, e in enumerate(board.get("added") or []):  # methods added later, one run each
            cmds.append(f"{e.get('command')} --out runs/{task}-add{i}   # added: "
                        + ", ".join(map(str, e.get("methods") or [])))
            cmds.append(f"cfbench leaderboard --add runs/{task}-add{i}")
        cmds.append("cfbench report --board leaderboard/")
    else:
        cmds.append(f"cfbench report runs/{task}{aug_flags} --out report/{task}")
    return cmds


def _provenance(board: dict[str, Any]) -> str:
    """Where the numbers come from (task, data, seeds, versions) as a key-value table."""
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
    """The methods not run and why, or a line saying none was."""
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
            svg = cd_diagram(f"{pre}-cd{i}", m, info.get("mean_rank", {}), num(info.get("nemenyi_cd")))
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
    for i, a in enumerate(sorted(augs, key=lambda a: num(a.get("fraction")) or 0)):
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
    """One row per task (classifier, methods, best overall ranks), linking to its section."""
    head = [_th_sort("task", "ascending", cls="text"), _th_sort("classifier", "ascending", cls="text"),
            _th_sort("accuracy", "descending"), _th_sort("F1", "descending"),
            _th_sort("methods", "descending"), _th_sort("skipped", "ascending"),
            '<th scope="col" class="text">best overall rank</th>']
    rows = []
    for b in boards:
        clf = b.get("classifier") or {}
        ov = (b.get("ranks") or {}).get("overall") or {}
        best = sorted((v, m) for m, v in ov.items() if num(v) is not None)[:3]
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

def _cross_task(boards: list[dict[str, Any]]) -> str:
    """Methods ranked over the tasks (``rank_across_tasks``): one row per method on every board."""
    across = rank_across_tasks({b["task"]: (b.get("ranks") or {}).get("overall") or {}
                                for b in boards})
    tasks, mean = across["tasks"], across["mean_rank"]
    if len(tasks) < 2 or not mean:
        return ""
    head = [_th_sort("method", "ascending", cls="text"),
            _th_sort("mean rank", "ascending", "mean over tasks of the method's rank on each task")]
    head += [_th_sort(t, "ascending", f"rank on {t} by overall mean rank") for t in tasks]
    rows = []
    for m in sorted(mean, key=lambda k: (mean[k], k)):
        rows.append([f'<th scope="row" data-v="{E(m)}">{E(m)}</th>', _cell(_fmt(mean[m], ".2f"), mean[m])]
                    + [_cell(_fmt(across["per_task"][t][m], ".1f"), across["per_task"][t][m])
                       for t in tasks])
    fr = across["friedman"]
    cap = (f"Rank across {len(tasks)} tasks (each task a block; per task the methods are ranked "
           f"by their overall mean rank, 1 = best): Friedman χ² = {_fmt(fr['statistic'], '.2f')}, "
           f"p = {_p(fr['p_value'])}; Nemenyi CD (α = 0.05) = "
           f"{_fmt(across['nemenyi_cd'], '.2f')}.")
    if across["left_out"]:
        cap += " Not on every board, so not ranked here: " + "; ".join(
            f"{E(m)} (missing on {E(', '.join(ts))})" for m, ts in across["left_out"].items()) + "."
    return _table("across-tasks", cap, head, rows)


#: the page's stylesheet and script, package files inlined into every page
STATIC = files("cfbench.report") / "static"


def static_text(name: str) -> str:
    """A file of ``static/`` (``report.css``, ``report.js``), read when a page is rendered."""
    return (STATIC / name).read_text(encoding="utf-8")


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
        body.append(_cross_task(boards))
    body += [task_section(b, is_board) for b in boards]
    body.append("</main>")
    body.append("<footer>Generated by <code>cfbench report</code>. "
                "The data behind this page is embedded as JSON in the element "
                "<code>#cfbench-data</code>.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{E(title)}</title><style>\n{static_text('report.css')}</style></head><body>"
            + "".join(body)
            + f'<script type="application/json" id="cfbench-data">{embed_json(data)}</script>'
            f"<script>\n{static_text('report.js')}</script></body></html>\n")


def write_page(text: str, out_dir: Path) -> Path:
    """Write ``index.html`` into ``out_dir`` atomically (a temporary file, then a rename)."""
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
    """``cfbench report RUN_DIR``: the page of one run folder; returns its path."""
    board = load_run(run_dir, augment_dirs)
    return write_page(render_page([board], f"cfbench report: {board['task']}", False), out_dir)


def build_board_index(board_dir: Path, out_dir: Path | None = None) -> Path:
    """``cfbench report --board``: one page across the committed boards; returns its path.

    A board that cannot be rendered is a one-line user error, not a traceback.
    """
    boards = load_boards(board_dir)
    try:
        page = render_page(boards, "cfbench leaderboard", True)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # a hand-made board
        raise UserError(f"--board {board_dir}: a board cannot be rendered ({type(exc).__name__}: "
                        f"{str(exc)[:120]}); check the boards with `cfbench leaderboard --validate "
                        f"--dir {board_dir}`") from None
    return write_page(page, out_dir or board_dir)
