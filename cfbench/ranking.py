"""Ranking methods across queries: mean rank per metric and overall, Friedman test, Nemenyi CD.

Each query (seed × test instance) is a block.  Per query a method gets one value per ranked
metric (``metric_registry``: ``rank``); a failed query gets the worst possible value (validity
0, distance +inf), so failures are ranked, not dropped.  A CF that does not reach the target
class is no counterfactual: every metric but validity is taken over the query's *valid* CFs only,
so returning the query unchanged (distance 0) cannot rank first on proximity or sparsity.  Ranks
are 1 = best, ties averaged (Demšar 2006).

The overall rank averages the ranks within each ``rank_group`` and then the groups: validity is
one group, the quality metrics over valid CFs (proximity, sparsity, plausibility, constraints)
the other, so validity weighs one half instead of counting again through every quality metric
that is near-constant among valid CFs (LOF inliers and respected constraints followed validity
with a rank correlation of 0.999 on heart when each was an equal part of the overall rank).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cfbench import metric_registry as R


def ranked_metrics() -> dict[str, R.Metric]:
    """Ranked metrics by name, in registry order."""
    return {m.name: m for m in R.ranked()}


def failure_value(m: R.Metric) -> float:
    """The value of a query without a valid CF: the worst the metric can take."""
    return 0.0 if m.rank == "slot_mean" or m.higher_is_better else np.inf


def per_query_values(cf: pd.DataFrame, q: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, seed, query): the values the ranks are computed from, and
    ``n_valid`` (the query's valid CFs; the quality metrics' CIs use queries with one).

    Validity counts every returned CF over the query's k slots; the other metrics only the
    valid CFs (see module doc).
    """
    cf = cf.assign(**{m.name: cf[m.name].astype(float) for m in R.ranked()})
    valid = cf["validity"].astype(bool)
    by_valid = cf[valid].groupby("qidx")
    out = q[["qidx", "method_label", "seed", "query_id", "k"]].set_index("qidx")
    out["n_valid"] = pd.Series(out.index.map(by_valid.size()), index=out.index).fillna(0)
    for m in R.ranked():
        if m.rank == "slot_mean":
            vals = by_valid[m.name].sum()
        elif m.rank == "min":
            vals = by_valid[m.name].min()
        else:
            vals = by_valid[m.name].mean()
        col = pd.Series(out.index.map(vals), index=out.index, dtype=float)
        if m.rank == "slot_mean":
            col = col / out["k"]
        out[m.name] = col.fillna(failure_value(m))
    return out.reset_index(drop=True)


def ci_values(values: pd.DataFrame, metric: str) -> np.ndarray:
    """The per-query values a metric's bootstrap CI is taken over: every query for validity,
    the queries with a valid CF for the quality metrics."""
    m = R.get(metric)
    v = values[metric].to_numpy(float)
    return v if m.rank == "slot_mean" else v[values["n_valid"].to_numpy() > 0]


def nemenyi_cd(n_methods: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Critical difference of mean ranks: ``q_alpha * sqrt(k (k + 1) / (6 N))``.

    ``q_alpha`` is the studentized range quantile for k groups and infinite degrees of freedom
    divided by sqrt(2) (Demšar 2006).
    """
    if n_methods < 2 or n_blocks < 1:
        return float("nan")
    q = stats.studentized_range.ppf(1 - alpha, n_methods, np.inf) / np.sqrt(2)
    return float(q * np.sqrt(n_methods * (n_methods + 1) / (6.0 * n_blocks)))


def rank_methods(values: pd.DataFrame) -> dict[str, Any]:
    """Mean ranks per metric and overall (the mean over rank groups of the mean rank within
    each group), with Friedman p-values and Nemenyi CDs."""
    methods = sorted(values["method_label"].unique())
    out: dict[str, Any] = {"methods": methods, "metrics": {}, "overall": {}}
    if not methods:
        return out
    groups: dict[str, list[np.ndarray]] = {}
    for metric, m in ranked_metrics().items():
        higher = m.higher_is_better
        wide = values.pivot_table(index=["seed", "query_id"], columns="method_label",
                                  values=metric, aggfunc="first").dropna()
        wide = wide.reindex(columns=methods)
        n = len(wide)
        if n == 0:
            continue
        data = wide.to_numpy(float)
        ranks = stats.rankdata(-data if higher else data, axis=1)
        mean_ranks = ranks.mean(axis=0)
        groups.setdefault(m.rank_group or metric, []).append(mean_ranks)
        if len(methods) >= 3 and np.ptp(data, axis=1).any():
            stat, p = stats.friedmanchisquare(*data.T)
            friedman = {"statistic": float(stat), "p_value": float(p)}
        else:
            friedman = {"statistic": float("nan"), "p_value": float("nan")}
        out["metrics"][metric] = {
            "higher_is_better": higher,
            "group": m.rank_group or metric,
            "n_queries": n,
            "mean_rank": dict(zip(methods, map(float, mean_ranks), strict=True)),
            "friedman": friedman,
            "nemenyi_cd": nemenyi_cd(len(methods), n),
        }
    if groups:
        overall = np.mean([np.mean(g, axis=0) for g in groups.values()], axis=0)
        out["overall"] = dict(zip(methods, map(float, overall), strict=True))
    return out


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap over queries, seeded."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    lo, hi = np.percentile(means, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(v.mean()), float(lo), float(hi)
