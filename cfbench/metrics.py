"""The metric suite: every CF of every method is scored by the same vectorised functions.

Each metric takes arrays, never a generator, so a new method cannot change how it is scored.
Notation: ``x`` a query, ``c`` one of its counterfactuals, ``d`` features, ``F_cont`` the
numeric and ordinal features, ``F_cat`` the categorical ones, ``t`` the target class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

from cfbench.schema import FeatureSchema

#: two values closer than this fraction of the feature's training range count as unchanged
CHANGE_TOL = 1e-6
#: the sane envelope of a feature: its training range widened by this many ranges each side.
#: A CF value outside it is not a value of the feature at all; the runner rejects it as
#: ``invalid_output`` (values outside the declared bounds but inside it are scored).
ENVELOPE = 1e6
#: no envelope reaches beyond +-this, so scaled values and their squares stay finite in float32
ENVELOPE_LIMIT = 1e30


def envelope(X_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per feature ``(lo, hi)``: ``[min - E * range, max + E * range]``, range 1 where it is 0."""
    X = np.asarray(X_train, float)
    lo, hi = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return (np.clip(lo - ENVELOPE * span, -ENVELOPE_LIMIT, ENVELOPE_LIMIT),
            np.clip(hi + ENVELOPE * span, -ENVELOPE_LIMIT, ENVELOPE_LIMIT))


