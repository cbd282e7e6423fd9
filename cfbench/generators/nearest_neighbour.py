"""Nearest-neighbour counterfactuals: the reference generator and the fixture for core tests.

For each query, candidates are training rows that carry the target label *and* that the
classifier predicts as the target.  Their immutable features are replaced by the query's (so
immutables are kept by construction); candidates that then leave a feature's bounds or move
against its direction are dropped.  The k closest under range-scaled L1 (continuous) plus
0/1 mismatch (categorical), i.e. HEOM, are returned.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cfbench.core.generator import FitContext, QueryResult


def heom_scales(X: pd.DataFrame, categorical: np.ndarray) -> np.ndarray:
    """Per-feature range used by HEOM (1 for categorical and zero-range features)."""
    rng = (X.max() - X.min()).to_numpy(float).copy()
    rng[categorical | (rng == 0)] = 1.0
    return rng


def heom(A: np.ndarray, B: np.ndarray, scale: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    """Pairwise HEOM distance, shape (len(A), len(B)).

    d(a, b) = sum_f [f categorical] 1[a_f != b_f] + [f continuous] |a_f - b_f| / range_f
    """
    diff = np.abs(A[:, None, :] - B[None, :, :]) / scale
    diff[..., categorical] = (diff[..., categorical] > 0).astype(float)
    return diff.sum(axis=2)


class NearestNeighbour:
    """Closest correctly classified training instance of the target class, immutables kept."""

    def __init__(self, variant: str = "default") -> None:
        self.variant = variant

    def fit(self, context: FitContext) -> NearestNeighbour:
        self.schema_ = context.schema
        self.columns_ = context.schema.names
        X = context.X_train[self.columns_]
        pred = context.predict(X)
        keep = pred == context.y_train
        self.X_ = X.to_numpy(float)[keep]
        self.y_ = np.asarray(context.y_train)[keep]
        self.categorical_ = context.schema.mask("kind", "categorical")
        self.immutable_ = ~context.schema.mask("mutable")
        self.scale_ = heom_scales(X, self.categorical_)
        self.lower_, self.upper_ = context.schema.bounds()
        self.dirs_ = context.schema.directions()
        return self

    def generate(
        self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float
    ) -> list[QueryResult]:
        Q = queries[self.columns_].to_numpy(float)
        out: list[QueryResult] = []
        for q, t in zip(Q, np.asarray(targets), strict=True):
            C = self.X_[self.y_ == t].copy()
            C[:, self.immutable_] = q[self.immutable_]
            delta = C - q
            ok = ~(
                ((self.dirs_ > 0) & (delta < 0)) | ((self.dirs_ < 0) & (delta > 0))
            ).any(axis=1)
            with np.errstate(invalid="ignore"):
                ok &= ~((C < self.lower_) | (C > self.upper_)).any(axis=1)
            C = C[ok]
            if len(C) == 0:
                out.append(QueryResult.not_found("no target-class training row satisfies the constraints"))
                continue
            d = heom(q[None, :], C, self.scale_, self.categorical_)[0]
            best = np.argsort(d, kind="stable")[:k]
            out.append(QueryResult.ok(pd.DataFrame(C[best], columns=self.columns_)))
        return out
