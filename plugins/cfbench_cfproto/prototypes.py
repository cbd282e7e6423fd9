"""Class prototypes from k-d trees in the encoded space Z: the paper's variant without an autoencoder.

One k-d tree per class over the encoded training rows the classifier assigns to that class (the
model's labels, not the data's: a prototype should sit where the model says the target class is).
The prototype of class ``t`` for a query is the mean of its ``k`` nearest rows in that tree
(Euclidean in Z; ``k = 1``: the nearest target-class training row).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


class KDPrototypes:
    """Per-class k-d trees over encoded training rows; ``prototype(Z, t)`` gives one row per query."""

    def __init__(self, Z_train: np.ndarray, labels: np.ndarray, k: int) -> None:
        self.k = int(k)
        self.rows = {int(c): Z_train[labels == c] for c in np.unique(labels)}
        self.trees = {c: cKDTree(rows) for c, rows in self.rows.items() if len(rows)}

    def prototype(self, Z: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Mean of the ``k`` nearest training rows of each query's target class (NaN: none)."""
        out = np.full_like(np.asarray(Z, float), np.nan)
        for c in np.unique(targets):
            rows = np.flatnonzero(targets == c)
            tree = self.trees.get(int(c))
            if tree is None:
                continue
            k = min(self.k, tree.n)
            _, idx = tree.query(Z[rows], k=k)
            idx = np.asarray(idx).reshape(len(rows), k)
            out[rows] = self.rows[int(c)][idx].mean(axis=1)
        return out
