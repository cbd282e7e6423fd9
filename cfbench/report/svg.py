"""Leaderboard plots as SVG: metric bars with bootstrap CIs, and each method's feature-change profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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
    import matplotlib

    matplotlib.use("Agg")
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
    return np.nan if v is None else float(v)
