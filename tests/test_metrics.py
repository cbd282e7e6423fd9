"""Every metric against a case small enough to compute by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cfbench import metrics as M
from cfbench.schema import Feature, FeatureSchema

SCHEMA = FeatureSchema((
    Feature("age", mutable=False, lower=40, upper=90),
    Feature("steps", actionable=True, direction="increase-only", lower=0, upper=30000),
    Feature("site", kind="categorical", categories=(0.0, 1.0, 2.0)),
))


def test_validity_and_coverage():
    assert M.validity(np.array([1, 0, 1]), np.array([1, 1, 1])).tolist() == [True, False, True]
    assert M.coverage(np.array([0, 2, 1, 0])) == 0.5


def test_mad_falls_back_to_one_for_constant_columns():
    X = np.array([[1.0, 5], [2, 5], [4, 5], [10, 5]])
    # column 0: median 3, |dev| = 2,1,1,7 -> median 1.5; column 1 constant -> 1
    assert M.mad(X).tolist() == [1.5, 1.0]


def test_distances_by_hand():
    X = np.array([[50.0, 1000, 0]])
    C = np.array([[50.0, 4000, 2]])
    mad = np.array([10.0, 1500, 1])
    cont = np.array([True, True, False])
    assert M.l1_mad(X, C, mad, cont).tolist() == [2.0]  # 3000 / 1500
    span = np.array([40.0, 10000, 2])
    # sqrt((3000/10000)^2 + 1[2 != 0]) = sqrt(0.09 + 1)
    assert M.l2_minmax(X, C, span, ~cont)[0] == pytest.approx(np.sqrt(1.09))
    assert M.categorical_mismatch(X, C, ~cont).tolist() == [1]


def test_l2_treats_category_codes_as_names_not_numbers():
    """A chest-pain change 1 -> 4 weighs the same as 1 -> 2: one mismatch, not 9 times more."""
    X = np.array([[1.0, 0.0]] * 2)
    C = np.array([[2.0, 0.0], [4.0, 0.0]])
    span, cat = np.array([3.0, 1.0]), np.array([True, False])
    assert M.l2_minmax(X, C, span, cat).tolist() == [1.0, 1.0]
    # the same column as a number: (1/3)^2 against (3/3)^2, the old 9x
    assert M.l2_minmax(X, C, span, ~cat)[1] / M.l2_minmax(X, C, span, ~cat)[0] == pytest.approx(3)


def test_encode_one_hot_categoricals_so_any_category_change_adds_one():
    lo, span, cat = np.array([0.0, 0.0]), np.array([10.0, 1.0]), np.array([False, True])
    codes = [np.array([1.0, 2.0, 4.0])]
    E = M.encode(np.array([[5.0, 1.0], [5.0, 2.0], [5.0, 4.0], [5.0, 3.29]]), lo, span, cat, codes)
    assert E.shape == (4, 4)
    assert E[0].tolist() == pytest.approx([0.5, 2 ** -0.5, 0, 0])
    sq = lambda a, b: float(((E[a] - E[b]) ** 2).sum())  # noqa: E731
    assert sq(0, 1) == pytest.approx(1.0) and sq(0, 2) == pytest.approx(1.0)
    assert E[3, 1:].tolist() == [0, 0, 0]  # 3.29 is no code: all zeros


def test_invalid_values_flags_non_codes_and_fractions():
    schema = FeatureSchema((
        Feature("cp", kind="categorical", categories=(1.0, 2.0, 3.0, 4.0)),
        Feature("slope", kind="ordinal", categories=(0.0, 1.0, 2.0)),
        Feature("age", integer=True),
        Feature("chol"),
    ))
    C = np.array([[3.29, 1, 50, 200.5],   # cp 3.29 is no chest-pain code
                  [3.0, 1.5, 50, 200.5],  # slope 1.5 is between two ordinal codes
                  [3.0, 1, 50.5, 200.5],  # a fractional age
                  [3.0, 1, 50, 200.5]])   # fine: chol is a float feature
    bad = M.invalid_values(C, schema)
    assert bad.tolist() == [[True, False, False, False], [False, True, False, False],
                            [False, False, True, False], [False, False, False, False]]
    flags = M.constraint_violations(C, C, np.zeros(C.shape, bool), schema)
    assert flags["invalid_value"].tolist() == [True, True, True, False]


def test_sparsity():
    change = np.array([[True, False, False], [True, True, True]])
    n, share = M.sparsity(change)
    assert n.tolist() == [1, 3]
    assert share.tolist() == pytest.approx([2 / 3, 0.0])


def test_constraint_violations():
    X = np.array([[50.0, 5000, 1]] * 4)
    C = np.array([
        [51.0, 5000, 1],   # changes immutable age
        [50.0, 4000, 1],   # steps down, but steps are increase-only
        [50.0, 40000, 1],  # steps above the upper bound
        [50.0, 8000, 2],   # fine: steps up, site is mutable, within bounds
    ])
    change = M.changed(X, C, np.array([50.0, 30000, 2]))
    flags = M.constraint_violations(X, C, change, SCHEMA)
    assert flags["changes_immutable"].tolist() == [True, False, False, False]
    assert flags["against_direction"].tolist() == [False, True, False, False]
    assert flags["out_of_bounds"].tolist() == [False, False, True, False]


def test_ynn_counts_neighbours_the_model_assigns_to_the_target():
    from sklearn.neighbors import NearestNeighbors

    Xtr = np.array([[0.0], [0.1], [0.2], [1.0], [1.1]])
    ytr = np.array([0, 0, 1, 1, 1])  # the labels passed: the model's predictions (CARLA)
    nn = NearestNeighbors(n_neighbors=3).fit(Xtr)
    # neighbours of 0.05: 0.0, 0.1, 0.2 -> predicted 0, 0, 1; target 1 -> 1/3
    assert M.y_nn(np.array([[0.05]]), np.array([1]), nn, ytr)[0] == pytest.approx(1 / 3)


def test_diversity_by_hand():
    # one query with 3 CFs, one with a single CF (no pairs -> not reported)
    C = np.array([[0.0, 0, 0], [2.0, 0, 1], [0.0, 4, 1], [9.0, 9, 9]])
    q = np.array([7, 7, 7, 8])
    mad = np.array([1.0, 2.0, 1.0])
    cont = np.array([True, True, False])
    ids, div, cdiv = M.pairwise_diversity(C, q, mad, cont, np.ones(3))
    # pairs: (0,1): 2/1 + 0 + 1 = 3; (0,2): 0 + 4/2 + 1 = 3; (1,2): 2 + 2 + 0 = 4 -> mean 10/3
    # changed features: (0,1) 2, (0,2) 2, (1,2) 2 of 3 -> 2/3
    assert ids.tolist() == [7]
    assert div[0] == pytest.approx(10 / 3)
    assert cdiv[0] == pytest.approx(2 / 3)


def test_runtime():
    r = M.runtime(np.array([1.0, 2, 3, 4, 100, np.nan]))
    assert r["median"] == 3.0
    assert r["p95"] == pytest.approx(np.percentile([1, 2, 3, 4, 100], 95))


def test_scorer_end_to_end_on_a_tiny_task():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"age": rng.uniform(40, 90, 60), "steps": rng.uniform(0, 20000, 60),
                      "site": rng.integers(0, 3, 60).astype(float)})
    y = (X["steps"] > 10000).astype(int).to_numpy()
    s = M.Scorer(SCHEMA).fit(X, y)
    x = X.iloc[[0, 0, 0]].to_numpy()
    C = x.copy()
    C[1, 1] += 1000
    C[2, 2] = 1.5  # no site code
    res = s.score(x, C, np.array([1, 1, 1]), np.array([0, 1, 1]))
    assert res["validity"].tolist() == [False, True, True]
    assert res["invalid_value"].tolist() == [False, False, True]
    assert res["violates_constraints"].tolist() == [False, False, True]
    assert (res["respects_constraints"] == ~res["violates_constraints"]).all()
    res = res.iloc[:2]
    assert res["n_changed"].tolist() == [0, 1]
    assert res["n_changed_actionable"].tolist() == [0, 1]
    assert res["changed::steps"].tolist() == [False, True]
    assert res["l1_mad"][1] == pytest.approx(1000 / s.mad_[1])
    assert res["lof_inlier"].dtype == bool
    # every per-CF metric of the registry is a column, named as the registry names it
    from cfbench.metric_registry import per_cf_metrics

    assert [m.name for m in per_cf_metrics()] == list(res.columns[:len(per_cf_metrics())])


def test_scoring_never_raises_on_huge_values():
    """1e308 in a CF overflows float32 inside scikit-learn and squares to inf: scored, no error."""
    rng = np.random.default_rng(0)
    X_train = pd.DataFrame({"age": rng.uniform(40, 90, 60), "steps": rng.uniform(0, 30000, 60),
                            "site": rng.integers(0, 3, 60).astype(float)})
    y = (X_train["steps"] > 15000).to_numpy(int)
    scorer = M.Scorer(SCHEMA).fit(X_train, y)
    X = np.array([[50.0, 1000, 0]] * 3)
    C = np.array([[50.0, 1e308, 0], [50.0, -1e308, 2], [50.0, 4000, 1]])
    with np.errstate(all="raise"):  # no floating-point exception may escape
        out = scorer.score(X, C, np.ones(3, int), np.ones(3, int))
        scorer.diversity(np.r_[C, C], np.array([0, 0, 0, 1, 1, 1]))
    assert out["out_of_bounds"].tolist() == [True, True, False]
    assert np.isinf(out["l2_minmax"][0]) and np.isfinite(out["l2_minmax"][2])
    lo, hi = M.envelope(X_train[SCHEMA.names].to_numpy())
    assert M.outside_envelope(C, lo, hi).tolist() == [True, True, False]
    assert (np.abs(scorer.clip(C)) <= M.ENVELOPE_LIMIT).all()
