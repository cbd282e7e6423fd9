"""Every in-tree generator passes ``cfbench.testing.check_generator`` (the checks themselves, and
how each fails, are test_generator_checks.py's)."""

from __future__ import annotations

import json

import pytest

from cfbench.core.generator import GeneratorSpec
from cfbench.core.plugins import registry
from cfbench.tasks.spec import Task, resolve_spec
from cfbench.testing import check_generator


@pytest.fixture(scope="module")
def heart() -> Task:
    return Task.load(resolve_spec("heart"))


def _spec(name: str) -> GeneratorSpec:
    spec = registry().generators.get(name)
    if spec is None or not spec.status()[0]:
        pytest.skip(f"{name} is not available here")
    return spec


@pytest.mark.parametrize("name, variant, kw", [
    ("nearest-neighbour", "default", {}),
    ("nice", "none", {}),
    ("nice", "sparsity", {}),
    ("nice", "proximity", {}),
    ("dice", "random", {"changes": ("total_cfs", 6)}),
    # KD-tree search over training rows finds no CF that keeps heart's immutables for these queries
    ("dice", "kdtree", {"require_found": False}),
    pytest.param("dice", "genetic", {}, marks=pytest.mark.slow),
    pytest.param("nice", "plausibility", {"params": {"ae_epochs": 3}}, marks=pytest.mark.slow),
    # CFNOW stops on wall-clock limits, so its CFs are not reproducible run to run
    pytest.param("cfnow", "random", {"deterministic": False, "budget": 3.0}, marks=pytest.mark.slow),
    pytest.param("cfnow", "greedy", {"deterministic": False, "budget": 2.0}, marks=pytest.mark.slow),
    pytest.param("cfnow", "random_optim", {"deterministic": False, "budget": 2.0},
                 marks=pytest.mark.slow),
])
def test_in_tree_generators_conform(heart, name, variant, kw):
    report = check_generator(_spec(name), variant, task=heart, **kw)
    assert len(report["statuses"]) == len(heart.queries(1))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("torch")
    from cfbench_llm.testing import tiny_model_dir

    return str(tiny_model_dir(tmp_path_factory.mktemp("tiny"), seed=1, sliding_window=32))


@pytest.mark.slow
@pytest.mark.parametrize("name, variant, extra", [
    ("llm-zeroshot", "default", {}),
    ("llm-fewshot", "default", {}),
    ("llm-finetuned", "default", {"pairs": 8, "epochs": 1, "ft_batch": 4, "rank": 4}),
])
def test_llm_generators_conform_with_the_tiny_model(heart, tiny, one_torch_thread, name, variant,
                                                    extra):
    """The tiny random model writes nonsense, but constrained decoding keeps it well-formed."""
    spec = _spec(name)
    check_generator(spec, variant, task=heart, params={"model": tiny, "batch_size": 4, **extra})


@pytest.mark.parametrize("name, variant", [
    ("api-zeroshot", "default"), ("api-fewshot", "default"), ("api-fewshot", "retrieval"),
    ("api-fewshot", "verified")])
def test_api_generators_conform_with_a_scripted_server(heart, monkeypatch, name, variant):
    """The api-* methods against test_llm_api's scripted OpenAI-compatible server on 127.0.0.1:
    every answer is a target-class training row's mutable values, so it parses."""
    pytest.importorskip("openai")
    from test_llm_api import HostileServer

    row = heart.X_train[heart.y_train == 1].iloc[0]
    answer = json.dumps({f.name: float(row[f.name]) for f in heart.schema.features if f.mutable})
    with HostileServer([answer]) as srv:
        monkeypatch.setenv("CFBENCH_API_BASE", f"http://127.0.0.1:{srv.port}/v1")
        monkeypatch.setenv("CFBENCH_API_MODEL", "m")
        monkeypatch.delenv("CFBENCH_API_KEY", raising=False)
        report = check_generator(_spec(name), variant, task=heart, params={"concurrency": 1},
                                 budget=10.0)
    assert "ok" in report["statuses"]
