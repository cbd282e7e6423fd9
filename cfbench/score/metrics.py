"""The per-CF metric functions and the ``Scorer`` that applies them; what each metric *is*
(name, scope, aggregation, direction, header, formula) lives in ``cfbench.score.registry``.

Each function takes arrays, never a generator, so a new method cannot change how it is scored.
Notation: ``x`` a query, ``c`` one of its counterfactuals, ``d`` features, ``F_cont`` the
numeric and ordinal features, ``F_cat`` the categorical ones, ``t`` the target class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

from cfbench.core.schema import FeatureSchema

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
#: two class probabilities closer than this are a tie: the CF is on the decision boundary
TIE_TOL = 1e-9


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


def mad(X: np.ndarray, integer: np.ndarray | None = None) -> np.ndarray:
    """Median absolute deviation per column, ``median_i |X_ij - median_i X_ij|``, with an
    explicit fallback where it is 0 (a feature constant in over half the rows, e.g. heart ``ca``).

    Fallback (``mad_fallback``): an integer-valued feature (``integer``: integer numeric,
    ordinal and coded features) gets 1, one step, the smallest change it can make (DiCE's
    fallback, so one step costs as much as a categorical mismatch); any other feature gets its
    mean absolute deviation around the median, 0 only for a constant feature, which gets 1.
    """
    X = np.asarray(X, float)
    med = np.median(X, axis=0)
    m = np.median(np.abs(X - med), axis=0)
    return np.where(m > 0, m, mad_fallback(X, med, integer))


def mad_fallback(X: np.ndarray, med: np.ndarray, integer: np.ndarray | None) -> np.ndarray:
    """The scale used where a feature's MAD is 0: 1 for integer features, else the mean absolute
    deviation around the median (1 if that is 0 too); see :func:`mad`."""
    integer = np.zeros(X.shape[1], bool) if integer is None else np.asarray(integer, bool)
    mean_dev = np.mean(np.abs(X - med), axis=0) if len(X) else np.zeros(X.shape[1])
    return np.where(integer | ~(mean_dev > 0), 1.0, mean_dev)


def decide(proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Per row: the class with the highest probability, or -1 where two classes share it.

    The symmetric tie rule: a CF on the decision boundary (two classes' probabilities within
    ``TIE_TOL``; a forest's p = 0.5 sums to 0.5000000000000001 for the other class) belongs to
    neither class, so it is valid towards neither (a classifier's own ``predict`` gives it the
    float-rounding winner, which made one ai-readi CF valid towards 0 and not towards 1).
    """
    P = np.asarray(proba, float)
    if len(P) == 0:
        return np.zeros(0, int)
    top = P.max(axis=1)
    tie = (P >= top[:, None] - TIE_TOL).sum(axis=1) > 1
    return np.where(tie, -1, np.asarray(classes)[P.argmax(axis=1)]).astype(int)


