"""The scorer: every metric of the registry on one task's CFs, fitted once per task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

from cfbench.core.schema import FeatureSchema
from cfbench.score.metrics import (
    CODE_TOL,
    CFContext,
    changed,
    constraint_violations,
    encode,
    envelope,
    mad,
    pairwise_diversity,
)
from cfbench.score.registry import per_cf_metrics


@dataclass
class Scorer:
    """Fits the data references (MAD, ranges, category codes, LOF, neighbour pools) once, then
    scores CFs with every per-CF metric of the registry.

    ``fit(X_train, labels, X_pool, pool_labels)``: ``labels`` are the classifier's decisions
    for the training rows; ``X_pool`` every row of the data set (training and test, CARLA's
    yNN pool and min-max range; default: the training rows) and ``pool_labels`` the
    decisions for them.  ``score(X, C, target, pred)`` with X the query row repeated for each
    CF returns one row per CF.
    """

    schema: FeatureSchema
    n_neighbors: int = 5
    lof_neighbors: int = 20
    #: the calibrated LOF passes a CF whose LOF is at most this quantile of the training rows'
    lof_quantile: float = 0.95

    def fit(self, X_train: pd.DataFrame, labels: np.ndarray, X_pool: pd.DataFrame | None = None,
            pool_labels: np.ndarray | None = None) -> Scorer:
        X = X_train[self.schema.names].to_numpy(float)
        self.labels_ = np.asarray(labels)
        self.integer_ = np.array([f.integer or bool(f.categories) for f in self.schema], bool)
        self.mad_ = mad(X, self.integer_)
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
        self.lof_threshold_ = float(np.quantile(-self.lof_.negative_outlier_factor_,
                                                self.lof_quantile))
        if X_pool is None:
            P, self.pool_labels_ = X, self.labels_
        else:
            P = X_pool[self.schema.names].to_numpy(float)
            self.pool_labels_ = np.asarray(labels if pool_labels is None else pool_labels)
        self.carla_min_ = P.min(axis=0)
        cspan = P.max(axis=0) - self.carla_min_
        self.carla_span_ = np.where(cspan > 0, cspan, 1.0)
        self.nn_ = NearestNeighbors(n_neighbors=min(self.n_neighbors, len(P))).fit(
            self.carla_encode(P))
        return self

    def encode(self, C: np.ndarray) -> np.ndarray:
        """``C`` (clipped into the envelope) in the LOF space: see :func:`encode`."""
        return encode(self.clip(C), self.min_, self.span_, self.cat_, self.codes_)

    def carla_encode(self, C: np.ndarray) -> np.ndarray:
        """``C`` (clipped into the envelope) as CARLA encodes data: numeric and ordinal features
        min-max scaled over every row of the data set, a two-code categorical feature one 0/1
        column, any other one-hot over its codes (``OneHot_drop_binary``)."""
        C = self.clip(C)
        parts = [(C[:, ~self.cat_] - self.carla_min_[~self.cat_]) / self.carla_span_[~self.cat_]]
        for j, cs in zip(np.flatnonzero(self.cat_), self.codes_, strict=True):
            hit = np.isclose(C[:, [j]], cs[None, :], rtol=0, atol=CODE_TOL).astype(float)
            parts.append(hit[:, 1:] if len(cs) == 2 else hit)
        return np.hstack(parts)

    def lof(self, encoded: np.ndarray) -> np.ndarray:
        """Per row of the LOF space: its local outlier factor against the training rows."""
        return -self.lof_.score_samples(encoded) if len(encoded) else np.zeros(0)

    def clip(self, C: np.ndarray) -> np.ndarray:
        """``C`` clipped into the features' envelope, for the model and the neighbour searches.

        A value beyond the envelope (possible only in records not written by the runner) then
        neither overflows float32 inside scikit-learn nor raises; distances still see the value.
        """
        return np.clip(np.nan_to_num(np.asarray(C, float)), self.lo_, self.hi_)

    def score(self, X: np.ndarray, C: np.ndarray, target: np.ndarray, pred: np.ndarray,
              predict: Callable[[np.ndarray], np.ndarray] | None = None,
              unscorable: np.ndarray | None = None) -> pd.DataFrame:
        """One row per CF: every per-CF metric of the registry, ``n_changed_actionable`` and
        ``changed::<feature>`` (huge values give inf distances, never raise).  ``predict``
        (CF rows -> decisions) serves redundancy; ``unscorable`` marks CFs the model rejected."""
        with np.errstate(all="ignore"):
            return self._score(X, C, target, pred, predict, unscorable)

    def _score(self, X: np.ndarray, C: np.ndarray, target: np.ndarray, pred: np.ndarray,
               predict: Callable[[np.ndarray], np.ndarray] | None,
               unscorable: np.ndarray | None) -> pd.DataFrame:
        X, C = np.asarray(X, float), np.asarray(C, float)
        change = changed(X, C, self.span_)
        encoded, carla = self.encode(C), self.carla_encode(C)
        ctx = CFContext(X=X, C=C, target=np.asarray(target), pred=np.asarray(pred), change=change,
                        encoded=encoded, lof=self.lof(encoded), carla=carla,
                        carla_delta=carla - self.carla_encode(X),
                        flags=constraint_violations(X, C, change, self.schema), scorer=self,
                        unscorable=(np.zeros(len(C), bool) if unscorable is None
                                    else np.asarray(unscorable, bool)),
                        predict=predict)
        out = pd.DataFrame({m.name: np.asarray(m.per_cf(ctx)) for m in per_cf_metrics()})
        out["n_changed_actionable"] = (change & self.actionable_).sum(axis=1)
        change_cols = pd.DataFrame(change, columns=[f"changed::{n}" for n in self.schema.names])
        return pd.concat([out, change_cols], axis=1)

    def diversity(self, C: np.ndarray, qidx: np.ndarray) -> pd.DataFrame:
        q, div, cdiv = pairwise_diversity(C, qidx, self.mad_, self.cont_, self.span_)
        return pd.DataFrame({"qidx": q, "diversity": div, "count_diversity": cdiv})
