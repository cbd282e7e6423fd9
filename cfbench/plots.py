"""Leaderboard plots as SVG: metric bars with bootstrap CIs, and each method's feature-change profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def bar_metrics() -> list[tuple[str, str]]:
    """(metric, panel title) of every ranked metric, from the metric registry."""
    from cfbench import metric_registry as R

    return [(m.name, f"{m.header} ({'failures = 0' if m.rank == 'slot_mean' else 'valid CFs'})")
            for m in R.ranked()]



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
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    ax0 = np.atleast_1d(axes)[0]
    ax0.set_yticks(y)
    ax0.set_yticklabels(methods)
    ax0.invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)


def feature_profile(profile: pd.DataFrame, title: str, path: Path) -> None:
    """Heat map: share of each method's CFs that change each feature."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(0.35 * profile.shape[1] + 3, 0.4 * profile.shape[0] + 2))
    im = ax.imshow(profile.to_numpy(float), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(profile.shape[1]))
    ax.set_xticklabels(profile.columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(profile.shape[0]))
    ax.set_yticklabels(profile.index, fontsize=8)
    fig.colorbar(im, ax=ax, label="share changed")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
