"""FOCUS plugin: the smoothed ensemble and its gradient, conformance, validity, immutables."""

from __future__ import annotations

import numpy as np
import pytest
from cfbench_focus import cfbench_generators

from cfbench.core.errors import UserError
from cfbench.tasks.spec import Task, resolve_spec
from cfbench.testing import check_generator


@pytest.fixture(scope="module")
def spec():
    return cfbench_generators()[0]


@pytest.fixture(scope="module")
def heart() -> Task:
    return Task.load(resolve_spec("heart"))


@pytest.fixture(scope="module")
def fitted(spec, heart):
    return spec.build("default").fit(heart.fit_context(0))


def test_declares_what_it_needs(spec):
    assert spec.name == "focus" and spec.needs == frozenset({"proba", "trees"})
    with pytest.raises(UserError, match="iterations must be a positive integer"):
        spec.factory("default", iterations=0)


def test_hard_ensemble_is_the_classifier_and_soft_tends_to_it(fitted, heart):
    X = heart.X_train.iloc[:40]
    Z = fitted.view_.encode(X)
    assert np.allclose(fitted.hard_p1(Z), heart.predict_proba(X)[:, 1], atol=1e-9)
    fitted.sigma = 1e4  # very sharp sigmoids: the smoothed ensemble approaches the real one
    try:
        p_sharp, _ = fitted.soft(Z + 1e-3)
    finally:
        fitted.sigma = 1.0
    assert np.mean(np.abs(p_sharp - fitted.hard_p1(Z + 1e-3))) < 0.02


def test_gradient_matches_finite_differences(fitted, heart):
    z = fitted.view_.encode(heart.X_train.iloc[:1])
    _, g = fitted.soft(z)
    h = 1e-6
    for j in (0, 1, 3):
        e = np.zeros_like(z)
        e[0, j] = h
        numeric = (fitted.soft(z + e)[0] - fitted.soft(z - e)[0]) / (2 * h)
        assert np.isclose(g[0, j], numeric[0], rtol=1e-4, atol=1e-9)


def test_conforms_on_the_random_forest_heart(spec, heart):
    report = check_generator(spec, "default", task=heart)
    assert report["statuses"] == ["ok", "ok"]


def test_valid_cfs_that_keep_the_immutables(fitted, heart):
    """Determinism under the seed is check_generator's (a second fit and run)."""
    queries = heart.queries(3)
    res = fitted.generate(queries[heart.schema.names].reset_index(drop=True),
                          queries["target"].to_numpy(int), 1, 5.0)
    ok = [i for i, r in enumerate(res) if r.status == "ok"]
    assert len(ok) >= 5, [r.status for r in res]
    for i in ok:
        cf, q = res[i].cfs, queries.iloc[i]
        assert (heart.predict(cf) == q["target"]).all()
        for name in heart.schema.immutable:
            assert (cf[name] == q[name]).all()
        assert set(cf["cp"]) <= {1.0, 2.0, 3.0, 4.0}
