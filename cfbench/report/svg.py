"""The report's charts as SVG: one home for them.

matplotlib files for the committed boards (metric bars with bootstrap CIs, each method's
feature-change profile, scarcity curves), and hand-drawn inline SVG for the HTML page
(critical-difference diagrams, the scarcity plot), which needs no matplotlib.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cfbench.report.values import SCENARIOS, num, ranked_header
from cfbench.score import registry as R


def bar_metrics() -> list[tuple[str, str]]:
    """(metric, panel title) of every ranked metric, from the metric registry."""

    return [(m.name, f"{m.header} ({'failures = 0' if m.rank == 'slot_mean' else 'valid CFs'})")
            for m in R.ranked()]


def plain(text: Any) -> str:
    """``text`` shown as it is by matplotlib: every ``$`` escaped, so a name such as
    ``$x$`` is not parsed as mathtext (which fails on most such strings)."""
    return str(text).replace("$", r"\$")


def _pyplot() -> Any:
    """matplotlib, headless and with stable SVG ids."""
    # imported here: matplotlib is an optional dependency (the `augment` extra) and slow to load
    import matplotlib

    matplotlib.use("Agg")
    # optional extra `augment` (and slow to import): loaded when a plot is drawn
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "cfbench"  # stable ids: re-rendering gives identical files
    plt.rcParams["svg.fonttype"] = "none"
    return plt


def metric_bars(ci: dict[str, dict[str, list[float]]], title: str, path: Path) -> None:
    """One panel per metric; bars are means over queries with 95% bootstrap intervals."""
    plt = _pyplot()
    methods = sorted(next(iter(ci.values())).keys()) if ci else []
    bars = bar_metrics()
    fig, axes = plt.subplots(1, len(bars), figsize=(3.2 * len(bars), 0.45 * len(methods) + 1.6),
                             sharey=True)
    y = np.arange(len(methods))
    for ax, (metric, label) in zip(np.atleast_1d(axes), bars, strict=True):
        vals = ci.get(metric, {})
        mean = np.array([vals.get(m, [np.nan] * 3)[0] for m in methods], float)
        lo = np.array([vals.get(m, [np.nan] * 3)[1] for m in methods], float)
        hi = np.array([vals.get(m, [np.nan] * 3)[2] for m in methods], float)
        err = np.vstack([np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)])
        ax.barh(y, np.nan_to_num(mean), xerr=err, color="#4c72b0", ecolor="#222222", capsize=2)
        ax.set_title(plain(label), fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    ax0 = np.atleast_1d(axes)[0]
    ax0.set_yticks(y)
    ax0.set_yticklabels([plain(m) for m in methods])
    ax0.invert_yaxis()
    fig.suptitle(plain(title), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)


def feature_profile(profile: pd.DataFrame, title: str, path: Path) -> None:
    """Heat map: share of each method's CFs that change each feature."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(0.35 * profile.shape[1] + 3, 0.4 * profile.shape[0] + 2))
    im = ax.imshow(profile.to_numpy(float), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(profile.shape[1]))
    ax.set_xticklabels([plain(c) for c in profile.columns], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(profile.shape[0]))
    ax.set_yticklabels([plain(m) for m in profile.index], fontsize=8)
    fig.colorbar(im, ax=ax, label="share changed")
    ax.set_title(plain(title), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)


