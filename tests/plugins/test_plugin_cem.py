"""CEM plugin: conformance on heart with an MLP, valid CFs, constraints, seeds, not applicable."""

from __future__ import annotations

import numpy as np
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
from cfbench_cem import cfbench_generators  # noqa: E402

SMALL = {"max_iter": 100, "c_steps": 3}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return heart_task(tmp_path_factory.mktemp("cem"))


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
    assert skipped_on_forest("cem", tmp_path) == {
        "cem": "needs gradients; the task's classifier random-forest offers proba, trees"}


def test_bounds_and_directions_are_projected(spec, task, one_torch_thread):
    """The paper's projection keeps every CF inside the schema's box (heart has no directions,
    so one is added: trestbps may only decrease)."""
    import dataclasses

    schema = task.schema
    features = tuple(dataclasses.replace(f, direction="decrease-only") if f.name == "trestbps"
                     else f for f in schema.features)
    context = task.fit_context(0, SMALL)
    context.schema = dataclasses.replace(schema, features=features)
    gen = spec.build("default", SMALL).fit(context)
    X, _, results, valid = run_queries(gen, task, per_class=2)
    assert sum(valid) >= 3
    lo, hi = schema.bounds()
    for i, r in enumerate(results):
        if r.status != "ok":
            continue
        cf = r.cfs.to_numpy(float)[0]
        inside = np.isnan(lo) | (cf >= lo) & (np.isnan(hi) | (cf <= hi))
        assert inside.all(), (r.cfs, X.iloc[i])
        assert cf[schema.names.index("trestbps")] <= X["trestbps"].iloc[i]
