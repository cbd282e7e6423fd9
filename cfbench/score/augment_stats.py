"""Statistics of the augmentation study: means with 95 % CIs over repetitions, paired tests,
and relative recovery as a ratio of means with a bootstrap CI.

Every repetition draws its own stratified train/test split of the same data, so the training
sets of two repetitions overlap and their scores are not independent: the plain t-interval over
repetitions is too narrow and the plain paired t-test too eager (Dietterich 1998).  CIs and
tests here use the corrected resampled t statistic of Nadeau and Bengio (2003),

    Var(mean) = (1/n + n_test/n_train) * s**2,     t = mean / sqrt(Var(mean)),  df = n - 1,

where s is the standard deviation over the n repetitions (of a score, or of the paired
per-repetition difference between two methods).  It was chosen over the Wilcoxon signed-rank
test because the Wilcoxon test, like the plain t-test, treats the repetitions as independent;
the corrected t-test is the one designed for repeated random train/test splits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

LEVEL = 0.95
N_BOOT = 2000
#: what every group of rows reports (mean and 95 % CI over repetitions)
SCORES = ("f1", "macro_f1", "accuracy", "balanced_accuracy", "f1_gain", "macro_f1_gain")
#: the reference rows each method is tested against (paired on repetition), on F1
BASELINES = ("no-augmentation", "smote")
#: the range of a score, and of a difference of two scores (a gain, an F1 lost)
SCORE_RANGE, DIFF_RANGE = (0.0, 1.0), (-1.0, 1.0)


def _finite(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[np.isfinite(a)]


def corrected_ci(values: Sequence[float], ratio: float, level: float = LEVEL,
                 bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """Mean and CI of ``values`` (one per repetition; NaN dropped) with the corrected variance
    ``(1/n + ratio) s**2``, ``ratio = n_test / n_train``.  ``n`` counts the finite values; with
    fewer than two the bounds are NaN.  ``bounds``: the range the quantity cannot leave (a
    score's [0, 1], a difference of scores' [-1, 1]); the interval is clipped to it, as the
    symmetric t-interval can reach past a score's range when the spread is wide."""
    v = _finite(values)
    n = len(v)
    if n == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    mean = float(v.mean())
    if n < 2:
        return {"mean": mean, "lo": math.nan, "hi": math.nan, "n": n}
    se = math.sqrt((1 / n + ratio) * float(v.var(ddof=1)))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return {"mean": mean, "lo": lo, "hi": hi, "n": n}


