"""The encoded space ``Z`` a gradient search works in, and the way back to valid feature rows.

Searches relax every one-hot block to ``[0, 1]`` and move scaled columns freely; ``finish``
turns such a row into a row the schema accepts: each one-hot block's largest entry becomes its
category (``ModelView.decode``), ordinal features snap to their nearest code, integer features
are rounded and immutables are copied from the query.  Bounds and directions are not touched
here: a method that honours them says how, and the metrics count the rest as violations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cfbench.api import FitContext, UserError


class EncodedSpace:
    """One task's ``Z``: which columns may move, their MAD scales, one-hot blocks, ``finish``."""

    def __init__(self, context: FitContext, method: str) -> None:
        view = context.model
        if view is None or "gradients" not in view.kinds:
            raise UserError(f"{method} needs the classifier's gradients (an mlp or "
                            "logistic-regression task); this context offers none")
        self.view = view
        self.schema = context.schema
        self.names = list(context.schema.names)
        self.Z_train = view.encode(context.X_train[self.names])
        self.d = self.Z_train.shape[1]
        #: columns of immutable features: their gradient is zeroed, their values copied back
        self.fixed = view.column_mask(context.schema.immutable)
        self.one_hot = np.zeros(self.d, dtype=bool)
        for b in view.blocks:
            if b.one_hot:
                self.one_hot[list(b.columns)] = True
        self.predict_proba = context.predict_proba

    def mad(self) -> np.ndarray:
        """Wachter's per-column scale: the median absolute deviation over the training rows.

        A scaled column with MAD 0 (a mostly constant feature) falls back to its standard
        deviation, then to 1; one-hot columns use 1, so a category switch costs 2 (two columns).
        """
        Z = self.Z_train
        mad = np.median(np.abs(Z - np.median(Z, axis=0)), axis=0)
        std = Z.std(axis=0)
        mad = np.where(mad > 0, mad, np.where(std > 0, std, 1.0))
        return np.where(self.one_hot, 1.0, mad)

    def finish(self, Z: np.ndarray, query: pd.Series | pd.DataFrame) -> pd.DataFrame:
        """Relaxed rows ``(n, d)`` as feature rows: codes snapped, integers rounded, immutables kept."""
        out = self.view.decode(Z)[self.names]
        q = np.asarray(query[self.names], float).reshape(-1, len(self.names))
        z0 = self.view.encode(pd.DataFrame(q, columns=self.names))
        Z = np.atleast_2d(Z)
        for j, (f, b) in enumerate(zip(self.schema.features, self.view.blocks, strict=True)):
            col = out[f.name].to_numpy(float)
            if not f.mutable:
                col = np.broadcast_to(q[:, j], col.shape).copy()
            elif not b.one_hot:
                # an unmoved column gives back the query's value exactly, not a rescaled copy
                still = np.abs(Z[:, b.columns[0]] - z0[:, b.columns[0]]) < 1e-9
                col = np.where(still, q[:, j], col)
                if f.kind != "numeric" and f.categories:
                    codes = np.asarray(f.categories, float)
                    col = codes[np.argmin(np.abs(col[:, None] - codes[None, :]), axis=1)]
                elif f.integer:
                    col = np.round(col)
            out[f.name] = col
        return out

    def target_proba(self, rows: pd.DataFrame, targets: np.ndarray) -> np.ndarray:
        """The classifier's own probability of each row's target class (what validity means)."""
        p = np.asarray(self.predict_proba(rows), float)
        return p[np.arange(len(rows)), np.asarray(targets, int)]
