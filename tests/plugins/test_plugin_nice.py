"""NICE plugin: the nearest unlike neighbour, greedy substitution, constraints, categoricals."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from cfbench_nice import make_nice
from mixed_task import FEATURES, make_mixed_task  # noqa: F401

from cfbench.core.errors import UserError
from cfbench.core.generator import FitContext
from cfbench.core.plugins import build_registry
from cfbench.core.schema import FeatureSchema
from cfbench.score.metrics import changed, constraint_violations


def make_task(constrained: bool, n: int = 300, seed: int = 0):
    return make_mixed_task(constrained, n, seed, per_class=4)


@pytest.fixture(scope="module")
def free():
    return make_task(constrained=False)


@pytest.fixture(scope="module")
def constrained():
    return make_task(constrained=True)


def heom_reference(a: np.ndarray, b: np.ndarray, scale: np.ndarray, cat: np.ndarray) -> float:
    """HEOM written out feature by feature, independent of the plugin's vectorised version."""
    total = 0.0
    for j in range(len(a)):
        total += float(a[j] != b[j]) if cat[j] else abs(a[j] - b[j]) / scale[j]
    return total


def reference_nun(ctx: FitContext, pipe, q: np.ndarray, t: int) -> np.ndarray:
    """Nearest correctly classified training row of class t, by a plain loop (no constraints)."""
    X = ctx.X_train[ctx.schema.names].to_numpy(float)
    pred = pipe.predict(ctx.X_train)
    cat = ctx.schema.mask("kind", "categorical")
    span = X.max(axis=0) - X.min(axis=0)
    scale = np.where(cat | (span == 0), 1.0, span)
    best, best_d = None, np.inf
    for row, label, p in zip(X, ctx.y_train, pred, strict=True):
        if label == t and p == t:
            d = heom_reference(q, row, scale, cat)
            if d < best_d:
                best, best_d = row, d
    return best


def heom_of(ctx: FitContext, a: np.ndarray, b: np.ndarray) -> float:
    X = ctx.X_train[ctx.schema.names].to_numpy(float)
    cat = ctx.schema.mask("kind", "categorical")
    span = X.max(axis=0) - X.min(axis=0)
    return heom_reference(a, b, np.where(cat | (span == 0), 1.0, span), cat)


def cfs_of(results) -> list[np.ndarray]:
    return [r.cfs.to_numpy(float) if r.status == "ok" else None for r in results]


def test_registered_and_importable_without_torch():
    spec = build_registry().generator("nice")
    assert spec.variants == ("none", "sparsity", "proximity", "plausibility")
    assert spec.capabilities.constraints and spec.capabilities.batch_size is None
    code = "import sys, cfbench_nice; assert 'torch' not in sys.modules, 'torch imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_variant_is_a_user_error():
    with pytest.raises(UserError, match="valid choices: none, sparsity, proximity, plausibility"):
        make_nice("greedy")


def test_none_returns_exactly_the_nearest_unlike_neighbour(free):
    ctx, Q, T, pipe = free
    res = make_nice("none").fit(ctx).generate(Q, T, k=1, budget=10)
    for q, t, r in zip(Q.to_numpy(float), T, res, strict=True):
        assert r.status == "ok"
        assert list(r.cfs.columns) == ctx.schema.names
        np.testing.assert_array_equal(r.cfs.to_numpy(float)[0], reference_nun(ctx, pipe, q, t))


@pytest.mark.parametrize("variant", ["sparsity", "proximity", "plausibility"])
def test_search_variants_are_valid_substitutions_no_farther_than_the_nun(free, variant):
    ctx, Q, T, pipe = free
    res = make_nice(variant).fit(ctx).generate(Q, T, k=1, budget=10)
    for q, t, r in zip(Q.to_numpy(float), T, res, strict=True):
        assert r.status == "ok", r.reason
        cf = r.cfs.to_numpy(float)[0]
        nun = reference_nun(ctx, pipe, q, t)
        assert pipe.predict(r.cfs)[0] == t
        # every feature comes from the query or from the NUN, so the CF is no farther
        assert np.all((cf == q) | (cf == nun))
        assert heom_of(ctx, q, cf) <= heom_of(ctx, q, nun) + 1e-12
        assert r.extra["steps"] == int((cf != q).sum())