def scarcity_curve(agg: dict[str, Any], title: str, path: Path) -> None:
    """F1 and macro F1 (points) against the share of training rows removed: one column per
    scenario; the full model, the references and each method's *valid* CFs, with 95 % CIs."""
    plt = _pyplot()
    scenarios = sorted({d["scenario"] for d in agg["deficit"]})
    fracs = sorted({float(d["fraction"]) for d in agg["deficit"]})
    series = sorted({(r["method"], r["cfs"]) for r in agg["methods"] if r["cfs"] in ("reference", "valid")},
                    key=lambda mc: (mc[1] != "reference", mc[0]))
    colours = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(2, len(scenarios), figsize=(4.2 * len(scenarios), 6.4), squeeze=False,
                             sharex=True)
    for col, sc in enumerate(scenarios):
        for row, metric in enumerate(("f1", "macro_f1")):
            ax = axes[row][col]
            full = {float(d["fraction"]): d[f"{metric}_full"] for d in agg["deficit"] if d["scenario"] == sc}
            ys = [full[f]["mean"] * 100 if f in full else np.nan for f in fracs]
            ax.plot(fracs, ys, color="#444444", linestyle="--", linewidth=1, label="full model")
            for i, (method, cfs) in enumerate(series):
                pts = {float(r["fraction"]): r[metric] for r in agg["methods"]
                       if r["scenario"] == sc and r["method"] == method and r["cfs"] == cfs}
                x = [f for f in fracs if f in pts]
                mean = np.array([_val(pts[f]["mean"]) for f in x]) * 100
                lo = np.array([_val(pts[f]["lo"]) for f in x]) * 100
                hi = np.array([_val(pts[f]["hi"]) for f in x]) * 100
                err = np.vstack([np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)])
                shift = (i - len(series) / 2) * 0.004  # keep error bars apart
                ax.errorbar(np.array(x) + shift, mean, yerr=err, color=colours[i % len(colours)],
                            marker="o", markersize=3, capsize=2, linewidth=1,
                            linestyle="-" if cfs == "reference" else ":",
                            label=plain(method if cfs == "reference" else f"{method} (valid CFs)"))
            ax.set_title(plain(f"{sc}: {'F1' if metric == 'f1' else 'macro F1'}"), fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            if row == 1:
                ax.set_xlabel("share of training rows removed", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8,
               bbox_to_anchor=(0.5, -0.02 - 0.025 * (len(labels) // 4)))
    fig.suptitle(plain(title), fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.025 * (len(labels) // 4), 1, 1))
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)


def _val(v: Any) -> float:
    """NaN for a null from strict JSON, as matplotlib wants."""
    return np.nan if v is None else float(v)


# ----------------------------------------------------------------------------- inline, by hand
# For the HTML page (html.py): plain SVG strings, styled by its CSS; no matplotlib needed.


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
    ranks = {m: r for m, r in mean_rank.items() if num(r) is not None}
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
         f'<title id="{sid}-t">Critical-difference diagram, {escape(ranked_header(metric))}</title>',
         f'<desc id="{sid}-d">Mean ranks, 1 = best: ' + escape("; ".join(
             f"{m} {ranks[m]:.2f}" for m in order)) + (
             f". Nemenyi CD {cd:.2f}. Not significantly different: " + escape("; ".join(
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
                     f"{escape(m)} ({ranks[m]:.2f})</text>")
    p.append("</svg>")
    return "".join(p)


_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999933")


def _fractions(a: dict[str, Any]) -> list[float]:
    """The shares removed in one augmentation document (protocol 2 holds several)."""
    if isinstance(a.get("aggregate"), dict):
        return [float(d["fraction"]) for d in a["aggregate"]["deficit"]]
    f = num(a.get("fraction"))
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
                v = num(r["f1"]["mean"])
                if v is not None and r["cfs"] in ("reference", "valid"):
                    key = (str(r["scenario"]), str(r["method"]), str(r["cfs"]))
                    series.setdefault(key, {})[float(r["fraction"])] = v * 100
            continue
        for r in a.get("aggregate") or []:
            v = num(r.get("f1"))
            if v is not None and num(a.get("fraction")) is not None:
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

        p.append(f'<text x="{ox}" y="{oy - 10}">{escape(sc)} ({escape(SCENARIOS.get(sc, ""))})</text>')
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
                 f'stroke-width="2"{dash[ln]}/><text x="{pad + 30}" y="{y}">{escape(ln[0])} '
                 f"({escape(ln[1])} CFs)</text>")
    p.append("</svg>")
    return "".join(p)
