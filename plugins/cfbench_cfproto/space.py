"""Where CFProto may move in the encoded space Z, and how a point of Z becomes a schema row.

The search runs on the classifier's encoding (``context.model``: scaled numbers, one-hot
categories).  ``Space`` holds what the projection step needs (the bounds over Z and the
immutable columns) and ``snap`` turns a relaxed point into one the schema allows: each one-hot
block to the one-hot vector of its largest entry, ordinal features to their nearest code,
integer features rounded, all in Z so candidates are checked as they will be returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cfbench.api import FeatureSchema, ModelView


@dataclass
class Space:
    """Bounds, immutable columns and the snapping layout of the encoded space."""

    lower: np.ndarray  # (d,) over Z
    upper: np.ndarray
    fixed: np.ndarray  # (d,) bool: columns of immutable features
    one_hot: list[np.ndarray]  # column indices of each categorical block
    scaled: list[tuple[int, float, float, np.ndarray | None, bool]]  # col, mean, scale, codes, integer

    @classmethod
    def fit(cls, view: ModelView, schema: FeatureSchema, X_train) -> Space:
        """Bounds: the schema's where it closes them, else the training range (the paper's
        feature range); one-hot columns lie in [0, 1]."""
        lo, hi = schema.bounds()
        data = X_train[schema.names].to_numpy(float)
        lo = np.where(np.isnan(lo), data.min(axis=0), lo)
        hi = np.where(np.isnan(hi), data.max(axis=0), hi)
        lower, upper = view.bounds(lo, hi)
        one_hot, scaled = [], []
        for b in view.blocks:
            f = schema[b.name]
            if b.one_hot:
                one_hot.append(np.asarray(b.columns))
            else:
                codes = np.asarray(f.categories, float) if f.kind == "ordinal" and f.categories else None
                scaled.append((b.columns[0], b.mean, b.scale, codes, bool(f.integer)))
        return cls(lower, upper, view.column_mask(schema.immutable), one_hot, scaled)

    def project(self, Z: np.ndarray, Z0: np.ndarray) -> np.ndarray:
        """Clip to the bounds and put the immutable columns back to the query's."""
        Z = np.clip(Z, self.lower, self.upper)
        Z[:, self.fixed] = Z0[:, self.fixed]
        return Z

    def snap(self, Z: np.ndarray) -> np.ndarray:
        """The schema-valid point a relaxed one stands for (argmax, nearest code, rounding)."""
        out = np.array(Z, dtype=float, copy=True)
        for cols in self.one_hot:
            block = out[:, cols]
            hot = np.zeros_like(block)
            hot[np.arange(len(block)), np.argmax(block, axis=1)] = 1.0
            out[:, cols] = hot
        for col, mean, scale, codes, integer in self.scaled:
            x = out[:, col] * scale + mean
            if codes is not None:
                x = codes[np.argmin(np.abs(x[:, None] - codes[None, :]), axis=1)]
            elif integer:
                x = np.round(x)
            out[:, col] = (x - mean) / scale
        return out
