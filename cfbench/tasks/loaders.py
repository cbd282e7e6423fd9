"""The core's data loaders: scikit-learn's breast-cancer table and any CSV/Parquet table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.datasets import load_breast_cancer as _load

from cfbench.tasks.datasets import Dataset
from cfbench.tasks.table import load_table


def load_breast_cancer() -> Dataset:
    """scikit-learn's bundled Wisconsin diagnostic breast-cancer data (569 rows, 30 features).

    Label 1 = malignant (scikit-learn codes malignant as 0; we flip it so that 1 is the disease).
    """

    bunch = _load(as_frame=True)
    X = bunch.data.astype(float)
    y = (bunch.target.to_numpy() == 0).astype(int)
    return Dataset(
        X=X,
        y=y,
        class_names={0: "benign", 1: "malignant"},
        source="sklearn.datasets.load_breast_cancer (UCI Wisconsin Diagnostic Breast Cancer)",
    )


def _load_table(spec_dir: str | None = None, **options: Any) -> Dataset:
    return load_table(spec_dir=spec_dir, **options)


BUILTIN_LOADERS: dict[str, Callable[..., Dataset]] = {
    "sklearn-breast-cancer": load_breast_cancer,
    "table": _load_table,
}
