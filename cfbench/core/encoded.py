"""Rows of the encoded space ``Z`` made admissible: categories, integers, ordinals, immutables.

A gradient or tree method moves a query in ``Z`` (``ModelView``'s encoded space); before a candidate is scored it must be a row the schema
allows, so one-hot blocks become one category, integer features whole numbers, ordinal features
one of their codes and immutables the query's values.  Bounds and directions are *checked*
(``admissible``), never clipped: a candidate outside them is dropped, not repaired.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cfbench.core.model import ModelView
from cfbench.core.schema import FeatureSchema


class Encoded:
    """Projection onto the schema's values and the constraint check, both vectorised over rows."""

    def __init__(self, view: ModelView, schema: FeatureSchema) -> None:
        self.view = view
        self.names = schema.names
        self.onehot = [np.asarray(b.columns) for b in view.blocks if b.one_hot]
        self.scaled = []  # (name, column, mean, scale, allowed values or None, integer)
        for b in view.blocks:
            if b.one_hot:
                continue
            f = schema[b.name]
            values = np.asarray(f.categories, float) if f.kind == "ordinal" and f.categories else None
            self.scaled.append((b.name, b.columns[0], b.mean, b.scale, values, f.integer))
        self.fixed = view.column_mask(schema.immutable)
        self.immutable = list(schema.immutable)
        self.lower, self.upper = view.bounds(*schema.bounds())
        self.direction = view.directions(schema.directions())

    def project(self, Z: np.ndarray, z0: np.ndarray) -> np.ndarray:
        """``Z`` with immutables set to ``z0``'s, one-hot blocks to their largest entry, integer
        and ordinal features to their nearest allowed value (bounds are left alone)."""
        Z = np.array(Z, dtype=float, copy=True)
        Z[:, self.fixed] = np.broadcast_to(z0, Z.shape)[:, self.fixed]
        rows = np.arange(len(Z))
        for cols in self.onehot:
            hot = cols[np.argmax(Z[:, cols], axis=1)]
            Z[:, cols] = 0.0
            Z[rows, hot] = 1.0
        for _name, col, mean, scale, values, integer in self.scaled:
            v = Z[:, col] * scale + mean
            if values is not None:
                v = values[np.abs(v[:, None] - values).argmin(axis=1)]
            elif integer:
                v = np.round(v)
            Z[:, col] = (v - mean) / scale
        return Z

    def admissible(self, Z: np.ndarray, z0: np.ndarray) -> np.ndarray:
        """Rows inside the bounds that move no scaled feature against its direction."""
        tol = 1e-9
        inside = ((Z >= self.lower - tol) | np.isclose(Z, z0)) & ((Z <= self.upper + tol) | np.isclose(Z, z0))
        step = Z - z0
        along = ~(((self.direction > 0) & (step < -tol)) | ((self.direction < 0) & (step > tol)))
        return (inside & along).all(axis=1)

    def rows(self, Z: np.ndarray, z0: np.ndarray, query: pd.Series) -> pd.DataFrame:
        """Projected rows of ``Z`` as feature rows; immutables and every feature whose columns
        equal ``z0``'s (the encoded ``query``) copied exactly from ``query``."""
        X = self.view.decode(Z)[self.names]
        for name, _col, _mean, _scale, values, integer in self.scaled:
            v = X[name].to_numpy(float)
            if values is not None:
                v = values[np.abs(v[:, None] - values).argmin(axis=1)]
            elif integer:
                v = np.round(v)
            X[name] = v
        for b in self.view.blocks:
            same = (Z[:, list(b.columns)] == z0[list(b.columns)]).all(axis=1)
            if b.name in self.immutable:
                same[:] = True
            X.loc[same, b.name] = float(query[b.name])
        return X.reset_index(drop=True)