def outside_envelope(C: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per CF: ``True`` if any value is non-finite or outside the envelope ``[lo, hi]``."""
    C = np.asarray(C, float)
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(C).all(axis=1) | ((C < lo) | (C > hi)).any(axis=1)


def validity(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per CF: ``1[f(c) = t]``, the classifier assigns the CF to its target class."""
    return np.asarray(pred) == np.asarray(target)


def coverage(n_cfs: np.ndarray) -> float:
    """Share of queries with at least one CF: ``mean_q 1[|C_q| > 0]``."""
    n_cfs = np.asarray(n_cfs)
    return float(np.mean(n_cfs > 0)) if len(n_cfs) else float("nan")


def mad(X: np.ndarray) -> np.ndarray:
    """Median absolute deviation per column, ``median_i |X_ij - median_i X_ij|``; 1 where it is 0.

    A zero MAD (a feature constant in most rows) would make the L1/MAD distance infinite; we
    fall back to 1 as DiCE does.
    """
    m = np.median(np.abs(X - np.median(X, axis=0)), axis=0)
    return np.where(m > 0, m, 1.0)


def changed(X: np.ndarray, C: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per CF and feature: ``1[|c_f - x_f| > tol * range_f]`` (boolean, shape (n, d))."""
    return np.abs(C - X) > CHANGE_TOL * scale


def l1_mad(X: np.ndarray, C: np.ndarray, mad_: np.ndarray, cont: np.ndarray) -> np.ndarray:
    """Per CF: ``sum_{f in F_cont} |c_f - x_f| / MAD_f`` (Wachter et al. 2017)."""
    return (np.abs(C - X)[:, cont] / mad_[cont]).sum(axis=1)


def l2_minmax(X: np.ndarray, C: np.ndarray, lo: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Per CF: ``sqrt(sum_f ((c_f - x_f) / (max_f - min_f))^2)`` over all features.

    ``min_f``/``max_f`` are the training range; categorical codes are scaled the same way.
    """
    return np.sqrt((((C - X) / span) ** 2).sum(axis=1))


def categorical_mismatch(X: np.ndarray, C: np.ndarray, cat: np.ndarray) -> np.ndarray:
    """Per CF: ``sum_{f in F_cat} 1[c_f != x_f]``."""
    return (C[:, cat] != X[:, cat]).sum(axis=1)


def sparsity(change: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per CF: number of features changed ``sum_f 1[c_f != x_f]`` and share unchanged ``1 - n/d``."""
    n = change.sum(axis=1)
    return n, 1.0 - n / change.shape[1]


def y_nn(
    C_scaled: np.ndarray, target: np.ndarray, nn: NearestNeighbors, y_train: np.ndarray
) -> np.ndarray:
    """Per CF: ``(1/k) sum_{i in kNN(c)} 1[y_i = t]`` on min–max-scaled training data (Pawelczyk et al.)."""
    if len(C_scaled) == 0:
        return np.zeros(0)
    idx = nn.kneighbors(C_scaled, return_distance=False)
    return (y_train[idx] == np.asarray(target)[:, None]).mean(axis=1)


def constraint_violations(
    X: np.ndarray, C: np.ndarray, change: np.ndarray, schema: FeatureSchema
) -> dict[str, np.ndarray]:
    """Per CF flags: changes an immutable, moves against a feature's direction, leaves its bounds.

    immutable: ``exists f not mutable: 1[c_f != x_f]``;
    direction: ``exists f: dir_f * (c_f - x_f) < 0`` for increase-only (+1) / decrease-only (-1);
    bounds: ``exists f: c_f < lower_f or c_f > upper_f``.
    """
    imm = ~schema.mask("mutable")
    dirs = schema.directions()
    lo, hi = schema.bounds()
    against = (dirs != 0) & (dirs * (C - X) < 0) & change
    with np.errstate(invalid="ignore"):
        out_of_bounds = (C < lo) | (C > hi)
    return {
        "changes_immutable": (change & imm).any(axis=1),
        "against_direction": against.any(axis=1),
        "out_of_bounds": out_of_bounds.any(axis=1),
    }


def pairwise_diversity(
    C: np.ndarray, qidx: np.ndarray, mad_: np.ndarray, cont: np.ndarray, change_scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query with >= 2 CFs: DiCE's diversity and count diversity.

    diversity = ``mean_{i<j} dist(c_i, c_j)`` with ``dist = sum_{F_cont} |c_if - c_jf|/MAD_f
    + sum_{F_cat} 1[c_if != c_jf]``;  count diversity = ``mean_{i<j} (1/d) sum_f 1[c_if != c_jf]``.
    Returns (query ids, diversity, count diversity).
    """
    if len(C) == 0:
        return np.zeros(0, int), np.zeros(0), np.zeros(0)
    with np.errstate(all="ignore"):  # huge values give inf distances, never an exception
        return _pairwise_diversity(C, qidx, mad_, cont, change_scale)


def _pairwise_diversity(
    C: np.ndarray, qidx: np.ndarray, mad_: np.ndarray, cont: np.ndarray, change_scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(qidx, kind="stable")
    C, qidx = C[order], qidx[order]
    uq, start, counts = np.unique(qidx, return_index=True, return_counts=True)
    keep = counts >= 2
    uq, start, counts = uq[keep], start[keep], counts[keep]
    if len(uq) == 0:
        return uq, np.zeros(0), np.zeros(0)
    kmax = counts.max()
    d = C.shape[1]
    P = np.full((len(uq), kmax, d), np.nan)
    slot = np.arange(kmax)
    valid = slot[None, :] < counts[:, None]
    rows = (start[:, None] + np.minimum(slot[None, :], counts[:, None] - 1))
    P[:] = C[rows]
    P[~valid] = np.nan
    diff = np.abs(P[:, :, None, :] - P[:, None, :, :])  # (q, k, k, d)
    weight = np.where(cont, 1.0 / mad_, 0.0)
    dist = np.nansum(diff * weight, axis=3) + np.nansum((diff > 0) & ~cont, axis=3)
    cnt = np.nansum(diff > CHANGE_TOL * change_scale, axis=3) / d
    pair = np.triu(valid[:, :, None] & valid[:, None, :], k=1)
    npairs = pair.sum(axis=(1, 2))
    div = (dist * pair).sum(axis=(1, 2)) / npairs
    cdiv = (cnt * pair).sum(axis=(1, 2)) / npairs
    return uq, div, cdiv


def runtime(seconds: np.ndarray) -> dict[str, float]:
    """Seconds per query: median and 95th percentile."""
    s = np.asarray(seconds, float)
    s = s[np.isfinite(s)]
    if len(s) == 0:
        return {"median": float("nan"), "p95": float("nan")}
    return {"median": float(np.median(s)), "p95": float(np.percentile(s, 95))}


@dataclass
class Scorer:
    """Fits the training-data references (MAD, ranges, LOF, kNN) once, then scores CFs.

    ``score(X, C, target, pred)`` with X the query row repeated for each CF returns one row per
    CF.  LOF runs in novelty mode on min–max-scaled training data.
    """

    schema: FeatureSchema
    n_neighbors: int = 5
    lof_neighbors: int = 20

    def fit(self, X_train: pd.DataFrame, y_train: np.ndarray) -> Scorer:
        X = X_train[self.schema.names].to_numpy(float)
        self.y_train_ = np.asarray(y_train)
        self.mad_ = mad(X)
        self.min_ = X.min(axis=0)
        span = X.max(axis=0) - self.min_
        self.span_ = np.where(span > 0, span, 1.0)
        self.lo_, self.hi_ = envelope(X)
        self.cont_ = ~self.schema.mask("kind", "categorical")
        self.cat_ = ~self.cont_
        self.actionable_ = self.schema.mask("actionable")
        Xs = (X - self.min_) / self.span_
        self.lof_ = LocalOutlierFactor(
            n_neighbors=min(self.lof_neighbors, len(X) - 1), novelty=True
        ).fit(Xs)
        self.nn_ = NearestNeighbors(n_neighbors=min(self.n_neighbors, len(X))).fit(Xs)
        return self

    def clip(self, C: np.ndarray) -> np.ndarray:
        """``C`` clipped into the features' envelope, for the model and the neighbour searches.

        A value beyond the envelope (possible only in records not written by the runner) then
        neither overflows float32 inside scikit-learn nor raises; distances still see the value.
        """
        return np.clip(np.nan_to_num(np.asarray(C, float)), self.lo_, self.hi_)

    def score(self, X: np.ndarray, C: np.ndarray, target: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
        """One row per CF with every per-CF metric (huge values give inf distances, never raise)."""
        with np.errstate(all="ignore"):
            return self._score(X, C, target, pred)

    def _score(self, X: np.ndarray, C: np.ndarray, target: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
        change = changed(X, C, self.span_)
        n_changed, unchanged = sparsity(change)
        Cs = (self.clip(C) - self.min_) / self.span_
        flags = constraint_violations(X, C, change, self.schema)
        out = pd.DataFrame(
            {
                "valid": validity(pred, target),
                "l1_mad": l1_mad(X, C, self.mad_, self.cont_),
                "l2_minmax": l2_minmax(X, C, self.min_, self.span_),
                "cat_mismatch": categorical_mismatch(X, C, self.cat_),
                "n_changed": n_changed,
                "share_unchanged": unchanged,
                "lof_inlier": self.lof_.predict(Cs) == 1 if len(C) else np.zeros(0, bool),
                "ynn": y_nn(Cs, target, self.nn_, self.y_train_),
                **flags,
                "n_changed_actionable": (change & self.actionable_).sum(axis=1),
            }
        )
        out["violates_constraints"] = (
            out["changes_immutable"] | out["against_direction"] | out["out_of_bounds"]
        )
        change_cols = pd.DataFrame(change, columns=[f"changed::{n}" for n in self.schema.names])
        return pd.concat([out, change_cols], axis=1)

    def diversity(self, C: np.ndarray, qidx: np.ndarray) -> pd.DataFrame:
        q, div, cdiv = pairwise_diversity(C, qidx, self.mad_, self.cont_, self.span_)
        return pd.DataFrame({"qidx": q, "diversity": div, "count_diversity": cdiv})


#: Metric name -> one-line description, for ``cfbench list metrics`` and the docs.
METRICS = {
    "coverage": "share of queries with at least one CF",
    "validity": "share of CFs the classifier assigns to the target class",
    "l1_mad": "L1 distance, numeric features divided by training MAD (Wachter et al.)",
    "l2_minmax": "L2 distance on min-max-scaled features",
    "cat_mismatch": "number of categorical features changed",
    "n_changed": "number of features changed (sparsity)",
    "share_unchanged": "share of features left unchanged",
    "lof_inlier": "share of CFs a LocalOutlierFactor (novelty) fit on training data calls inliers",
    "ynn": "share of the CF's 5 nearest training neighbours with the target label",
    "diversity": "mean pairwise distance among one query's CFs (k>1; DiCE)",
    "count_diversity": "mean share of features that differ between two CFs of a query (k>1)",
    "changes_immutable": "share of CFs that change an immutable feature",
    "against_direction": "share of CFs that move a feature against its allowed direction",
    "out_of_bounds": "share of CFs outside a feature's plausible bounds",
    "violates_constraints": "share of CFs with any of the three violations above",
    "actionable_share": "share of all feature changes that fall on actionable features",
    "seconds_median": "median seconds per query",
    "seconds_p95": "95th-percentile seconds per query",
}
