"""C-CHVAE plugin: conformance, validity on heart, immutables, determinism and the VAE cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cfbench.core.errors import UserError
from cfbench.tasks.spec import Task, resolve_spec
from cfbench.testing import check_generator

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

torch = pytest.importorskip("torch")
from cfbench_cchvae import PARAMS, cfbench_generators, make_cchvae  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = {"epochs": 20}  # a tenth of a second to train on heart; the search finds CFs in a few rings


@pytest.fixture(scope="module")
def heart() -> Task:
    return Task.load(resolve_spec("heart"))


@pytest.fixture(scope="module")
def spec():
    return cfbench_generators()[0]


def run(heart: Task, cache: Path, k: int = 1, seed: int = 0, n: int = 3, budget: float = 30.0,
        **params):
    ctx = heart.fit_context(seed, {})
    ctx.cache_dir = cache
    gen = make_cchvae(**{**TINY, **params}).fit(ctx)
    Q = heart.queries(n)
    res = gen.generate(Q[heart.schema.names].reset_index(drop=True), Q["target"].to_numpy(int),
                       k, budget)
    return gen, Q, res


def test_registered_in_pyproject_and_importable_without_torch():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["cfbench"]["cchvae"] == "cfbench_cchvae"
    assert "plugins/cfbench_cchvae" in meta["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    code = "import sys, cfbench_cchvae; assert 'torch' not in sys.modules, 'torch imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_declared_defaults_are_the_constructors(spec):
    import inspect

    from cfbench_cchvae.cchvae import CCHVAE

    sig = inspect.signature(CCHVAE.__init__).parameters
    assert {p.name: p.default for p in PARAMS} == {n: sig[n].default for n in sig
                                                   if n not in ("self", "variant")}
    assert spec.extra == "nice" and spec.requires == ("torch",)
    with pytest.raises(UserError, match="hidden"):
        make_cchvae(hidden="8,x")


@pytest.mark.slow
def test_conforms(heart, spec):
    check_generator(spec, task=heart, params=TINY)


def test_valid_cfs_on_heart_keep_immutables(heart, tmp_path):
    gen, Q, res = run(heart, tmp_path, n=2)
    ok = [r for r in res if r.status == "ok"]
    assert len(ok) >= 0.8 * len(res)
    fixed = [f.name for f in heart.schema.features if not f.mutable]
    for (_, q), r in zip(Q.iterrows(), res, strict=True):
        if r.status != "ok":
            continue
        assert gen._predict(r.cfs.to_numpy(float))[0] == q["target"]
        np.testing.assert_array_equal(r.cfs[fixed].to_numpy(float)[0], q[fixed].to_numpy(float))
        for f in heart.schema.features:  # codes snapped, integers rounded
            v = r.cfs[f.name].iloc[0]
            if f.categories:
                assert v in f.categories
            if f.integer:
                assert v == round(v)


def test_k_nearest_are_distinct_and_sorted(heart, tmp_path):
    gen, Q, res = run(heart, tmp_path, k=3, n=1)
    for (_, q), r in zip(Q.iterrows(), res, strict=True):
        assert r.status == "ok" and 1 <= len(r.cfs) <= 3
        C = r.cfs.to_numpy(float)
        assert len(np.unique(C, axis=0)) == len(C)
        d = gen.space_.distance(C, q[heart.schema.names].to_numpy(float))
        assert np.all(np.diff(d) >= 0)


def test_same_seed_same_weights_and_cfs_other_seed_other_weights(heart, tmp_path):
    a, _, ra = run(heart, tmp_path / "a", n=1)
    b, _, rb = run(heart, tmp_path / "b", n=1)  # fresh caches: both trained
    assert not a.meta_["cached"] and not b.meta_["cached"]
    for (name, wa), wb in zip(a.net_.state_dict().items(), b.net_.state_dict().values(), strict=True):
        assert torch.equal(wa, wb), name
    assert [r.cfs.to_numpy().tobytes() for r in ra] == [r.cfs.to_numpy().tobytes() for r in rb]
    c, _, _ = run(heart, tmp_path / "c", n=1, seed=1)
    assert not torch.equal(a.net_.state_dict()["mu.weight"], c.net_.state_dict()["mu.weight"])


def test_cached_vae_is_reused_and_a_corrupted_one_retrained(heart, tmp_path, monkeypatch, capsys):
    from cfbench_cchvae import vae

    first, _, r1 = run(heart, tmp_path, n=1)
    calls = []
    real = vae.train
    monkeypatch.setattr(vae, "train", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    second, _, r2 = run(heart, tmp_path, n=1)
    assert second.meta_["cached"] and calls == []
    assert [r.cfs.to_numpy().tobytes() for r in r1] == [r.cfs.to_numpy().tobytes() for r in r2]
    # another search parameter shares the weights; another training parameter does not
    assert run(heart, tmp_path, n=1, step=0.25)[0].meta_["cached"]
    (weights,) = tmp_path.glob("cchvae/heart-*/vae.pt")
    weights.write_bytes(b"\x80\x04not a state dict")
    third, _, r3 = run(heart, tmp_path, n=1)  # refused with a warning and retrained, no crash
    assert "discarding cached VAE" in capsys.readouterr().err
    assert not third.meta_["cached"] and calls == [1]
    assert [r.cfs.to_numpy().tobytes() for r in r1] == [r.cfs.to_numpy().tobytes() for r in r3]


def test_a_tampered_file_with_a_matching_size_is_refused(heart, tmp_path):
    """A state dict saved by someone else (valid torch file, wrong hash) is not loaded."""
    run(heart, tmp_path, n=1)
    (weights,) = tmp_path.glob("cchvae/heart-*/vae.pt")
    state = torch.load(weights, weights_only=True)
    state["mu.weight"] = torch.zeros_like(state["mu.weight"])
    torch.save(state, weights)
    gen, _, _ = run(heart, tmp_path, n=1)
    assert not gen.meta_["cached"]
    assert not torch.equal(gen.net_.state_dict()["mu.weight"], state["mu.weight"])


def test_constraints_filter_directions_without_clipping(heart, tmp_path):
    """With a decrease-only cholesterol, no CF raises it; the value is never clipped to the query."""
    from dataclasses import replace

    schema = heart.schema
    feats = tuple(replace(f, direction="decrease-only") if f.name == "chol" else f
                  for f in schema.features)
    ctx = heart.fit_context(0, {})
    ctx.cache_dir = tmp_path
    ctx.schema = type(schema)(feats)
    gen = make_cchvae(**TINY, max_iter=30).fit(ctx)
    Q = heart.queries(1)
    res = gen.generate(Q[schema.names].reset_index(drop=True), Q["target"].to_numpy(int), 2, 30.0)
    for (_, q), r in zip(Q.iterrows(), res, strict=True):
        if r.status == "ok":
            assert (r.cfs["chol"] <= q["chol"]).all()


def test_budget_reached_is_a_timeout_not_a_crash(heart, tmp_path):
    _, _, res = run(heart, tmp_path, n=1, budget=1e-9)
    assert {r.status for r in res} == {"timeout"}
    assert all(r.extra["rings"] == 0 for r in res)