def corrected_paired_test(a: Sequence[float], b: Sequence[float], ratio: float,
                          level: float = LEVEL,
                          bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """Corrected resampled paired t-test of ``a - b`` (repetition by repetition; pairs with a
    NaN dropped): mean difference, its CI (clipped to ``bounds``) and the two-sided p-value."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    ci = corrected_ci(d, ratio, level, bounds)
    d = _finite(d)
    n = len(d)
    if n < 2:
        p = math.nan
    else:
        var = (1 / n + ratio) * float(d.var(ddof=1))
        if var == 0:  # every repetition gives the same difference
            p = 1.0 if float(d.mean()) == 0 else 0.0
        else:
            t = float(d.mean()) / math.sqrt(var)
            p = float(2 * stats.t.sf(abs(t), n - 1))
    return {**ci, "p": p}


def ratio_of_means(gain: Sequence[float], gap: Sequence[float], n_boot: int = N_BOOT,
                   level: float = LEVEL, seed: int = 0) -> dict[str, Any]:
    """``mean(gain) / mean(gap)`` over repetitions with both finite, and its percentile
    bootstrap CI (repetitions resampled with replacement, pairs kept together; resamples whose
    mean gap is not positive have no ratio and are left out, their count is ``undefined``)."""
    g, d = np.asarray(gain, dtype=float), np.asarray(gap, dtype=float)
    ok = np.isfinite(g) & np.isfinite(d)
    g, d = g[ok], d[ok]
    n = len(g)
    if n == 0 or float(d.mean()) <= 0:
        return {"value": math.nan, "lo": math.nan, "hi": math.nan, "n": n, "undefined": 0}
    value = float(g.mean() / d.mean())
    if n < 2:
        return {"value": value, "lo": math.nan, "hi": math.nan, "n": n, "undefined": 0}
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    num, den = g[idx].mean(axis=1), d[idx].mean(axis=1)
    good = den > 0
    r = num[good] / den[good]
    lo, hi = np.quantile(r, [0.5 - level / 2, 0.5 + level / 2]) if len(r) else (math.nan, math.nan)
    return {"value": value, "lo": float(lo), "hi": float(hi), "n": n,
            "undefined": int((~good).sum())}


def _by_seed(rows: list[dict[str, Any]], key: str) -> dict[int, float]:
    return {int(r["seed"]): float(r[key]) if r.get(key) is not None else math.nan for r in rows}


def deficit(rows: list[dict[str, Any]], ratio: float) -> dict[str, Any]:
    """The F1 lost to scarcity in one (fraction, scenario): full minus scarce model, per
    repetition, with its CI; ``present`` only when the mean gap is positive and the CI excludes 0."""
    seeds = sorted({int(r["seed"]) for r in rows})
    one = {int(r["seed"]): r for r in rows}
    out: dict[str, Any] = {}
    for m in ("f1", "macro_f1"):
        gap = [float(one[s][f"{m}_full"]) - float(one[s][f"{m}_scarce"]) for s in seeds]
        out[f"{m}_full"] = corrected_ci([one[s][f"{m}_full"] for s in seeds], ratio, bounds=SCORE_RANGE)
        out[f"{m}_scarce"] = corrected_ci([one[s][f"{m}_scarce"] for s in seeds], ratio,
                                          bounds=SCORE_RANGE)
        ci = corrected_ci(gap, ratio, bounds=DIFF_RANGE)
        out[f"{m}_gap"] = ci
        out[f"{m}_present"] = bool(ci["n"] >= 2 and ci["mean"] > 0 and ci["lo"] > 0)
    return out


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (fraction, scenario): the deficit; per (fraction, scenario, method, cfs): every score
    with its CI, paired tests against no augmentation and SMOTE, and relative recovery (ratio of
    means with a bootstrap CI, only where there is a deficit to recover).

    Rows are one per repetition (``seed``) and need ``fraction, scenario, seed, method, cfs,
    n_train, n_test, n_added`` and the scores; a score may be NaN (that repetition is left out
    of that score, and ``n`` says how many were averaged)."""
    groups: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((float(r["fraction"]), str(r["scenario"])), []).append(r)
    deficits, table = [], []
    for (fraction, scenario), rs in sorted(groups.items()):
        ratio = float(np.mean([r["n_test"] / r["n_train"] for r in rs]))
        refs = {m: [r for r in rs if r["method"] == m] for m in BASELINES}
        ref_rows = refs["no-augmentation"] or rs
        d = deficit(ref_rows, ratio)
        deficits.append({"fraction": fraction, "scenario": scenario, "ratio": ratio, **d})
        by_method: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rs:
            by_method.setdefault((str(r["method"]), str(r["cfs"])), []).append(r)
        for (method, cfs), ms in sorted(by_method.items()):
            seeds = sorted({int(r["seed"]) for r in ms})
            row: dict[str, Any] = {"fraction": fraction, "scenario": scenario, "method": method,
                                   "cfs": cfs, "seeds": seeds}
            for m in SCORES:
                row[m] = corrected_ci([r.get(m, math.nan) for r in ms], ratio,
                                      bounds=DIFF_RANGE if m.endswith("_gain") else SCORE_RANGE)
            row["n_seeds"] = row["f1"]["n"]
            for k in ("n_added", "n_budget", "n_distinct", "n_valid"):
                vals = _finite([r[k] for r in ms if r.get(k) is not None])
                row[k] = ({"mean": float(vals.mean()), "min": float(vals.min()),
                           "max": float(vals.max())} if len(vals) else None)
            mine = _by_seed(ms, "f1")
            for base in BASELINES:
                theirs = _by_seed(refs[base], "f1")
                common = sorted(set(mine) & set(theirs))
                row[f"vs_{base}"] = (None if base == method or not common else
                                     corrected_paired_test([mine[s] for s in common],
                                                           [theirs[s] for s in common], ratio,
                                                           bounds=DIFF_RANGE))
            for m in ("f1", "macro_f1"):
                if d[f"{m}_present"]:
                    gain = [float(r[f"{m}_gain"]) for r in ms]
                    gap = [float(r[f"{m}_full"]) - float(r[f"{m}_scarce"]) for r in ms]
                    row[f"{m}_recovery"] = ratio_of_means(gain, gap)
                else:
                    row[f"{m}_recovery"] = None  # no deficit to recover
            table.append(row)
    return {"deficit": deficits, "methods": table}
