"""The per-CF metric functions and the ``Scorer`` that applies them; what each metric *is*
(name, scope, aggregation, direction, header, formula) lives in ``cfbench.metric_registry``.

Each function takes arrays, never a generator, so a new method cannot change how it is scored.
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
#: a value within this of a category code (or of an integer, for integer features) is that code
CODE_TOL = 1e-9


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


def l2_minmax(X: np.ndarray, C: np.ndarray, span: np.ndarray, cat: np.ndarray) -> np.ndarray:
    """Per CF: ``sqrt(sum_{F_cont} ((c_f - x_f) / (max_f - min_f))^2 + sum_{F_cat} 1[c_f != x_f])``.

    A category code is a name, not a number: a changed category adds 1 (a 0/1 mismatch, as in
    DiCE's mixed distance), whichever codes it moves between.
    """
    sq = np.where(cat, (C != X).astype(float), ((C - X) / span) ** 2)
    return np.sqrt(sq.sum(axis=1))


def encode(C: np.ndarray, lo: np.ndarray, span: np.ndarray, cat: np.ndarray,
           codes: list[np.ndarray]) -> np.ndarray:
    """Rows in the space LOF and yNN search: ``F_cont`` min-max scaled, each ``F_cat`` one-hot
    over its codes times ``1/sqrt(2)`` (a category change adds 1 to the squared distance, as in
    ``l2_minmax``); a value that is none of the codes encodes as all zeros."""
    parts = [((C[:, ~cat] - lo[~cat]) / span[~cat])]
    for j, cs in zip(np.flatnonzero(cat), codes, strict=True):
        parts.append(np.isclose(C[:, [j]], cs[None, :], rtol=0, atol=CODE_TOL) / np.sqrt(2))
    return np.hstack(parts) if parts else np.zeros((len(C), 0))


def invalid_values(C: np.ndarray, schema: FeatureSchema) -> np.ndarray:
    """Per CF and feature: ``1[c_f not in codes_f]`` for features with codes (categorical,
    ordinal), ``1[c_f not integer]`` for integer features (tolerance 1e-9); shape (n, d)."""
    C = np.asarray(C, float)
    out = np.zeros(C.shape, bool)
    for j, f in enumerate(schema):
        col = C[:, j]
        if f.categories:
            cs = np.asarray(f.categories, float)
            out[:, j] |= ~np.isclose(col[:, None], cs[None, :], rtol=0, atol=CODE_TOL).any(axis=1)
        if f.integer:
            with np.errstate(invalid="ignore"):
                out[:, j] |= ~(np.abs(col - np.round(col)) <= CODE_TOL)
    return out


def categorical_mismatch(X: np.ndarray, C: np.ndarray, cat: np.ndarray) -> np.ndarray:
    """Per CF: ``sum_{f in F_cat} 1[c_f != x_f]``."""
    return (C[:, cat] != X[:, cat]).sum(axis=1)


def sparsity(change: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per CF: number of features changed ``sum_f 1[c_f != x_f]`` and share unchanged ``1 - n/d``."""
    n = change.sum(axis=1)
    return n, 1.0 - n / change.shape[1]


def y_nn(
    C_scaled: np.ndarray, target: np.ndarray, nn: NearestNeighbors, labels: np.ndarray
) -> np.ndarray:
    """Per CF: ``(1/k) sum_{i in kNN(c)} 1[f(x_i) = t]``, ``labels`` the classifier's predictions
    for the training rows (CARLA's yNN, Pawelczyk et al. 2021)."""
    if len(C_scaled) == 0:
        return np.zeros(0)
    idx = nn.kneighbors(C_scaled, return_distance=False)
    return (labels[idx] == np.asarray(target)[:, None]).mean(axis=1)


def constraint_violations(
    X: np.ndarray, C: np.ndarray, change: np.ndarray, schema: FeatureSchema
) -> dict[str, np.ndarray]:
    """Per CF flags: changes an immutable, moves against a feature's direction, leaves its
    bounds, holds a value the feature cannot take.

    immutable: ``exists f not mutable: 1[c_f != x_f]``;
    direction: ``exists f: dir_f * (c_f - x_f) < 0`` for increase-only (+1) / decrease-only (-1);
    bounds: ``exists f: c_f < lower_f or c_f > upper_f``;
    invalid value: ``exists f: c_f not in codes_f`` (categorical, ordinal) or ``c_f not integer``.
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
        "invalid_value": invalid_values(C, schema).any(axis=1),
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
class CFContext:
    """What a per-CF metric function sees: queries ``X`` and CFs ``C`` (one row per CF), the
    targets and the classifier's predictions, the change mask, the CFs encoded for LOF/kNN, the
    constraint flags and the fitted ``Scorer`` (training references)."""

    X: np.ndarray
    C: np.ndarray
    target: np.ndarray
    pred: np.ndarray
    change: np.ndarray
    encoded: np.ndarray
    flags: dict[str, np.ndarray]
    scorer: Scorer


@dataclass
class Scorer:
    """Fits the training-data references (MAD, ranges, category codes, LOF, kNN) once, then
    scores CFs with every per-CF metric of the registry.

    ``fit(X_train, labels)``: ``labels`` are the classifier's predictions for the training rows
    (yNN's neighbour labels).  ``score(X, C, target, pred)`` with X the query row repeated for
    each CF returns one row per CF.  LOF (novelty mode) and kNN search the ``encode`` space.
    """

    schema: FeatureSchema
    n_neighbors: int = 5
    lof_neighbors: int = 20

    def fit(self, X_train: pd.DataFrame, labels: np.ndarray) -> Scorer:
        X = X_train[self.schema.names].to_numpy(float)
        self.labels_ = np.asarray(labels)
        self.mad_ = mad(X)
        self.min_ = X.min(axis=0)
        span = X.max(axis=0) - self.min_
        self.span_ = np.where(span > 0, span, 1.0)
        self.lo_, self.hi_ = envelope(X)
        self.cont_ = ~self.schema.mask("kind", "categorical")
        self.cat_ = ~self.cont_
        self.codes_ = [np.asarray(f.categories, float) if f.categories else np.unique(X[:, j])
                       for j, f in enumerate(self.schema) if f.kind == "categorical"]
        self.actionable_ = self.schema.mask("actionable")
        Xs = self.encode(X)
        self.lof_ = LocalOutlierFactor(
            n_neighbors=min(self.lof_neighbors, len(X) - 1), novelty=True
        ).fit(Xs)
        self.nn_ = NearestNeighbors(n_neighbors=min(self.n_neighbors, len(X))).fit(Xs)
        return self

    def encode(self, C: np.ndarray) -> np.ndarray:
        """``C`` (clipped into the envelope) in the LOF/kNN space: see :func:`encode`."""
        return encode(self.clip(C), self.min_, self.span_, self.cat_, self.codes_)

    def clip(self, C: np.ndarray) -> np.ndarray:
        """``C`` clipped into the features' envelope, for the model and the neighbour searches.

        A value beyond the envelope (possible only in records not written by the runner) then
        neither overflows float32 inside scikit-learn nor raises; distances still see the value.
        """
        return np.clip(np.nan_to_num(np.asarray(C, float)), self.lo_, self.hi_)

    def score(self, X: np.ndarray, C: np.ndarray, target: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
        """One row per CF: every per-CF metric of the registry, ``n_changed_actionable`` and
        ``changed::<feature>`` (huge values give inf distances, never raise)."""
        with np.errstate(all="ignore"):
            return self._score(X, C, target, pred)

    def _score(self, X: np.ndarray, C: np.ndarray, target: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
        from cfbench.metric_registry import per_cf_metrics

        X, C = np.asarray(X, float), np.asarray(C, float)
        change = changed(X, C, self.span_)
        ctx = CFContext(X=X, C=C, target=np.asarray(target), pred=np.asarray(pred), change=change,
                        encoded=self.encode(C), flags=constraint_violations(X, C, change, self.schema),
                        scorer=self)
        out = pd.DataFrame({m.name: np.asarray(m.per_cf(ctx)) for m in per_cf_metrics()})
        out["n_changed_actionable"] = (change & self.actionable_).sum(axis=1)
        change_cols = pd.DataFrame(change, columns=[f"changed::{n}" for n in self.schema.names])
        return pd.concat([out, change_cols], axis=1)

    def diversity(self, C: np.ndarray, qidx: np.ndarray) -> pd.DataFrame:
        q, div, cdiv = pairwise_diversity(C, qidx, self.mad_, self.cont_, self.span_)
        return pd.DataFrame({"qidx": q, "diversity": div, "count_diversity": cdiv})
