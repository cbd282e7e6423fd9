"""Scoring speed: 10,000 CFs on a 20-feature task (target: under one second without the model).

Run: ``python benchmarks/bench_metrics.py``.  Prints the time of ``Scorer.score`` plus
diversity, best of 5, and the fit time of the training-data references; then the same with
redundancy, whose reverted rows go through a 100-tree random forest (one batch), to show what
the model's share of scoring costs.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from cfbench.core.schema import Feature, FeatureSchema
from cfbench.score.metrics import decide
from cfbench.score.scorer import Scorer


def main(n_cf: int = 10_000, d: int = 20, n_train: int = 2_000, k: int = 4) -> None:
    rng = np.random.default_rng(0)
    feats = [Feature(f"f{i}", lower=-5, upper=5, mutable=i > 1, actionable=i % 3 == 0,
                     direction="increase-only" if i == 4 else "any") for i in range(d - 2)]
    feats += [Feature(f"c{i}", kind="categorical", categories=(0.0, 1.0, 2.0)) for i in range(2)]
    schema = FeatureSchema(tuple(feats))
    X = pd.DataFrame(rng.normal(size=(n_train, d)), columns=schema.names)
    X[["c0", "c1"]] = rng.integers(0, 3, size=(n_train, 2))
    y = rng.integers(0, 2, n_train)
    t0 = time.perf_counter()
    scorer = Scorer(schema).fit(X, y)
    fit_s = time.perf_counter() - t0
    Q = X.sample(n_cf, replace=True, random_state=0).to_numpy(float)
    C = Q + rng.normal(scale=0.3, size=Q.shape) * (rng.random(Q.shape) < 0.3)
    target = rng.integers(0, 2, n_cf)
    pred = rng.integers(0, 2, n_cf)
    qidx = np.repeat(np.arange(n_cf // k), k)
    for label, predict in (("metrics without the model", None), ("with redundancy", _forest(X, y))):
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            scorer.score(Q, C, target, pred, predict=predict)
            scorer.diversity(C, qidx)
            times.append(time.perf_counter() - t0)
        print(f"{label}: scored {n_cf} CFs x {d} features (k={k}, {n_train} training rows): "
              f"best {min(times):.3f} s, median {np.median(times):.3f} s; reference fit "
              f"{fit_s:.3f} s")


def _forest(X: pd.DataFrame, y: np.ndarray):  # noqa: ANN202 - a closure over a fitted forest
    rf = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(X.to_numpy(), y)
    return lambda R: decide(rf.predict_proba(R), rf.classes_)


if __name__ == "__main__":
    main()