def changed(X: np.ndarray, C: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per CF and feature: ``1[|c_f - x_f| > tol * range_f]`` (boolean, shape (n, d))."""
    return np.abs(C - X) > CHANGE_TOL * scale


def l1_mad(X: np.ndarray, C: np.ndarray, mad_: np.ndarray, cont: np.ndarray) -> np.ndarray:
    """Per CF: ``sum_{f in F_cont} |c_f - x_f| / MAD_f``, numeric and ordinal features only
    (Wachter et al. 2017, whose data had no categorical features)."""
    return (np.abs(C - X)[:, cont] / mad_[cont]).sum(axis=1)


def l1_mad_cat(X: np.ndarray, C: np.ndarray, mad_: np.ndarray, cat: np.ndarray) -> np.ndarray:
    """Per CF: ``sum_{f in F_cont} |c_f - x_f| / MAD_f + sum_{f in F_cat} 1[c_f != x_f]``.

    The mixed-type L1: DiCE's continuous and categorical proximity (Mothilal et al. 2020) as
    sums, not per-kind means, so one categorical change costs as much as one MAD.
    """
    return np.where(cat, (C != X).astype(float), np.abs(C - X) / mad_).sum(axis=1)


def heom(X: np.ndarray, C: np.ndarray, span: np.ndarray, cat: np.ndarray) -> np.ndarray:
    """Per CF: ``sqrt(sum_{F_cont} ((c_f - x_f) / (max_f - min_f))^2 + sum_{F_cat} 1[c_f != x_f])``.

    The heterogeneous Euclidean-overlap metric (Wilson and Martinez 1997), NICE's distance
    (Brughmans et al. 2023): range-normalised numeric differences, 0/1 overlap for categories.
    """
    sq = np.where(cat, (C != X).astype(float), ((C - X) / span) ** 2)
    return np.sqrt(sq.sum(axis=1))


def carla_distances(delta: np.ndarray) -> dict[str, np.ndarray]:
    """Per CF, CARLA's four distances of ``delta`` (Pawelczyk et al. 2021):
    L0 ``sum_j 1[|delta_j| > 1e-5]``, L1 ``sum_j |delta_j|``, L2 ``sum_j delta_j^2`` (squared,
    as CARLA reports it) and L-inf ``max_j |delta_j|``."""
    a = np.abs(delta)
    return {"l0": (a > 1e-5).sum(axis=1).astype(float), "l1": a.sum(axis=1),
            "l2sq": (a ** 2).sum(axis=1),
            "linf": a.max(axis=1) if a.shape[1] else np.zeros(len(a))}


def redundancy(X: np.ndarray, C: np.ndarray, change: np.ndarray, target: np.ndarray,
               predict: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Per CF: ``sum_{f changed} 1[f(c with c_f := x_f) = t]``, the changes that can each be
    reverted alone while the classifier still gives the target class (CARLA's redundancy,
    Pawelczyk et al. 2021; per feature, not per one-hot column)."""
    rows, feats = np.nonzero(change)
    if len(rows) == 0:
        return np.zeros(len(C))
    R = C[rows].copy()
    R[np.arange(len(rows)), feats] = X[rows, feats]
    still = np.asarray(predict(R)) == np.asarray(target)[rows]
    return np.bincount(rows, weights=still.astype(float), minlength=len(C))


def encode(C: np.ndarray, lo: np.ndarray, span: np.ndarray, cat: np.ndarray,
           codes: list[np.ndarray]) -> np.ndarray:
    """Rows in the space LOF searches: ``F_cont`` min-max scaled, each ``F_cat`` one-hot over its
    codes times ``1/sqrt(2)`` (a category change adds 1 to the squared distance, as in ``heom``);
    a value that is none of the codes encodes as all zeros."""
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
    C_enc: np.ndarray, target: np.ndarray, nn: NearestNeighbors, labels: np.ndarray
) -> np.ndarray:
    """Per CF: ``(1/y) sum_{i in yNN(c)} 1[f(x_i) = t]``, the neighbours searched among
    ``nn``'s rows and ``labels`` the classifier's decisions for them (CARLA's yNN, Pawelczyk et
    al. 2021: y = 5, every row of the data set, its encoding)."""
    if len(C_enc) == 0:
        return np.zeros(0)
    idx = nn.kneighbors(C_enc, return_distance=False)
    return (labels[idx] == np.asarray(target)[:, None]).mean(axis=1)


def lof_within(lof_score: np.ndarray, threshold: float) -> np.ndarray:
    """Per CF: ``1[LOF(c) <= threshold]``, ``threshold`` the training rows' own 95th-percentile
    LOF (each scored without itself), so about 95 % of real rows pass, whatever the data."""
    return np.asarray(lof_score) <= threshold


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
    targets and the classifier's decisions (``pred``; -1 = no class: a tie, or a CF the model
    could not score, ``unscorable``), the change mask, the CFs in the LOF space (``encoded``)
    with their local outlier factors (``lof``), the CFs in CARLA's space (``carla``) and their
    difference from the queries there (``carla_delta``), the constraint flags, ``predict``
    (rows -> decisions, for redundancy; ``None`` when no model is at hand) and the ``Scorer``."""

    X: np.ndarray
    C: np.ndarray
    target: np.ndarray
    pred: np.ndarray
    change: np.ndarray
    encoded: np.ndarray
    lof: np.ndarray
    carla: np.ndarray
    carla_delta: np.ndarray
    flags: dict[str, np.ndarray]
    scorer: Any  # the cfbench.score.scorer.Scorer that built this context
    unscorable: np.ndarray
    predict: Callable[[np.ndarray], np.ndarray] | None = None


