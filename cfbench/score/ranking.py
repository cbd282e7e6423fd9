"""Ranking methods across queries: mean rank per metric and overall, Friedman test, Nemenyi CD.

Each query (seed × test instance) is a block.  Per query a method gets one value per ranked
metric (``metric_registry``: ``rank``); a failed query gets the worst possible value (validity
0, distance +inf), so failures are ranked, not dropped.  A CF that does not reach the target
class is no counterfactual: every metric but validity is taken over the query's *valid* CFs only,
so returning the query unchanged (distance 0) cannot rank first on proximity or sparsity.  Ranks
are 1 = best, ties averaged (Demšar 2006).

Validity counts once.  The quality metrics (proximity, sparsity, plausibility, constraints) are
ranked per query among the methods with a valid CF only, spread over the full rank range, and a
method without a valid CF gets the neutral rank (``conditional_ranks``); otherwise every quality
metric would rank failures last and repeat validity (LOF inliers and respected constraints,
near-constant among valid CFs, followed validity with a rank correlation of 0.999 on heart).
The overall rank is the mean of the validity rank and the mean quality rank (``rank_group``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cfbench.score import registry as R


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


def conditional_ranks(data: np.ndarray, has_valid: np.ndarray, higher: bool) -> np.ndarray:
    """Per block (row): the methods with a valid CF ranked among themselves and spread over
    ``1..m`` (``1 + (r - 1)(m - 1)/(n_v - 1)``), every other method (and a lone valid one)
    at the neutral rank ``(m + 1)/2``.  The ranks of a block always average ``(m + 1)/2``,
    so finding or missing a valid CF moves no quality rank: validity is ranked once, alone."""
    n, m = data.shape
    out = np.full((n, m), (m + 1) / 2.0)
    for i in range(n):
        idx = np.flatnonzero(has_valid[i])
        if len(idx) >= 2:
            r = stats.rankdata(-data[i, idx] if higher else data[i, idx])
            out[i, idx] = 1 + (r - 1) * (m - 1) / (len(idx) - 1)
    return out


def rank_methods(values: pd.DataFrame) -> dict[str, Any]:
    """Mean ranks per metric and overall (the mean over rank groups of the mean rank within
    each group), with Friedman p-values and Nemenyi CDs.  Validity is ranked on every query;
    the quality metrics by :func:`conditional_ranks` (needs ``values["n_valid"]``)."""
    methods = sorted(values["method_label"].unique())
    out: dict[str, Any] = {"methods": methods, "metrics": {}, "overall": {}, "unranked": {}}
    if not methods:
        return out
    groups: dict[str, list[np.ndarray]] = {}
    has = None
    if "n_valid" in values:
        has = (values.pivot_table(index=["seed", "query_id"], columns="method_label",
                                  values="n_valid", aggfunc="first").reindex(columns=methods) > 0)
    for metric, m in ranked_metrics().items():
        same = constant_value(values, metric, m)
        if same is not None and len(methods) >= 2:
            out["unranked"][metric] = (f"not ranked: {same:.4g} for every valid CF of every "
                                       "method, so it tells the methods apart nowhere")
            continue
        higher = m.higher_is_better
        wide = values.pivot_table(index=["seed", "query_id"], columns="method_label",
                                  values=metric, aggfunc="first").dropna()
        wide = wide.reindex(columns=methods)
        n = len(wide)
        if n == 0:
            continue
        data = wide.to_numpy(float)
        if m.rank == "slot_mean" or has is None:
            ranks = stats.rankdata(-data if higher else data, axis=1)
        else:
            ranks = conditional_ranks(data, has.reindex(wide.index).to_numpy(bool), higher)
        mean_ranks = ranks.mean(axis=0)
        groups.setdefault(m.rank_group or metric, []).append(mean_ranks)
        if len(methods) >= 3 and np.ptp(ranks, axis=1).any():
            stat, p = stats.friedmanchisquare(*ranks.T)
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


def constant_value(values: pd.DataFrame, metric: str, m: R.Metric) -> float | None:
    """The one value a quality metric takes on every query with a valid CF, over every method
    (e.g. LOF inlier 1.00 and respects constraints 1.00 for all methods on heart), else None.
    Such a metric cannot tell methods apart; ranking it would only add ties to the overall."""
    if m.rank == "slot_mean" or "n_valid" not in values:
        return None
    v = values.loc[values["n_valid"].to_numpy() > 0, metric].to_numpy(float)
    if len(v) == 0 or not np.isfinite(v).all() or np.ptp(v) > 0:
        return None
    return float(v[0])


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


def rank_across_tasks(overall: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Methods ranked over tasks, each task a block (as CF-Bench ranks over its datasets).

    Per task, the methods that are on every task's board are ranked by their overall mean rank
    on that task (1 = best, ties averaged); the cross-task rank is the mean of these ranks,
    ``R_j = (1/T) sum_t r_tj``.  Friedman's test over the T tasks and the Nemenyi critical
    difference (Demšar 2006) say whether the differences are more than chance.  A method missing
    from some task is left out and named with the tasks it lacks.
    """
    tasks = sorted(t for t, ranks in overall.items() if ranks)
    if not tasks:
        return {"tasks": [], "methods": [], "mean_rank": {}, "per_task": {}, "left_out": {},
                "friedman": {"statistic": float("nan"), "p_value": float("nan")},
                "nemenyi_cd": float("nan")}
    common = sorted(set.intersection(*(set(overall[t]) for t in tasks)))
    left_out = {m: sorted(t for t in tasks if m not in overall[t])
                for m in sorted(set().union(*(overall[t] for t in tasks))) if m not in common}
    per_task = {}
    for t in tasks:
        r = stats.rankdata([overall[t][m] for m in common]) if common else []
        per_task[t] = dict(zip(common, map(float, r), strict=True))
    data = np.array([[per_task[t][m] for m in common] for t in tasks], float)
    mean = data.mean(axis=0) if common else np.array([])
    friedman = {"statistic": float("nan"), "p_value": float("nan")}
    if len(common) >= 3 and len(tasks) >= 2 and np.ptp(data, axis=1).any():
        stat, p = stats.friedmanchisquare(*data.T)
        friedman = {"statistic": float(stat), "p_value": float(p)}
    return {"tasks": tasks, "methods": common,
            "mean_rank": dict(zip(common, map(float, mean), strict=True)),
            "per_task": per_task, "left_out": left_out, "friedman": friedman,
            "nemenyi_cd": nemenyi_cd(len(common), len(tasks))}
