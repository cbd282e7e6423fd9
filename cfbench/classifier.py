"""The task's classifier: a scaled scikit-learn pipeline built from the spec and cached on disk.

The cache is keyed by a hash of the task spec, the data fingerprint, the seed and the library
versions, so a changed spec, dataset or scikit-learn never reuses a stale model.  The cache
holds only models this machine trained itself (joblib files under the cache directory).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import cfbench
from cfbench.errors import UserError
from cfbench.schema import FeatureSchema

MODELS = {
    "random-forest": RandomForestClassifier,
    "gradient-boosting": GradientBoostingClassifier,
    "mlp": MLPClassifier,
}
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "random-forest": {"n_estimators": 200, "min_samples_leaf": 2, "n_jobs": 1},
    "gradient-boosting": {},
    "mlp": {"hidden_layer_sizes": (64, 32), "max_iter": 800, "early_stopping": True},
}


def cache_dir() -> Path:
    """Root of cfbench's on-disk caches: ``$CFBENCH_CACHE`` or ``~/.cache/cfbench``."""
    root = os.environ.get("CFBENCH_CACHE") or os.path.join(Path.home(), ".cache", "cfbench")
    path = Path(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
        writable = os.access(path, os.W_OK | os.X_OK)
    except OSError as exc:
        writable, why = False, exc.strerror or str(exc)
    else:
        why = "not writable"
    if not writable:
        raise UserError(f"cache folder {path} cannot be used ({why}); set CFBENCH_CACHE to a "
                        "writable folder")
    return path


def build_pipeline(model: str, params: dict[str, Any], seed: int, schema: FeatureSchema) -> Pipeline:
    """Scale continuous features, one-hot categorical ones, then the named estimator."""
    est_params = {**DEFAULT_PARAMS[model], **params}
    if "hidden_layer_sizes" in est_params:
        est_params["hidden_layer_sizes"] = tuple(est_params["hidden_layer_sizes"])
    estimator = MODELS[model](random_state=seed, **est_params)
    transformers: list[tuple[str, Any, list[str]]] = []
    if schema.continuous:
        transformers.append(("scale", StandardScaler(), schema.continuous))
    if schema.categorical:
        cats = [list(schema[c].categories) for c in schema.categorical]
        if any(not c for c in cats):
            cats = "auto"
        transformers.append(
            ("onehot", OneHotEncoder(categories=cats, handle_unknown="ignore"), schema.categorical)
        )
    pre = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("prep", pre), ("model", estimator)])


def cache_key(task_hash: str, data_fingerprint: str, seed: int) -> str:
    blob = json.dumps(
        {
            "task": task_hash,
            "data": data_fingerprint,
            "seed": seed,
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "cfbench": cfbench.__version__,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def fit_cached(
    pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray, key: str, use_cache: bool = True
) -> tuple[Pipeline, bool]:
    """Fit ``pipeline`` or load the copy cached under ``key``; returns (model, loaded_from_cache)."""
    path = cache_dir() / "classifiers" / f"{key}.joblib"
    if use_cache and path.exists():
        try:
            return joblib.load(path), True
        except Exception:
            path.unlink(missing_ok=True)  # a torn write from a killed run: retrain
    pipeline.fit(X, y)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        joblib.dump(pipeline, tmp)
        os.replace(tmp, path)
    return pipeline, False
