"""The augmentation study's results read back and shown: Markdown tables with every
number's 95 % CI, and the older protocol-1 table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from cfbench.core.errors import UserError
from cfbench.core.strict_json import read_json
from cfbench.execution.augment import SCENARIOS
from cfbench.report.markdown import md_cell


def _missing(v: Any) -> bool:  # NaN in memory, null once read back from strict JSON
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt_ci(c: dict[str, Any] | None, scale: float = 100, signed: bool = False, digits: int = 1) -> str:
    """``mean [lo, hi]``; a mean without a CI (one repetition) prints ``[–]``."""
    if not c or _missing(c.get("mean", c.get("value"))):
        return "–"
    v = c.get("mean", c.get("value"))
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    if _missing(c.get("lo")) or _missing(c.get("hi")):
        return f.format(v * scale) + " [–]"
    return f"{f.format(v * scale)} [{c['lo'] * scale:.{digits}f}, {c['hi'] * scale:.{digits}f}]"


def fmt_p(t: dict[str, Any] | None) -> str:
    if not t or _missing(t.get("p")):
        return "–"
    p = t["p"]
    return ("p < 0.001" if p < 0.001 else f"p = {p:.3f}") + (" *" if p < 0.05 else "")


def fmt_count(c: dict[str, Any] | None) -> str:
    if not c:
        return "–"
    return f"{c['mean']:.0f}" if c["min"] == c["max"] else f"{c['min']:.0f}–{c['max']:.0f}"


def fmt_recovery(r: dict[str, Any], d: dict[str, Any]) -> str:
    if not d.get("f1_present"):
        return "no deficit to recover"
    rec = r.get("f1_recovery")
    return fmt_ci(rec, scale=1, digits=2) if rec else "–"


def to_markdown(agg: Any, fraction: float | None = None) -> str:
    """The augmentation tables in Markdown: the deficit per scenario, then per method (every
    number with its 95 % CI), at ``fraction``; with more fractions, the scarcity curve's table.
    A list (protocol 1 boards) renders the older mean ± std table."""

    if isinstance(agg, list):
        return _legacy_markdown(agg)
    fracs = sorted({float(d["fraction"]) for d in agg["deficit"]})
    if not fracs and not agg["methods"]:
        return "No augmentation rows."
    main = fraction if fraction is not None else (0.5 if 0.5 in fracs else fracs[0])
    defs = {(d["fraction"], d["scenario"]): d for d in agg["deficit"]}
    lines = ["| scenario | full model F1 | scarce model F1 | F1 lost (pts) | deficit to recover |",
             "|---|---|---|---|---|"]
    for (f, sc), d in sorted(defs.items()):
        if f == main:
            lines.append(f"| {sc} ({SCENARIOS[sc]}) | {fmt_ci(d['f1_full'])} | {fmt_ci(d['f1_scarce'])} | "
                         f"{fmt_ci(d['f1_gap'], signed=True)} | {'yes' if d['f1_present'] else 'no'} |")
    lines += ["", "| scenario | method | CFs | added | distinct | F1 | macro F1 | bal. acc. "
              "| F1 gain (pts) | gain vs none | Δ F1 vs SMOTE (pts) | vs SMOTE | rel. recovery | n |",
              "|" + "---|" * 14]
    for r in agg["methods"]:
        if r["fraction"] != main:
            continue
        d = defs[(r["fraction"], r["scenario"])]
        smote = r.get("vs_smote")
        lines.append(
            f"| {r['scenario']} | {md_cell(r['method'])} | {md_cell(r['cfs'])} | "
            f"{fmt_count(r.get('n_added'))} | "
            f"{fmt_count(r.get('n_distinct'))} | {fmt_ci(r['f1'])} | {fmt_ci(r['macro_f1'])} | "
            f"{fmt_ci(r['balanced_accuracy'])} | {fmt_ci(r['f1_gain'], signed=True)} | "
            f"{fmt_p(r.get('vs_no-augmentation'))} | {fmt_ci(smote, signed=True)} | {fmt_p(smote)} | "
            f"{fmt_recovery(r, d)} | {r['n_seeds']} |")
    if len(fracs) > 1:
        lines += ["", "Scarcity curve: F1 (points, 95 % CI) by share of training rows removed "
                  "(references and *valid* CFs).", "",
                  "| scenario | method | CFs | " + " | ".join(f"{f:.0%} removed" for f in fracs) + " |",
                  "|---|---|---|" + "---|" * len(fracs)]
        for sc in sorted({d["scenario"] for d in agg["deficit"]}):
            lines.append(f"| {sc} | full model | – | " + " | ".join(
                fmt_ci(defs[(f, sc)]["f1_full"]) if (f, sc) in defs else "–" for f in fracs) + " |")
            curve: dict[tuple[str, str], dict[float, dict[str, Any]]] = {}
            for r in agg["methods"]:
                if r["scenario"] == sc and r["cfs"] in ("reference", "valid"):
                    curve.setdefault((r["method"], r["cfs"]), {})[r["fraction"]] = r["f1"]
            for (m, cfs), by in sorted(curve.items(), key=lambda kv: (kv[0][1] != "reference", kv[0])):
                lines.append(f"| {sc} | {md_cell(m)} | {md_cell(cfs)} | " + " | ".join(
                    fmt_ci(by.get(f)) for f in fracs) + " |")
    return "\n".join(lines)


LEGACY_METRICS = ("f1", "macro_f1", "accuracy", "balanced_accuracy", "f1_recovered", "f1_recovered_rel",
           "macro_f1_recovered", "macro_f1_recovered_rel", "n_added")


def _legacy_aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Protocol 1 (fixed test split, mean ± std over seeds): kept to render older boards."""
    df = pd.DataFrame(rows)
    if df.empty:
        return []
    out = []
    for (scenario, method, cfs), g in df.groupby(["scenario", "method", "cfs"], sort=True):
        row: dict[str, Any] = {"scenario": scenario, "method": method, "cfs": cfs, "n_seeds": len(g)}
        for m in LEGACY_METRICS:
            vals = g[m].astype(float)
            row[m] = float(vals.mean())
            row[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        out.append(row)
    return out


def _legacy_markdown(agg: list[dict[str, Any]]) -> str:
    """Augmentation table: F1 points (×100) as mean ± std over seeds ("± –" from one seed)."""

    head = ("| scenario | method | CFs | added | F1 | macro F1 | bal. acc. | F1 recovered (pts) "
            "| rel. recovery | macro F1 recovered (pts) |")
    lines = [head, "|" + "---|" * 10]
    def pm(r: dict[str, Any], m: str) -> str:  # a number older files lack prints as "–"
        v, s = r.get(m), r.get(f"{m}_std")
        if _missing(v):
            return "–"
        if r.get("n_seeds", 2) < 2 or _missing(s):  # no spread from one seed
            return f"{v * 100:.1f} ± –"
        return f"{v * 100:.1f} ± {s * 100:.1f}"

    for r in agg:
        rel = "–" if _missing(r.get("f1_recovered_rel")) else f"{r['f1_recovered_rel']:.2f}"
        added = "–" if _missing(r.get("n_added")) else f"{r['n_added']:.0f}"
        lines.append(
            f"| {r['scenario']} ({SCENARIOS[r['scenario']]}) | {md_cell(r['method'])} | "
            f"{md_cell(r['cfs'])} | "
            f"{added} | {pm(r, 'f1')} | {pm(r, 'macro_f1')} | {pm(r, 'balanced_accuracy')} | "
            f"{pm(r, 'f1_recovered')} | {rel} | {pm(r, 'macro_f1_recovered')} |"
        )
    return "\n".join(lines)


def load(out: Path) -> dict[str, Any]:
    path = Path(out) / "augment.json"
    if not path.exists():
        raise UserError(f"{out}: no augment.json (expected the --out folder of `cfbench augment`)")
    try:
        doc = read_json(path, strict=False)
    except UserError as exc:
        raise UserError(f"{path}: not an augmentation result of `cfbench augment` "
                        f"({str(exc).removeprefix(f'{path}: ')})") from None
    try:
        agg = doc["aggregate"]
        shown = {r["fraction"] for r in agg["methods"]} if isinstance(agg, dict) else {None}
        for fraction in shown or {None}:  # reads every field the tables and plots show
            to_markdown(agg, fraction)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise UserError(f"{path}: not an augmentation result of `cfbench augment` "
                        f"({type(exc).__name__}: {exc})") from None
    return doc
