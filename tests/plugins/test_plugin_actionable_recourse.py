"""Actionable Recourse plugin: the integer program on a logistic-regression heart; not applicable
on the random-forest one; immutables, directions and bounds honoured by the action grid."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("scipy")
from cfbench_recourse import cfbench_generators  # noqa: E402

from cfbench.core.model import not_applicable  # noqa: E402
from cfbench.tasks.spec import Task, resolve_spec  # noqa: E402
from cfbench.testing import check_generator  # noqa: E402

SPEC = (Path(__file__).resolve().parents[2] / "tasks" / "heart.toml").read_text()


@pytest.fixture(scope="module")
def spec():
    return cfbench_generators()[0]


def heart_lr(folder: Path, text: str = SPEC) -> Task:
    """heart with a logistic regression as its classifier, written into ``folder``."""
    text = text.replace('name = "heart"', 'name = "heart-lr"', 1)
    text = text.replace('model = "random-forest"', 'model = "logistic-regression"', 1)
    path = folder / "heart-lr.toml"
    path.write_text(text)
    return Task.load(resolve_spec(str(path)))


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Task:
    return heart_lr(tmp_path_factory.mktemp("heart-lr"))


def run(spec, task, n=3, k=1, **params):
    queries = task.queries(n)
    gen = spec.build("default", params).fit(task.fit_context(0, params))
    return queries, gen.generate(queries[task.schema.names].reset_index(drop=True),
                                 queries["target"].to_numpy(int), k, 5.0)


def test_not_applicable_on_the_random_forest_heart(spec):
    assert spec.needs == frozenset({"proba", "linear"})
    assert not_applicable(spec.needs, frozenset({"proba", "trees"}), "random-forest") == (
        "needs linear; the task's classifier random-forest offers proba, trees")


def test_conforms_on_a_logistic_regression_heart(spec, task):
    report = check_generator(spec, "default", task=task, changes=("cost", "total"))
    assert report["statuses"] == ["ok", "ok"]


def test_valid_cfs_on_the_grid_with_immutables_kept(spec, task):
    queries, res = run(spec, task, n=4, k=2)
    assert sum(r.status == "ok" for r in res) >= 7, [r.status for r in res]
    X = task.X_train
    for r, (_, q) in zip(res, queries.iterrows(), strict=True):
        if r.status != "ok":
            continue
        assert (task.predict(r.cfs) == q["target"]).all()
        for name in task.schema.immutable:
            assert (r.cfs[name] == q[name]).all()
        for name in ("trestbps", "chol", "thalach"):  # moved values are training values
            moved = r.cfs[name][r.cfs[name] != q[name]]
            assert set(moved) <= set(X[name])


def test_directions_and_bounds_restrict_the_grid(spec, tmp_path):
    text = SPEC.replace('upper = 220\nactionable = true', 'upper = 220\nactionable = true\n'
                        'direction = "decrease-only"', 1)
    text = text.replace('lower = 100\nupper = 600', 'lower = 150\nupper = 600', 1)
    task = heart_lr(tmp_path, text)
    assert task.schema["trestbps"].direction == "decrease-only"
    queries, res = run(spec, task, n=4)
    found = [(r, q) for r, (_, q) in zip(res, queries.iterrows(), strict=True) if r.status == "ok"]
    assert found
    for r, q in found:
        assert (r.cfs["trestbps"] <= q["trestbps"]).all()
        chol = r.cfs["chol"]
        assert ((chol >= 150) | (chol == q["chol"])).all()
