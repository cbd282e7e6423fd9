"""CFProto plugin: conformance and valid CFs on an MLP heart, immutables, determinism, and not
applicable (skipped before any work) on the default random-forest heart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gradient_task import heart_spec

import cfbench
from cfbench.core.errors import UserError
from cfbench.core.plugins import registry
from cfbench.entry import prepare
from cfbench.tasks.spec import Task, resolve_spec
from cfbench.testing import check_generator

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

torch = pytest.importorskip("torch")
from cfbench_cfproto import PARAMS, cfbench_generators, make_cfproto  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
#: a shorter search than the defaults (10 x 1000 FISTA steps) keeps each test under a second
SHORT = {"c_steps": 3, "max_iterations": 300}



@pytest.fixture(scope="module")
def heart_mlp(tmp_path_factory) -> Task:
    return Task.load(resolve_spec(str(heart_spec(tmp_path_factory.mktemp("spec"), "mlp"))))


@pytest.fixture(scope="module")
def spec():
    return cfbench_generators()[0]


def run(task: Task, n: int = 3, seed: int = 0, budget: float = 30.0, **params):
    gen = make_cfproto(**{**SHORT, **params}).fit(task.fit_context(seed, {}))
    Q = task.queries(n)
    res = gen.generate(Q[task.schema.names].reset_index(drop=True), Q["target"].to_numpy(int),
                       1, budget)
    return gen, Q, res


def test_registered_in_pyproject_and_importable_without_torch(spec):
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["cfbench"]["cfproto"] == "cfbench_cfproto"
    assert "plugins/cfbench_cfproto" in meta["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    code = "import sys, cfbench_cfproto; assert 'torch' not in sys.modules, 'torch imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert spec.needs == frozenset({"proba", "gradients"})
    assert spec.extra == "nice" and spec.requires == ("torch",)


def test_declared_defaults_are_the_constructors():
    import inspect

    from cfbench_cfproto.cfproto import CFProto

    sig = inspect.signature(CFProto.__init__).parameters
    assert {p.name: p.default for p in PARAMS} == {n: sig[n].default for n in sig
                                                   if n not in ("self", "variant")}
    with pytest.raises(UserError, match="c_steps"):
        make_cfproto(c_steps=0)


def test_conforms_on_an_mlp_heart(heart_mlp, spec):
    check_generator(spec, task=heart_mlp, params=SHORT, changes=("theta", 0.0))


def test_valid_cfs_keep_immutables_codes_and_bounds(heart_mlp):
    gen, Q, res = run(heart_mlp)
    assert sum(r.status == "ok" for r in res) >= 0.8 * len(res)
    schema = heart_mlp.schema
    fixed = schema.immutable
    lower, upper = schema.bounds()
    for (_, q), r in zip(Q.iterrows(), res, strict=True):
        if r.status != "ok":
            continue
        assert heart_mlp.predict(r.cfs)[0] == q["target"]
        np.testing.assert_array_equal(r.cfs[fixed].to_numpy(float)[0], q[fixed].to_numpy(float))
        row = r.cfs.to_numpy(float)[0]
        assert np.all(np.isnan(lower) | (row >= lower)) and np.all(np.isnan(upper) | (row <= upper))
        for f in schema.features:
            v = r.cfs[f.name].iloc[0]
            if f.categories:
                assert v in f.categories
            if f.integer:
                assert v == round(v)


def test_deterministic(heart_mlp):
    a = run(heart_mlp, n=2)[2]
    b = run(heart_mlp, n=2, seed=1)[2]  # no randomness at all: the seed changes nothing
    assert [r.status for r in a] == [r.status for r in b]
    assert [r.cfs.to_numpy().tobytes() for r in a if r.cfs is not None] == \
           [r.cfs.to_numpy().tobytes() for r in b if r.cfs is not None]


def test_budget_reached_is_a_timeout_not_a_crash(heart_mlp):
    _, _, res = run(heart_mlp, n=1, budget=1e-9)
    assert {r.status for r in res} == {"timeout"}


def test_not_applicable_on_the_random_forest_heart(tmp_path, monkeypatch):
    if "cfproto" not in registry().generators:
        # the installed cfbench may be another checkout: register the package by a dist-info
        info = tmp_path / "site" / "cfbench_cfproto_shim-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cfbench-cfproto-shim\n"
                                       "Version: 0.1\n")
        (info / "entry_points.txt").write_text("[cfbench]\ncfproto = cfbench_cfproto\n")
        monkeypatch.syspath_prepend(str(tmp_path / "site"))
    registry.cache_clear()
    try:
        plan = prepare(cfbench.RunConfig(task=str(heart_spec(tmp_path, "random-forest")),
                                         methods="cfproto,nearest-neighbour", out=tmp_path / "r"))
    finally:
        registry.cache_clear()
    assert [c.method for c in plan.pairs] == ["nearest-neighbour"]
    assert plan.skipped == {"cfproto": "needs gradients; the task's classifier random-forest "
                                       "offers proba, trees"}
