"""``model_digest``: a fitted classifier's identity is the same for the same fit in any process
(a skops file's bytes are not: zip times and object ids), and changes with the model."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cfbench.tasks.classifier import ALLOWED_TYPES, dumps_skops, loads_skops
from cfbench.tasks.model_digest import model_digest

X, y = load_breast_cancer(return_X_y=True)

FIT = """
import sys
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from cfbench.tasks.model_digest import model_digest
X, y = load_breast_cancer(return_X_y=True)
print(model_digest(RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)))
"""


def forest(seed: int = 0) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=5, random_state=seed).fit(X, y)


@pytest.mark.slow
def test_the_same_fit_in_another_process_has_the_same_digest():
    here = model_digest(forest())
    for hashseed in ("1",):  # string hashing differs from this process's
        out = subprocess.run([sys.executable, "-c", FIT], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": hashseed}).stdout.strip()
        assert out == here


def test_a_model_loaded_from_skops_has_the_digest_of_the_fitted_one():
    mlp = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,), max_iter=30,
                                                        random_state=0)).fit(X, y)
    loaded = loads_skops(dumps_skops(mlp), ALLOWED_TYPES)  # the cache's own allow-list
    assert model_digest(loaded) == model_digest(mlp)


def test_any_change_to_the_model_changes_the_digest():
    base = forest()
    assert model_digest(forest(seed=1)) != model_digest(base)
    assert model_digest(RandomForestClassifier(n_estimators=6, random_state=0).fit(X, y)) != model_digest(base)
    moved = forest()
    moved.estimators_[2].tree_.threshold[0] += 1e-9  # one split point of one tree
    assert model_digest(moved) != model_digest(base)
    assert model_digest(forest()) == model_digest(base)


@pytest.mark.parametrize("a, b", [(1, 1.0), (1, "1"), ([1, 2], (1, 2)), (np.zeros(2), np.zeros(2, np.float32))])
def test_values_that_only_look_alike_differ(a, b):
    assert model_digest(a) != model_digest(b)


def test_an_object_that_cannot_be_reduced_counts_by_its_type():
    import threading

    assert model_digest({"lock": threading.Lock()}) == model_digest({"lock": threading.Lock()})
    assert model_digest({"lock": threading.Lock()}) != model_digest({"lock": None})
