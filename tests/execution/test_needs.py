"""Methods declare what they need of the classifier (``GeneratorSpec.needs``); on a task whose
classifier lacks it they are not applicable: skipped before any work, with the reason."""

from __future__ import annotations

import json
import os
import sys

import pytest
from conftest import FIXTURES, install_on_path
from gradient_task import heart_spec

import cfbench
from cfbench.core.generator import GeneratorSpec
from cfbench.core.model import not_applicable
from cfbench.core.plugins import registry, spec_problem
from cfbench.entry import prepare


@pytest.fixture()
def gradient_plugin(tmp_path, monkeypatch):
    """``grad-step`` (needs gradients) visible here and in the workers."""
    site = install_on_path(tmp_path / "site", FIXTURES / "cfbench_gradient.py", "cfbench_gradient",
                           "gradient")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    registry.cache_clear()
    yield
    sys.modules.pop("cfbench_gradient", None)
    registry.cache_clear()



def test_the_reason_names_what_is_missing_and_what_is_offered():
    assert not_applicable(frozenset({"proba"}), frozenset({"proba", "trees"}), "random-forest") is None
    assert (not_applicable(frozenset({"proba", "gradients"}), frozenset({"proba", "trees"}),
                           "random-forest")
            == "needs gradients; the task's classifier random-forest offers proba, trees")


def test_an_unknown_need_is_refused_at_registration():
    spec = GeneratorSpec(name="x", factory=lambda v: None, needs=frozenset({"hessians"}))
    assert "needs must be a non-empty set of proba, gradients, linear, trees" in spec_problem(spec)
    spec = GeneratorSpec(name="x", factory=lambda v: None, variant_needs={"fast": frozenset({"trees"})})
    assert "unknown variant 'fast'" in spec_problem(spec)


def test_a_gradient_method_is_skipped_on_a_forest_before_any_work(gradient_plugin, tmp_path):
    plan = prepare(cfbench.RunConfig(task=str(heart_spec(tmp_path, "random-forest")),
                                     methods="grad-step,nearest-neighbour", out=tmp_path / "r"))
    assert [c.method for c in plan.pairs] == ["nearest-neighbour"]
    assert plan.skipped == {"grad-step": "needs gradients; the task's classifier random-forest "
                                         "offers proba, trees"}
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_skipped_in_the_board_and_run_on_an_mlp(gradient_plugin, tmp_path):
    pytest.importorskip("torch")
    forest = cfbench.run(cfbench.RunConfig(task=str(heart_spec(tmp_path, "random-forest")),
                                           methods="grad-step,nearest-neighbour", n_queries=1,
                                           out=tmp_path / "rf"))
    assert set(forest.summary["methods"]) == {"nearest-neighbour"}
    summary = json.loads((tmp_path / "rf" / "summary.json").read_text())
    assert summary["skipped_methods"]["grad-step"].startswith("needs gradients;")
    assert not [r for r in forest.records if r["method"] == "grad-step"]
    mlp = cfbench.run(cfbench.RunConfig(task=str(heart_spec(tmp_path, "mlp")),
                                        methods="grad-step", n_queries=1, out=tmp_path / "mlp"))
    assert mlp.skipped == {} and len(mlp.records) == 2
    assert {r["status"] for r in mlp.records} <= {"ok", "not_found"}, mlp.records
