"""``Task.model_view``: the classifier's kinds, encoded space and mirrors, each checked against
the pipeline's own ``predict_proba`` (heart: numeric and one-hot categorical features)."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from cfbench.core.errors import UserError
from cfbench.core.model import ModelMismatch, ModelView, Trees
from cfbench.core.safe_load import load_toml
from cfbench.tasks import classifier
from cfbench.tasks.spec import Task, parse_spec

HEART = "tasks/heart.toml"
SMALL = {"random-forest": {"n_estimators": 25}, "xgboost": {"n_estimators": 25},
         "gradient-boosting": {"n_estimators": 25}}


def heart(model: str, name: str = "heart-view") -> Task:
    raw = copy.deepcopy(load_toml(Path(HEART), "task file"))
    raw["name"] = name
    raw["classifier"] = {"model": model, "seed": 0, "params": SMALL.get(model, {})}
    return Task.load(parse_spec(raw, HEART))


@pytest.fixture(scope="module", params=["logistic-regression", "mlp"])
def gradient_task(request) -> Task:
    return heart(request.param)


def test_kinds_follow_the_classifier_and_match_the_spec_table(gradient_task):
    view = gradient_task.model_view()
    assert view.kinds == classifier.MODEL_KINDS[gradient_task.spec.model] >= {"proba", "gradients"}
    assert ("linear" in view.kinds) == (gradient_task.spec.model == "logistic-regression")
    assert view.n_encoded > len(view.blocks)  # heart's categorical features are one-hot blocks
    cp = view.blocks[view.names.index("cp")]
    assert cp.one_hot and cp.categories == (1.0, 2.0, 3.0, 4.0) and len(cp.columns) == 4


def test_encode_decode_round_trip_on_the_test_rows(gradient_task):
    view = gradient_task.model_view()
    X = gradient_task.X_test[gradient_task.schema.names]
    Z = view.encode(X)
    want = gradient_task.model.steps[0][1].transform(X)
    assert np.abs(Z - np.asarray(want)).max() <= 1e-12
    back = view.decode(Z)
    assert list(back.columns) == gradient_task.schema.names
    assert np.abs(back.to_numpy(float) - X.to_numpy(float)).max() <= 1e-9


def test_torch_mirror_reproduces_predict_proba_and_has_gradients(gradient_task, one_torch_thread):
    import torch  # the extra that gradient methods need; the fixture skips without it

    view = gradient_task.model_view()
    module = view.torch_module()
    assert view.agreement()["torch"] <= 1e-6 and view.agreement()["network"] <= 1e-6
    X = gradient_task.X_test[gradient_task.schema.names]
    z = torch.tensor(view.encode(X), requires_grad=True)
    p = module(z)
    assert np.abs(p.detach().numpy() - gradient_task.predict_proba(X)).max() <= 1e-6
    p[:, 1].sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    if "linear" in view.kinds:
        lin = view.linear()
        logit = view.encode(X) @ lin.weights + lin.intercept
        assert np.abs(1 / (1 + np.exp(-logit)) - gradient_task.predict_proba(X)[:, 1]).max() <= 1e-6


def test_a_mirror_the_classifier_does_not_offer_is_refused(gradient_task):
    with pytest.raises(UserError, match="not trees"):
        gradient_task.model_view().trees()


@pytest.mark.parametrize("model", ["random-forest", "gradient-boosting", "xgboost"])
def test_trees_reproduce_predict_proba(model):
    if model == "xgboost" and importlib.util.find_spec("xgboost") is None:
        pytest.skip("needs xgboost (the dice extra)")
    task = heart(model)
    view = task.model_view()
    assert view.kinds == {"proba", "trees"}
    trees = view.trees()
    assert isinstance(trees, Trees) and len(trees.trees) == 25
    assert trees.combine == ("mean" if model == "random-forest" else "sigmoid-sum")
    X = task.X_test[task.schema.names]
    tol = 1e-5 if model == "xgboost" else 1e-6
    assert np.abs(trees.proba(view.encode(X)) - task.predict_proba(X)).max() <= tol
    assert view.agreement()["trees"] <= tol


def test_a_wrong_mirror_is_refused_at_build(gradient_task):
    view = gradient_task.model_view()

    class OffByABias:  # the real source, with every bias nudged
        def __getattr__(self, name):
            return getattr(view.source, name)

        def network(self):
            net = view.source.network()
            return type(net)(net.weights, tuple(b + 0.01 for b in net.biases), net.activation)

    wrong = ModelView(view.classifier, view.kinds, view.blocks, OffByABias(), view.check_rows)
    with pytest.raises(ModelMismatch, match="differs from its predict_proba"):
        wrong.network()


def test_xgboost_round_trips_through_the_cache_as_json(tmp_path, monkeypatch):
    if importlib.util.find_spec("xgboost") is None:
        pytest.skip("needs xgboost (the dice extra)")
    monkeypatch.setenv("CFBENCH_CACHE", str(tmp_path))
    first = heart("xgboost")
    folder = tmp_path / "classifiers"
    booster = list(folder.glob("*.xgb.json"))
    assert len(booster) == 1 and isinstance(json.loads(booster[0].read_bytes()), dict)
    assert not [f for f in folder.iterdir() if f.read_bytes()[:1] == b"\x80"]  # no pickle
    second = heart("xgboost")
    assert second.model_from_cache and not first.model_from_cache
    assert second.model_sha256 == first.model_sha256
    X = first.X_test
    assert np.array_equal(first.predict_proba(X), second.predict_proba(X))
    booster[0].write_bytes(booster[0].read_bytes().replace(b"{", b"{ ", 1))  # tampered
    third = heart("xgboost")
    assert not third.model_from_cache


def test_xgboost_missing_is_one_line_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(classifier.importlib.util, "find_spec",
                        lambda name, *a: None if name == "xgboost" else real(name, *a))
    with pytest.raises(UserError, match=r"needs the xgboost package: pip install 'cfbench-harness\[dice\]'"):
        heart("xgboost")
