"""DiCE plugin: schema mapping, immutables, not-found and budget handling, seeding."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from mixed_task import FEATURES, make_mixed_task  # noqa: F401

from cfbench.core.errors import UserError
from cfbench.core.generator import FitContext
from cfbench.core.plugins import build_registry
from cfbench.core.schema import FeatureSchema
from cfbench.score.metrics import changed, constraint_violations

pytest.importorskip("dice_ml")

from cfbench_dice import make_dice  # noqa: E402
from cfbench_dice.generator import decimals  # noqa: E402


def make_task(constrained: bool, n: int = 300, seed: int = 0):
    return make_mixed_task(constrained, n, seed, per_class=3)



@pytest.fixture(scope="module")
def task():
    return make_task(constrained=True)


def flags_for(ctx: FitContext, q: np.ndarray, C: np.ndarray) -> dict[str, np.ndarray]:
    """The harness's own constraint metric for the CFs ``C`` of query ``q``."""
    lo, hi = ctx.schema.bounds()
    X = np.repeat(q[None, :], len(C), axis=0)
    return constraint_violations(X, C, changed(X, C, hi - lo), ctx.schema)


@pytest.fixture(scope="module", params=["random", "genetic", "kdtree"])
def dice_results(request, task):
    ctx, Q, T, pipe = task
    gen = make_dice(request.param).fit(ctx)
    return request.param, gen.generate(Q, T, k=2, budget=4.0)


def test_registered_and_importable_without_dice_ml():
    spec = build_registry().generator("dice")
    assert spec.variants == ("random", "genetic", "kdtree")
    assert spec.requires == ("dice_ml",) and spec.extra == "dice"
    code = "import sys, cfbench_dice; assert 'dice_ml' not in sys.modules, 'dice_ml imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bad_variant_and_parameters_are_user_errors():
    with pytest.raises(UserError, match="valid choices: random, genetic, kdtree"):
        make_dice("gradient")
    with pytest.raises(UserError, match="posthoc_sparsity_algorithm"):
        make_dice("random", posthoc_sparsity_algorithm="fast")


@pytest.mark.slow
def test_outputs_conform_to_the_schema(task, dice_results):
    ctx, Q, T, pipe = task
    variant, res = dice_results
    assert len(res) == len(Q)
    assert {r.status for r in res} <= {"ok", "not_found", "timeout"}, [r.reason for r in res]
    if variant != "kdtree":  # kdtree needs exact matches on the immutables among 10*k neighbours
        assert sum(r.status == "ok" for r in res) >= len(res) // 2
    for r in res:
        if r.status != "ok":
            continue
        assert list(r.cfs.columns) == ctx.schema.names
        C = r.cfs.to_numpy(float)
        assert 1 <= len(C) <= 2 and np.isfinite(C).all()
        for j, f in enumerate(ctx.schema.features):
            if f.kind != "numeric":
                assert set(C[:, j]) <= set(f.categories)
            if f.integer:
                assert np.array_equal(C[:, j], np.round(C[:, j]))


@pytest.mark.slow
def test_immutables_bounds_and_directions_are_kept_and_the_metric_agrees(task, dice_results):
    ctx, Q, T, _ = task
    variant, res = dice_results
    imm = ~ctx.schema.mask("mutable")
    for q, r in zip(Q.to_numpy(float), res, strict=True):
        if r.status != "ok":
            continue
        C = r.cfs.to_numpy(float)
        flags = flags_for(ctx, q, C)
        # the harness metric says exactly what a direct comparison says ...
        np.testing.assert_array_equal(flags["changes_immutable"], (C[:, imm] != q[imm]).any(axis=1))
        # ... and DiCE keeps to features_to_vary and permitted_range here
        assert not any(v.any() for v in flags.values()), (variant, flags)


def test_random_cfs_are_valid_because_precision_comes_from_the_data(task):
    ctx, Q, T, pipe = task
    res = make_dice("random").fit(ctx).generate(Q, T, k=2, budget=8.0)
    C = [(r.cfs, t) for r, t in zip(res, T, strict=True) if r.status == "ok"]
    assert C
    for cfs, t in C:
        assert (pipe.predict(cfs) == t).all()


def test_the_harness_flags_cfs_that_change_immutables(task):
    """DiCE told nothing is immutable changes age/sex; scored on the real schema, that is flagged."""
    ctx, Q, T, _ = task
    free_schema = FeatureSchema.from_records([
        {k: v for k, v in f.items() if k not in ("mutable", "direction")} for f in FEATURES
    ]).with_data_bounds(ctx.X_train)
    free_ctx = FitContext(**{**ctx.__dict__, "schema": free_schema})
    res = make_dice("random").fit(free_ctx).generate(Q, T, k=2, budget=8.0)
    imm = ~ctx.schema.mask("mutable")
    n_flagged = 0
    for q, r in zip(Q.to_numpy(float), res, strict=True):
        if r.status != "ok":
            continue
        C = r.cfs.to_numpy(float)
        flagged = flags_for(ctx, q, C)["changes_immutable"]
        np.testing.assert_array_equal(flagged, (C[:, imm] != q[imm]).any(axis=1))
        n_flagged += int(flagged.sum())
    assert n_flagged > 0


def test_no_counterfactual_is_not_found_and_a_hang_is_a_timeout(task):
    ctx, Q, T, _ = task
    never = FitContext(**{**ctx.__dict__, "predict_proba": lambda D: np.tile([0.9, 0.1], (len(D), 1))})
    q, t = Q.iloc[[0]], np.array([1])
    for variant in ("random", "kdtree"):
        (r,) = make_dice(variant).fit(never).generate(q, t, k=1, budget=5.0)
        assert r.status == "not_found", (variant, r.status, r.reason)
    start = time.monotonic()
    (r,) = make_dice("genetic").fit(never).generate(q, t, k=1, budget=1.0)
    assert r.status == "timeout" and "budget of 1 s" in r.reason
    assert time.monotonic() - start < 5.0


def test_random_is_reproducible_for_a_seed(task):
    ctx, Q, T, _ = task
    a = make_dice("random").fit(ctx).generate(Q.iloc[:3], T[:3], k=2, budget=8.0)
    b = make_dice("random").fit(ctx).generate(Q.iloc[:3], T[:3], k=2, budget=8.0)
    for x, y in zip(a, b, strict=True):
        assert x.status == y.status
        if x.status == "ok":
            pd.testing.assert_frame_equal(x.cfs, y.cfs)


def test_decimals_are_read_from_the_values():
    assert decimals(np.array([0.5, 1.25, 3.0])) == 2
    assert decimals(np.array([1e-05, 0.0])) == 5  # DiCE's own inference crashes on this (DiCE#442)
    assert decimals(np.array([12.0, 40.0])) == 0
    assert decimals(np.array([1 / 3])) == 6  # capped
