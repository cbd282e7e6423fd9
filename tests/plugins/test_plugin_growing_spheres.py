"""Growing Spheres plugin: conformance, validity on heart, immutables, seeding, budget, sampling."""

from __future__ import annotations

import numpy as np
import pytest
from cfbench_growing_spheres import cfbench_generators, make_growing_spheres
from cfbench_growing_spheres.growing_spheres import Space, sample_layer
from mixed_task import make_mixed_task

from cfbench.core.errors import UserError
from cfbench.tasks.spec import Task, resolve_spec
from cfbench.testing import check_generator


@pytest.fixture(scope="module")
def heart() -> Task:
    return Task.load(resolve_spec("heart"))  # ~10 s the first time (the classifier is trained)


@pytest.fixture(scope="module")
def mixed():
    """The small mixed-type task: immutables (age, sex), categoricals, an ordinal, directions."""
    return make_mixed_task(constrained=True, n=300, seed=0, per_class=3)


def run(mixed, seed=0, budget=30.0, queries=None, **params):
    ctx, Q, T, _ = mixed
    ctx.seed = seed
    if queries is not None:
        Q, T = Q.iloc[queries], T[queries]
    params.setdefault("n_in_layer", 300)
    return make_growing_spheres(**params).fit(ctx).generate(Q, T, 1, budget)


@pytest.mark.slow
def test_conforms_and_finds_valid_cfs_on_heart(heart):
    check_generator(cfbench_generators()[0], "default", task=heart, changes=("first_radius", 0.5))
    queries = heart.queries(3)
    gen = make_growing_spheres().fit(heart.fit_context(0))
    res = gen.generate(queries[heart.schema.names], queries["target"].to_numpy(int), 1, 30.0)
    valid = [r.status == "ok" and heart.predict(r.cfs)[0] == t
             for r, t in zip(res, queries["target"], strict=True)]
    assert sum(valid) >= 0.8 * len(res)


def test_cfs_are_valid_and_keep_immutables_codes_and_integers(mixed):
    ctx, Q, T, pipe = mixed
    res = run(mixed)
    Xq = Q[ctx.schema.names].to_numpy(float)
    for i, r in enumerate(res):
        assert r.status == "ok", r.reason
        assert pipe.predict(r.cfs)[0] == T[i]  # each CF is an enemy the classifier confirmed
        cf = r.cfs.to_numpy(float)[0]
        for j, f in enumerate(ctx.schema.features):
            if not f.mutable:
                assert cf[j] == Xq[i, j], f.name
            if f.kind != "numeric":
                assert cf[j] in f.categories, f.name
            if f.integer:
                assert cf[j] == np.round(cf[j]), f.name


def test_a_sphere_past_an_ordinal_s_last_code_decodes_to_a_code(mixed):
    """Heart's ``ca`` (codes 0-3) came back as -1 before ordinals were snapped (rounding alone)."""
    ctx, Q = mixed[0], mixed[1]
    space = Space(ctx)
    x = Q[ctx.schema.names].to_numpy(float)[0]
    j = ctx.schema.names.index("exercise")  # ordinal, codes 0-4
    Z = np.repeat(space.encode(x[None, :]), 2, axis=0)
    col = space.num_cols[space.numeric.index(j)]
    Z[:, col] = np.array([-2.6, 7.4]) / space.range[j]
    assert space.decode(Z, x)[:, j].tolist() == [0.0, 4.0]


def test_feature_selection_makes_cfs_sparser(mixed):
    Xq = mixed[1][mixed[0].schema.names].to_numpy(float)
    dense = run(mixed, sparse=False)
    sparse = run(mixed)
    n_dense = [(r.cfs.to_numpy(float)[0] != x).sum() for r, x in zip(dense, Xq, strict=True)]
    n_sparse = [(r.cfs.to_numpy(float)[0] != x).sum() for r, x in zip(sparse, Xq, strict=True)]
    assert all(a <= b for a, b in zip(n_sparse, n_dense, strict=True))
    assert sum(n_sparse) < sum(n_dense)


def test_same_seed_same_cfs_other_seed_other_cfs_and_batch_independent(mixed):
    some = [0, 2, 4]
    a = [r.cfs.to_numpy(float) for r in run(mixed, queries=some, sparse=False)]
    b = [r.cfs.to_numpy(float) for r in run(mixed, queries=some, sparse=False)]
    c = [r.cfs.to_numpy(float) for r in run(mixed, queries=some, seed=1, sparse=False)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    alone = run(mixed, queries=[4], sparse=False)[0].cfs.to_numpy(float)
    assert np.array_equal(alone, a[2])


def test_a_spent_budget_stops_the_search(mixed):
    res = run(mixed, budget=0.0, first_radius=1e-3)
    assert {r.status for r in res} <= {"ok", "timeout"}
    assert all(r.extra["calls"] <= 2 for r in res)  # the first ball (and one layer at most)


def test_layer_sampling_is_uniform_in_the_layer_even_in_high_dimensions():
    rng = np.random.default_rng(0)
    Z = sample_layer(rng, np.zeros(3), 1.0, 2.0, 20000)
    r = np.linalg.norm(Z, axis=1)
    assert r.min() >= 1.0 and r.max() < 2.0
    # uniform in volume: P(r < 1.5) = (1.5^3 - 1) / (2^3 - 1)
    assert abs((r < 1.5).mean() - (1.5**3 - 1) / 7) < 0.02
    big = sample_layer(rng, np.zeros(500), 3.0, 3.1, 10)
    assert np.isfinite(big).all() and (np.linalg.norm(big, axis=1) >= 3.0).all()


def test_bad_parameters_are_user_errors():
    with pytest.raises(UserError, match="decrease_radius"):
        make_growing_spheres(decrease_radius=1.0)
    with pytest.raises(UserError, match="valid choices"):
        make_growing_spheres("ring")
