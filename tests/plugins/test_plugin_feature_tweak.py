"""FeatureTweak plugin: conformance, validity, immutables and determinism on tree ensembles."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from cfbench_featuretweak import cfbench_generators
from cfbench_featuretweak.tweak import leaf_boxes

from cfbench.core.errors import UserError
from cfbench.tasks.spec import Task, resolve_spec
from cfbench.testing import check_generator

SPEC = (Path(__file__).resolve().parents[2] / "tasks" / "heart.toml").read_text()


@pytest.fixture(scope="module")
def spec():
    return cfbench_generators()[0]


@pytest.fixture(scope="module")
def heart() -> Task:
    return Task.load(resolve_spec("heart"))


def run(spec, task, n=3, k=1, seed=0, **params):
    queries = task.queries(n)
    gen = spec.build("default", params).fit(task.fit_context(seed, params))
    res = gen.generate(queries[task.schema.names].reset_index(drop=True),
                       queries["target"].to_numpy(int), k, 5.0)
    return queries, res


def test_declares_what_it_needs(spec):
    assert spec.name == "feature-tweak" and spec.needs == frozenset({"proba", "trees"})
    with pytest.raises(UserError, match="epsilon must be positive"):
        spec.factory("default", epsilon=0.0)


def test_leaf_boxes_reproduce_the_tree(heart):
    """A row lies in exactly the box of the leaf the tree sends it to."""
    view = heart.fit_context(0).model
    tree = view.trees().trees[0]
    Z = view.encode(heart.X_train).astype(np.float32).astype(float)
    leaves, lo, hi = leaf_boxes(tree, view.n_encoded)
    inside = ((Z[:, None, :] > lo) & (Z[:, None, :] <= hi)).all(axis=2)
    assert (inside.sum(axis=1) == 1).all()
    assert np.array_equal(tree.value[leaves[inside.argmax(axis=1)]], tree.leaf_values(Z))


def test_conforms_on_the_random_forest_heart(spec, heart):
    report = check_generator(spec, "default", task=heart)
    assert report["statuses"] == ["ok", "ok"]


def test_valid_cfs_that_keep_the_immutables(spec, heart):
    """Determinism under the seed is check_generator's (a second fit and run)."""
    queries, res = run(spec, heart, n=4, k=2)
    ok = [i for i, r in enumerate(res) if r.status == "ok"]
    assert len(ok) >= 6, [r.status for r in res]
    for i in ok:
        cfs, q = res[i].cfs, queries.iloc[i]
        assert (heart.predict(cfs) == q["target"]).all()
        for name in heart.schema.immutable:
            assert (cfs[name] == q[name]).all()
        assert np.allclose(cfs["trestbps"], cfs["trestbps"].round())  # integer feature


@pytest.mark.slow
def test_runs_on_an_xgboost_heart(spec, tmp_path):
    if importlib.util.find_spec("xgboost") is None:
        pytest.skip("xgboost is not installed")
    text = SPEC.replace('name = "heart"', 'name = "heart-xgboost"', 1)
    text = text.replace('model = "random-forest"', 'model = "xgboost"', 1)
    (tmp_path / "heart-xgboost.toml").write_text(text)
    task = Task.load(resolve_spec(str(tmp_path / "heart-xgboost.toml")))
    queries, res = run(spec, task, n=3)
    assert sum(r.status == "ok" for r in res) >= 4, [r.status for r in res]
    for r, (_, q) in zip(res, queries.iterrows(), strict=True):
        if r.status == "ok":
            assert (task.predict(r.cfs) == q["target"]).all()
