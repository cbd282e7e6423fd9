"""ROAR plugin: conformance on heart with an MLP, valid CFs, immutables, seeds, not applicable."""

from __future__ import annotations

import pytest
from gradient_task import (
    assert_immutables_kept,
    heart_task,
    register_plugins,
    run_queries,
    same_cfs,
    skipped_on_forest,
)

from cfbench.testing import check_generator

pytest.importorskip("torch")
from cfbench_roar import cfbench_generators  # noqa: E402

SMALL = {"max_iter": 300}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return heart_task(tmp_path_factory.mktemp("roar"))


@pytest.fixture(scope="module")
def spec():
    return cfbench_generators()[0]


def test_conforms_on_heart_mlp(spec, task, one_torch_thread):
    out = check_generator(spec, "default", params=SMALL, task=task, n_queries=1)
    assert out["statuses"].count("ok") >= 1


def test_valid_for_most_queries_immutables_kept_and_seeded(spec, task, one_torch_thread):
    gen = spec.build("default", SMALL).fit(task.fit_context(0, SMALL))
    X, _, results, valid = run_queries(gen, task, per_class=2)
    assert sum(valid) >= 3, [r.reason for r in results]
    assert_immutables_kept(task, X, results)
    again = spec.build("default", SMALL).fit(task.fit_context(0, SMALL))
    assert same_cfs(results, run_queries(again, task, per_class=2)[2])


def test_skipped_on_the_random_forest_heart(tmp_path, monkeypatch):
    register_plugins(tmp_path / "site", monkeypatch)
    assert skipped_on_forest("roar", tmp_path) == {
        "roar": "needs gradients; the task's classifier random-forest offers proba, trees"}
