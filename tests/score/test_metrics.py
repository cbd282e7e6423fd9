"""Every metric against a case small enough to compute by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cfbench.core.schema import Feature, FeatureSchema
from cfbench.score import metrics as M
from cfbench.score import scorer

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


def test_mad_zero_fallback_is_one_step_for_integers_else_the_mean_deviation():
    # three columns, each with over half its rows at the median, so every MAD is 0:
    # column 0 integer (heart `ca`-like: 0,0,0,1,3): one step, 1;
    # column 1 real (0,0,0,0.5,2): mean |x - 0| = 2.5 / 5 = 0.5;  column 2 constant: 1
    X = np.array([[0.0, 0, 7], [0, 0, 7], [0, 0, 7], [1, 0.5, 7], [3, 2, 7]])
    assert M.mad(X, np.array([True, False, False])).tolist() == [1.0, 0.5, 1.0]


def test_decide_breaks_no_tie_towards_either_class():
    """p = 0.5 exactly is valid towards neither class (the model's own predict says 0)."""
    # row 0: a forest's 0.5 / 0.5 in floats (the first sums to 0.5000000000000001)
    P = np.array([[0.5000000000000001, 0.5], [0.49, 0.51], [0.8, 0.2]])
    assert M.decide(P, np.array([0, 1])).tolist() == [-1, 1, 0]
    assert M.validity(M.decide(P, np.array([0, 1]))[:1], np.array([0])).tolist() == [False]


def test_distances_by_hand():
    X = np.array([[50.0, 1000, 0]])
    C = np.array([[50.0, 4000, 2]])
    mad = np.array([10.0, 1500, 1])
    cont = np.array([True, True, False])
    assert M.l1_mad(X, C, mad, cont).tolist() == [2.0]  # 3000 / 1500, the category ignored
    # L1/MAD+cat: 3000 / 1500 + 1[2 != 0] = 2 + 1
    assert M.l1_mad_cat(X, C, mad, ~cont).tolist() == [3.0]
    span = np.array([40.0, 10000, 2])
    # HEOM: sqrt((3000/10000)^2 + 1[2 != 0]) = sqrt(0.09 + 1)
    assert M.heom(X, C, span, ~cont)[0] == pytest.approx(np.sqrt(1.09))
    assert M.categorical_mismatch(X, C, ~cont).tolist() == [1]


def test_heom_treats_category_codes_as_names_not_numbers():
    """A chest-pain change 1 -> 4 weighs the same as 1 -> 2: one mismatch, not 9 times more."""
    X = np.array([[1.0, 0.0]] * 2)
    C = np.array([[2.0, 0.0], [4.0, 0.0]])
    span, cat = np.array([3.0, 1.0]), np.array([True, False])
    assert M.heom(X, C, span, cat).tolist() == [1.0, 1.0]
    # the same column as a number: (1/3)^2 against (3/3)^2, the old 9x
    assert M.heom(X, C, span, ~cat)[1] / M.heom(X, C, span, ~cat)[0] == pytest.approx(3)


def test_carla_distances_in_carlas_encoding_by_hand():
    """CARLA: min-max over every row, a two-code category one column, others one-hot."""
    schema = FeatureSchema((Feature("bp"), Feature("sex", kind="categorical", categories=(0.0, 1.0)),
                            Feature("cp", kind="categorical", categories=(1.0, 2.0, 3.0))))
    train = pd.DataFrame({"bp": [100.0, 140, 120], "sex": [0.0, 1, 0], "cp": [1.0, 2, 3]})
    pool = pd.concat([train, pd.DataFrame({"bp": [180.0], "sex": [1.0], "cp": [1.0]})])
    s = scorer.Scorer(schema).fit(train, np.zeros(3, int), X_pool=pool, pool_labels=np.zeros(4, int))
    # bp's range over the pool: 100..180 = 80 (training alone: 40)
    assert s.carla_encode(np.array([[140.0, 1, 3]])).tolist() == [[0.5, 1, 0, 0, 1]]
    x = np.array([[120.0, 0, 1]])
    c = np.array([[140.0, 1, 3]])
    d = M.carla_distances(s.carla_encode(c) - s.carla_encode(x))
    # delta: bp 20/80 = 0.25; sex 1 column: 1; cp one-hot [1,0,0] -> [0,0,1]: -1, +1
    assert d["l0"].tolist() == [4.0]  # 1 + 1 + 2: a three-code category counts twice
    assert d["l1"].tolist() == [pytest.approx(3.25)]
    assert d["l2sq"].tolist() == [pytest.approx(0.0625 + 3)]  # squared, as CARLA reports "L2"
    assert d["linf"].tolist() == [1.0]


def test_redundancy_counts_changes_that_can_each_be_undone_by_hand():
    """CARLA's redundancy: revert one changed feature at a time, keep the target?"""
    def predict(R: np.ndarray) -> np.ndarray:  # class 1 iff a + b >= 2
        return (R[:, 0] + R[:, 1] >= 2).astype(int)

    X = np.array([[0.0, 0, 0], [0.0, 0, 0]])
    C = np.array([[2.0, 2, 5], [1.0, 1, 0]])
    change = C != X
    # CF 0: revert a -> 0+2 >= 2 still 1; revert b -> 2 >= 2 still 1; revert c -> still 1: 3
    # CF 1: revert a -> 1 < 2 flips back; revert b -> flips back: 0
    assert M.redundancy(X, C, change, np.array([1, 1]), predict).tolist() == [3.0, 0.0]


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
    assert n.tolist() == [1, 3]  # #changed: 1 and 3 of 3 features
    # DiCE's sparsity, the share unchanged: 1 - 1/3 = 2/3 and 1 - 3/3 = 0
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


def test_ynn_searches_every_row_of_the_data_set_as_carla_does():
    """CARLA's pool is data.df: training and test rows; cfbench's used to be training only."""
    schema = FeatureSchema((Feature("a"),))
    train = pd.DataFrame({"a": [0.0, 0.1, 5.0, 5.1, 5.2]})
    pool = pd.concat([train, pd.DataFrame({"a": [0.05, 0.06, 0.07]})], ignore_index=True)
    labels = np.array([1, 1, 0, 0, 0, 1, 1, 1])
    s = scorer.Scorer(schema, n_neighbors=3).fit(train, labels[:5], X_pool=pool, pool_labels=labels)
    out = s.score(np.array([[0.0]]), np.array([[0.04]]), np.array([1]), np.array([1]))
    # 3 nearest of 0.04 among all 8 rows: 0.05, 0.06, 0.0 (test, test, train): all labelled 1
    assert out["ynn"].tolist() == [1.0]


def test_calibrated_lof_passes_real_rows_and_rejects_far_ones():
    rng = np.random.default_rng(1)
    schema = FeatureSchema((Feature("a"), Feature("b")))
    train = pd.DataFrame(rng.normal(size=(300, 2)), columns=["a", "b"])
    s = scorer.Scorer(schema).fit(train, np.zeros(300, int))
    # the threshold is the training rows' own 95th-percentile LOF: 95 % of them are within
    own = -s.lof_.negative_outlier_factor_
    assert np.mean(own <= s.lof_threshold_) == pytest.approx(0.95, abs=0.01)
    held_out = rng.normal(size=(200, 2))
    far = np.array([[8.0, 8.0], [-7.0, 6.0]])
    assert M.lof_within(s.lof(s.encode(held_out)), s.lof_threshold_).mean() > 0.85
    assert not M.lof_within(s.lof(s.encode(far)), s.lof_threshold_).any()


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
    s = scorer.Scorer(SCHEMA).fit(X, y)
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
    assert res["lof_inlier"].dtype == bool and res["lof_p95"].dtype == bool
    assert np.isnan(res["redundancy"]).all()  # no model given: not computed
    # every per-CF metric of the registry is a column, named as the registry names it
    from cfbench.score.registry import per_cf_metrics

    assert [m.name for m in per_cf_metrics()] == list(res.columns[:len(per_cf_metrics())])


def test_scoring_never_raises_on_huge_values():
    """1e308 in a CF overflows float32 inside scikit-learn and squares to inf: scored, no error."""
    rng = np.random.default_rng(0)
    X_train = pd.DataFrame({"age": rng.uniform(40, 90, 60), "steps": rng.uniform(0, 30000, 60),
                            "site": rng.integers(0, 3, 60).astype(float)})
    y = (X_train["steps"] > 15000).to_numpy(int)
    fitted = scorer.Scorer(SCHEMA).fit(X_train, y)
    X = np.array([[50.0, 1000, 0]] * 3)
    C = np.array([[50.0, 1e308, 0], [50.0, -1e308, 2], [50.0, 4000, 1]])
    with np.errstate(all="raise"):  # no floating-point exception may escape
        out = fitted.score(X, C, np.ones(3, int), np.ones(3, int))
        fitted.diversity(np.r_[C, C], np.array([0, 0, 0, 1, 1, 1]))
    assert out["out_of_bounds"].tolist() == [True, True, False]
    assert np.isinf(out["heom"][0]) and np.isfinite(out["heom"][2])
    lo, hi = M.envelope(X_train[SCHEMA.names].to_numpy())
    assert M.outside_envelope(C, lo, hi).tolist() == [True, True, False]
    assert (np.abs(fitted.clip(C)) <= M.ENVELOPE_LIMIT).all()
