"""Ranking methods across queries: mean rank per metric and overall, Friedman test, Nemenyi CD.

Each query (seed × test instance) is a block.  Per query a method gets one value per metric;
a failed query gets the worst possible value (validity 0, distance +inf), so failures are
ranked, not dropped.  A CF that does not reach the target class is no counterfactual: every
metric but validity is taken over the query's *valid* CFs only, so returning the query
unchanged (distance 0) cannot rank first on proximity or sparsity.  Ranks are 1 = best, ties
averaged (Demšar 2006).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

#: metric -> (per-query aggregation over the query's k slots, higher is better, failure value)
RANKED = {
    "validity": ("slot_mean", True, 0.0),
    "l2_minmax": ("min", False, np.inf),
    "n_changed": ("min", False, np.inf),
    "lof_inlier": ("slot_mean", True, 0.0),
    "respects_constraints": ("slot_mean", True, 0.0),
}


def per_query_values(cf: pd.DataFrame, q: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, seed, query): the values the ranks are computed from.

    Validity counts every returned CF; the other metrics only the valid ones (see module doc).
    """
    cf = cf.assign(validity=cf["valid"].astype(float),
                   respects_constraints=(~cf["violates_constraints"]).astype(float),
                   lof_inlier=cf["lof_inlier"].astype(float))
    by_all = cf.groupby("qidx")
    by_valid = cf[cf["valid"].astype(bool)].groupby("qidx")
    out = q[["qidx", "method_label", "seed", "query_id", "k"]].set_index("qidx")
    for metric, (how, _, fail) in RANKED.items():
        g = by_all if metric == "validity" else by_valid
        if how == "min":
            vals = g[metric].min()
        else:
            vals = g[metric].sum()
        col = out.index.map(vals)
        col = pd.Series(col, index=out.index, dtype=float)
        if how == "slot_mean":
            col = col / out["k"]
        out[metric] = col.fillna(fail)
    return out.reset_index(drop=True)


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
    """Mean ranks per metric and overall, with Friedman p-values and Nemenyi CDs."""
    methods = sorted(values["method_label"].unique())
    out: dict[str, Any] = {"methods": methods, "metrics": {}, "overall": {}}
    if not methods:
        return out
    per_metric_means = []
    for metric, (_, higher, _) in RANKED.items():
        wide = values.pivot_table(index=["seed", "query_id"], columns="method_label",
                                  values=metric, aggfunc="first").dropna()
        wide = wide.reindex(columns=methods)
        n = len(wide)
        if n == 0:
            continue
        data = wide.to_numpy(float)
        ranks = stats.rankdata(-data if higher else data, axis=1)
        mean_ranks = ranks.mean(axis=0)
        per_metric_means.append(mean_ranks)
        if len(methods) >= 3 and np.ptp(data, axis=1).any():
            stat, p = stats.friedmanchisquare(*data.T)
            friedman = {"statistic": float(stat), "p_value": float(p)}
        else:
            friedman = {"statistic": float("nan"), "p_value": float("nan")}
        out["metrics"][metric] = {
            "higher_is_better": higher,
            "n_queries": n,
            "mean_rank": dict(zip(methods, map(float, mean_ranks), strict=True)),
            "friedman": friedman,
            "nemenyi_cd": nemenyi_cd(len(methods), n),
        }
    if per_metric_means:
        overall = np.mean(per_metric_means, axis=0)
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
