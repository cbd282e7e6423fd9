"""Datasets: what a loader returns, and the built-in loaders that need nothing but scikit-learn."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Dataset:
    """A feature table with binary labels and where it came from.

    ``source`` goes into every result row's provenance, so it must say which data was used
    (a file path and checksum, a release folder, or a generator and its seed).
    """

    X: pd.DataFrame
    y: np.ndarray
    class_names: dict[int, str]
    source: str
    notes: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """SHA-256 of the feature table and labels, for cache keys and provenance."""
        h = hashlib.sha256()
        h.update(pd.util.hash_pandas_object(self.X, index=False).values.tobytes())
        h.update(np.asarray(self.y, dtype=np.int64).tobytes())
        h.update(",".join(map(str, self.X.columns)).encode())
        return h.hexdigest()


def load_breast_cancer() -> Dataset:
    """scikit-learn's bundled Wisconsin diagnostic breast-cancer data (569 rows, 30 features).

    Label 1 = malignant (scikit-learn codes malignant as 0; we flip it so that 1 is the disease).
    """
    from sklearn.datasets import load_breast_cancer as _load

    bunch = _load(as_frame=True)
    X = bunch.data.astype(float)
    y = (bunch.target.to_numpy() == 0).astype(int)
    return Dataset(
        X=X,
        y=y,
        class_names={0: "benign", 1: "malignant"},
        source="sklearn.datasets.load_breast_cancer (UCI Wisconsin Diagnostic Breast Cancer)",
    )


BUILTIN_LOADERS = {"sklearn-breast-cancer": load_breast_cancer}