def test_sparsity_changes_no_more_features_than_the_nun_and_usually_fewer(free):
    ctx, Q, T, pipe = free
    res = make_nice("sparsity").fit(ctx).generate(Q, T, k=1, budget=10)
    n_cf = [int((r.cfs.to_numpy(float)[0] != q).sum()) for q, r in zip(Q.to_numpy(float), res, strict=True)]
    n_nun = [int((reference_nun(ctx, pipe, q, t) != q).sum()) for q, t in zip(Q.to_numpy(float), T, strict=True)]
    assert all(a <= b for a, b in zip(n_cf, n_nun, strict=True))
    assert sum(n_cf) < sum(n_nun)


@pytest.mark.parametrize("variant", ["none", "sparsity", "proximity", "plausibility"])
def test_constraints_hold_and_outputs_conform_to_the_schema(constrained, variant):
    ctx, Q, T, pipe = constrained
    res = make_nice(variant).fit(ctx).generate(Q, T, k=1, budget=10)
    assert {r.status for r in res} <= {"ok", "not_found"}
    assert sum(r.status == "ok" for r in res) >= len(res) // 2
    lo, hi = ctx.schema.bounds()
    for q, t, r in zip(Q.to_numpy(float), T, res, strict=True):
        if r.status != "ok":
            assert "constraints" in r.reason
            continue
        assert list(r.cfs.columns) == ctx.schema.names and len(r.cfs) == 1
        C = r.cfs.to_numpy(float)
        assert np.isfinite(C).all()
        X = q[None, :]
        flags = constraint_violations(X, C, changed(X, C, hi - lo), ctx.schema)
        assert not any(v.any() for v in flags.values()), flags
        for j, f in enumerate(ctx.schema.features):
            if f.kind != "numeric":
                assert C[0, j] in f.categories
        assert pipe.predict(r.cfs)[0] == t


def test_a_batch_gives_the_same_cfs_as_one_query_at_a_time(constrained):
    ctx, Q, T, _ = constrained
    gen = make_nice("proximity").fit(ctx)
    together = cfs_of(gen.generate(Q, T, k=1, budget=10))
    alone = [cfs_of(gen.generate(Q.iloc[[i]], T[i : i + 1], k=1, budget=10))[0] for i in range(len(Q))]
    for a, b in zip(together, alone, strict=True):
        assert (a is None and b is None) or np.array_equal(a, b)


def test_plausibility_is_seeded(free):
    ctx, Q, T, _ = free
    a = make_nice("plausibility").fit(ctx)
    b = make_nice("plausibility").fit(ctx)
    for x, y in zip(cfs_of(a.generate(Q, T, 1, 10)), cfs_of(b.generate(Q, T, 1, 10)), strict=True):
        np.testing.assert_array_equal(x, y)


def test_plausibility_autoencoder_learns_structure_beyond_the_means():
    from cfbench_nice.autoencoder import Encoder, fit_autoencoder

    rng = np.random.default_rng(0)
    a = rng.normal(size=300)
    X = np.c_[a, a + 0.05 * rng.normal(size=300), -a + 0.05 * rng.normal(size=300), (a > 0).astype(float)]
    schema = FeatureSchema.from_records([
        {"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d", "kind": "categorical", "categories": [0, 1]},
    ])
    ae = fit_autoencoder(X, schema, seed=0, epochs=100, bottleneck=2)
    Z = Encoder.fit(X, schema).transform(X)
    assert ae.errors(X).mean() < 0.5 * ((Z - Z.mean(axis=0)) ** 2).mean()


def test_bad_parameters_are_user_errors():
    with pytest.raises(UserError, match="ae_epochs"):
        make_nice("plausibility", ae_epochs=0)
