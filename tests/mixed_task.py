"""Made-up tables shared by tests of several stages: a small mixed-type task (numeric, binary and
4-level categorical, ordinal) for the baseline plugins, and a wearable cohort CSV for ``task init``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cfbench.core.generator import FitContext
from cfbench.core.schema import FeatureSchema
from cfbench.tasks.classifier import build_pipeline

FEATURES = [
    {"name": "age", "kind": "numeric", "integer": True, "mutable": False, "lower": 20, "upper": 90},
    {"name": "sex", "kind": "categorical", "categories": [0, 1], "mutable": False},
    {"name": "cp", "kind": "categorical", "categories": [0, 1, 2, 3]},
    {"name": "chol", "kind": "numeric", "lower": 100, "upper": 400, "direction": "decrease-only"},
    {"name": "bmi", "kind": "numeric", "lower": 15, "upper": 50},
    {"name": "exercise", "kind": "ordinal", "categories": [0, 1, 2, 3, 4], "direction": "increase-only"},
]


def make_mixed_task(constrained: bool, n: int = 300, seed: int = 0, per_class: int = 3):
    """A small mixed-type task (numeric, binary and 4-level categorical, ordinal) and its queries."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "age": rng.integers(25, 85, n).astype(float),
        "sex": rng.integers(0, 2, n).astype(float),
        "cp": rng.integers(0, 4, n).astype(float),
        "chol": np.round(rng.normal(230, 40, n).clip(110, 390), 1),
        "bmi": np.round(rng.normal(27, 4, n).clip(16, 48), 2),
        "exercise": rng.integers(0, 5, n).astype(float),
    })
    logit = (0.04 * (X.age - 55) + 0.5 * X.sex + 0.8 * (X.cp == 3) - 0.6 * (X.cp == 0)
             + 0.02 * (X.chol - 230) + 0.15 * (X.bmi - 27) - 0.5 * (X.exercise - 2))
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    records = FEATURES if constrained else [
        {k: v for k, v in f.items() if k not in ("mutable", "direction", "lower", "upper")}
        for f in FEATURES
    ]
    train = np.arange(n) < int(0.75 * n)
    Xtr, ytr, Xte = X[train].reset_index(drop=True), y[train], X[~train].reset_index(drop=True)
    schema = FeatureSchema.from_records(records).with_data_bounds(Xtr)
    pipe = build_pipeline("random-forest", {"n_estimators": 40}, 0, schema).fit(Xtr, ytr)
    ctx = FitContext(X_train=Xtr, y_train=ytr, predict_proba=lambda D: pipe.predict_proba(D[schema.names]),
                     schema=schema, seed=0, task_name="synthetic", class_names={0: "no", 1: "yes"})
    pred = pipe.predict(Xte)
    idx = np.r_[np.flatnonzero(pred == 0)[:per_class], np.flatnonzero(pred == 1)[:per_class]]
    return ctx, Xte.iloc[idx].reset_index(drop=True), 1 - pred[idx], pipe


def wearable(n: int = 200, seed: int = 3) -> pd.DataFrame:
    """A made-up wearable cohort with numeric, integer, binary, text and ordinal columns."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "subject_id": [f"S{i:03d}" for i in range(n)],
        "age": rng.integers(25, 75, n),
        "gender": rng.choice(["female", "male"], n),
        "clinic_site": rng.choice(["A", "B", "C"], n),
        "steps": rng.integers(1000, 15000, n),
        "hrv_ms": rng.normal(45, 12, n).round(2),
        "smoker": rng.binomial(1, 0.25, n),
        "activity": rng.choice(["low", "medium", "high"], n),
        "fitness_level": rng.integers(1, 6, n),
        "notes": [f"free text {i}" for i in range(n)],
    })
    risk = 0.06 * (df.age - 50) - 0.0003 * (df.steps - 8000) - 0.05 * (df.hrv_ms - 45) + df.smoker
    df["diabetic"] = (risk + rng.normal(0, 0.7, n) > 0).astype(int)
    return df
