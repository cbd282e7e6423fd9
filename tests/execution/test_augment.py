"""Augmentation under label scarcity: per-repetition splits, equal budgets, and the statistics
(CIs, paired tests, ratio-of-means recovery) pinned on a hand-made table."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cfbench.core.errors import UserError
from cfbench.execution.augment import aggregate, augmentation_queries, fill_budget
from cfbench.report.augment import to_markdown
from cfbench.score.augment_stats import corrected_ci, corrected_paired_test, ratio_of_means
from cfbench.tasks.spec import Task, resolve_spec


@pytest.fixture(scope="module")
def task() -> Task:
    return Task.load(resolve_spec("breast-cancer"))


@pytest.mark.slow
@pytest.mark.parametrize("scenario, classes", [("A", {1}), ("B", {0}), ("C", {0, 1})])
def test_scarcity_removes_the_right_rows(task, scenario, classes):
    scarce, removed, removed_y = task.scarce(scenario, 0.5, seed=1)
    assert set(removed_y) == classes
    for c in (0, 1):
        before = int((task.y_train == c).sum())
        after = int((scarce.y_train == c).sum())
        assert after == (before - round(0.5 * before) if c in classes else before)
    assert len(scarce.X_train) + len(removed) == len(task.X_train)
    assert scarce.X_test is task.X_test
    again = task.scarce(scenario, 0.5, seed=1)[1]
    assert list(again.index) == list(removed.index)  # deterministic by seed
    q = augmentation_queries(scarce, removed_y, seed=1, max_per_class=None)
    for c in classes:
        part = q[q["target"] == c]
        available = int((scarce.y_train != c).sum())
        assert len(part) == min(int((removed_y == c).sum()), available)  # distinct sources
        assert part["query_id"].is_unique
        assert (scarce.y_train[scarce.X_train.index.get_indexer(part["query_id"])] != c).all()


def test_bad_scenario_and_fraction(task):
    with pytest.raises(UserError, match="unknown scarcity scenario 'D'; valid choices: A, B, C"):
        task.scarce("D", 0.5, 0)
    with pytest.raises(UserError, match="fraction must be in"):
        task.scarce("A", 1.5, 0)


def test_each_repetition_has_its_own_stratified_split(task):
    a, b, a2 = task.resplit(0), task.resplit(1), task.resplit(0)
    n = len(task.y_train) + len(task.y_test)
    for t in (a, b):
        assert len(t.y_test) == len(task.y_test) and len(t.y_train) + len(t.y_test) == n
        assert not set(t.X_train.index) & set(t.X_test.index)
        assert abs(t.y_test.mean() - task.y_test.mean()) < 0.02  # stratified
    assert list(a.X_test.index) == list(a2.X_test.index)  # deterministic by repetition
    assert list(a.X_test.index) != list(b.X_test.index)
    assert a.split == 0 and a.scarce("A", 0.5, 0)[0].split == 0
    with pytest.raises(UserError, match="split repetition must be an integer >= 0, got -1"):
        task.resplit(-1)


def test_fill_budget_adds_exactly_the_budget():
    C = pd.DataFrame({"x": np.arange(5.0)})
    tgt = np.array([1, 1, 1, 0, 0])
    rng = np.random.default_rng(0)
    X, y, distinct = fill_budget(C, tgt, {1: 7, 0: 2}, rng)
    assert (y == 1).sum() == 7 and (y == 0).sum() == 2 and distinct == 5
    assert set(X["x"][y == 1]) == {0.0, 1.0, 2.0}  # all three CFs, then draws among them
    X, y, distinct = fill_budget(C, tgt, {1: 2}, rng)  # more CFs than the budget: the first ones
    assert list(X["x"]) == [0.0, 1.0] and distinct == 2
    X, y, distinct = fill_budget(C.iloc[:0], tgt[:0], {1: 4}, rng)  # no CF: nothing to add
    assert len(X) == 0 and distinct == 0


# --- the statistics, on a hand-made table --------------------------------------------------------

RATIO = 0.1  # n_test / n_train of the hand-made rows


def _rows(scenario: str, full: list[float], scarce: list[float], method_f1: list[float],
          smote_f1: list[float]) -> list[dict]:
    rows = []
    for seed, (fu, sc, mf, sm) in enumerate(zip(full, scarce, method_f1, smote_f1, strict=True)):
        base = {"fraction": 0.5, "scenario": scenario, "seed": seed, "n_train": 100, "n_test": 10,
                "f1_full": fu, "f1_scarce": sc, "macro_f1_full": fu, "macro_f1_scarce": sc,
                "accuracy": 0.5, "balanced_accuracy": 0.5}
        for method, cfs, f1, added in (("no-augmentation", "reference", sc, 0),
                                       ("smote", "reference", sm, 10), ("m", "valid", mf, 10)):
            rows.append({**base, "method": method, "cfs": cfs, "f1": f1, "macro_f1": f1,
                         "f1_gain": f1 - sc, "macro_f1_gain": f1 - sc, "n_added": added,
                         "n_distinct": added})
    return rows


def _hand_made() -> list[dict]:
    # A: a clear deficit (one repetition with a zero gap); C: m's F1 is NaN in repetition 2;
    # B: the gaps are zero or negative -- nothing to recover.
    a = _rows("A", [0.80, 0.82, 0.78, 0.81, 0.79], [0.60, 0.65, 0.78, 0.62, 0.61],
              [0.70, 0.74, 0.79, 0.71, 0.69], [0.66, 0.70, 0.77, 0.65, 0.64])
    b = _rows("B", [0.80, 0.80, 0.80, 0.80, 0.80], [0.80, 0.83, 0.82, 0.80, 0.85],
              [0.81, 0.82, 0.83, 0.80, 0.84], [0.80, 0.83, 0.82, 0.81, 0.85])
    c = _rows("C", [0.80, 0.81, 0.82, 0.83, 0.84], [0.70, 0.70, 0.72, 0.71, 0.73],
              [0.75, 0.76, math.nan, 0.74, 0.78], [0.72, 0.71, 0.73, 0.72, 0.74])
    return a + b + c


def _ci_by_hand(v: list[float]) -> tuple[float, float, float]:
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    n = len(v)
    half = stats.t.ppf(0.975, n - 1) * math.sqrt((1 / n + RATIO) * v.var(ddof=1))
    return v.mean(), v.mean() - half, v.mean() + half


def test_aggregation_on_a_hand_made_table():
    agg = aggregate(_hand_made())
    d = {x["scenario"]: x for x in agg["deficit"]}
    m = {(x["scenario"], x["method"]): x for x in agg["methods"]}

    # A: deficit present; CIs are the corrected resampled t interval; ratio of means
    gap_a = np.array([0.20, 0.17, 0.00, 0.19, 0.18])
    mean, lo, hi = _ci_by_hand(list(gap_a))
    assert d["A"]["f1_gap"]["mean"] == pytest.approx(mean)
    assert (d["A"]["f1_gap"]["lo"], d["A"]["f1_gap"]["hi"]) == pytest.approx((lo, hi))
    assert d["A"]["f1_present"] is True
    gain_a = np.array([0.10, 0.09, 0.01, 0.09, 0.08])
    rec = m[("A", "m")]["f1_recovery"]
    assert rec["value"] == pytest.approx(gain_a.mean() / gap_a.mean())  # not a mean of ratios
    assert rec["lo"] <= rec["value"] <= rec["hi"] and rec["n"] == 5
    assert m[("A", "m")]["n_seeds"] == 5
    mean, lo, hi = _ci_by_hand([0.70, 0.74, 0.79, 0.71, 0.69])
    assert m[("A", "m")]["f1"]["mean"] == pytest.approx(mean)
    assert m[("A", "m")]["f1"]["hi"] == pytest.approx(hi)
    # paired corrected t-test against SMOTE, by hand
    diff = np.array([0.04, 0.04, 0.02, 0.06, 0.05])
    t = diff.mean() / math.sqrt((1 / 5 + RATIO) * diff.var(ddof=1))
    assert m[("A", "m")]["vs_smote"]["p"] == pytest.approx(2 * stats.t.sf(abs(t), 4))
    assert m[("A", "m")]["vs_smote"]["mean"] == pytest.approx(diff.mean())
    assert m[("A", "smote")]["vs_smote"] is None and m[("A", "no-augmentation")]["vs_no-augmentation"] is None

    # B: zero and negative gaps -> no deficit, no recovery number
    assert d["B"]["f1_gap"]["mean"] < 0 and d["B"]["f1_present"] is False
    assert m[("B", "m")]["f1_recovery"] is None

    # C: the NaN repetition is left out and n says so; the paired test uses 4 pairs
    assert m[("C", "m")]["n_seeds"] == 4 and m[("C", "smote")]["n_seeds"] == 5
    assert m[("C", "m")]["f1"]["mean"] == pytest.approx(np.mean([0.75, 0.76, 0.74, 0.78]))
    assert m[("C", "m")]["vs_smote"]["n"] == 4
    assert m[("C", "m")]["f1_recovery"]["n"] == 4

    text = to_markdown(agg, 0.5)
    line_b = next(ln for ln in text.splitlines() if ln.startswith("| B | m |"))
    assert "no deficit to recover" in line_b
    line_a = next(ln for ln in text.splitlines() if ln.startswith("| A | m |"))
    assert f"{rec['value']:.2f} [" in line_a and "| 5 |" in line_a
    assert "| C | m | valid | 10 | 10 |" in text and text.count("| 4 |") == 1


def test_intervals_stay_inside_a_scores_range():
    """Ten repetitions of a scarce model that sometimes predicts no positive at all: the
    t-interval of its F1 would reach below 0; a score's CI is clipped to [0, 1], a gain's to
    [-1, 1], and the mean is untouched."""
    f1 = [0.0, 0.0, 0.05, 0.6, 0.0, 0.7, 0.0, 0.1, 0.0, 0.65]
    mean, lo, _ = _ci_by_hand(f1)
    assert lo < 0
    ci = corrected_ci(f1, RATIO, bounds=(0.0, 1.0))
    assert ci["lo"] == 0.0 and ci["mean"] == pytest.approx(mean) and ci["hi"] < 1
    rows = _rows("A", [0.8] * 10, f1, [0.9 if f < 0.5 else 0.8 for f in f1], [0.5] * 10)
    m = {(x["scenario"], x["method"]): x for x in aggregate(rows)["methods"]}
    assert m[("A", "no-augmentation")]["f1"]["lo"] == 0.0
    assert m[("A", "m")]["f1_gain"]["hi"] <= 1.0 and m[("A", "m")]["vs_no-augmentation"]["hi"] <= 1.0
    assert corrected_ci(f1, RATIO)["lo"] == pytest.approx(lo)  # unclipped without bounds


def test_small_sample_statistics_edge_cases():
    assert math.isnan(corrected_ci([0.5], RATIO)["lo"]) and corrected_ci([0.5], RATIO)["n"] == 1
    assert corrected_ci([math.nan, math.nan], RATIO)["n"] == 0
    same = corrected_paired_test([0.75, 0.5, 0.25], [0.5, 0.25, 0.0], RATIO)
    assert same["p"] == 0.0 and same["mean"] == 0.25  # identical differences: no variance
    assert corrected_paired_test([0.5, 0.6], [0.5, 0.6], RATIO)["p"] == 1.0
    assert math.isnan(ratio_of_means([0.1, 0.2], [-0.1, 0.05])["value"])  # mean gap <= 0
    r = ratio_of_means([0.1, 0.1, 0.1], [0.2, 0.0, 0.1])  # a zero gap is no problem for a ratio of means
    assert r["value"] == pytest.approx(1.0)


@pytest.mark.slow
def test_augment_cli_end_to_end(tmp_path):
    out = tmp_path / "aug"
    r = subprocess.run([sys.executable, "-m", "cfbench.cli", "augment", "--task", "breast-cancer",
                        "--methods", "nearest-neighbour", "--seeds", "0,1", "--scenarios", "A,C",
                        "--max-per-class", "10", "--curve", "0.8", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "augment.json").read_text())
    assert doc["protocol"] == 2 and doc["curve"] == [0.5, 0.8]
    rows = pd.DataFrame(doc["rows"])
    assert set(rows["fraction"]) == {0.5, 0.8} and set(rows["seed"]) == {0, 1}
    for _, g in rows.groupby(["fraction", "scenario", "seed"]):
        smote = int(g.loc[g["method"] == "smote", "n_added"].iloc[0])
        cf = g[g["cfs"] != "reference"]
        assert set(cf["method"]) == {"nearest-neighbour"} and set(cf["cfs"]) == {"all", "valid"}
        assert (cf["n_added"] == smote).all() and smote == int(g["n_removed"].iloc[0])
        assert (cf["n_distinct"] <= 2 * 10).all()  # the cap limits distinct CFs, not rows added
    # the two repetitions were scored on different test splits: the full model differs
    assert rows.groupby("seed")["f1_full"].first().nunique() == 2
    bad = subprocess.run([sys.executable, "-m", "cfbench.cli", "augment", "--task", "breast-cancer",
                          "--scenarios", "A,Z", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "unknown scenario 'Z'" in bad.stderr
    for args, msg in ((["--seeds", "0"], "at least 2 seeds"),
                      (["--curve", "0.5,1.2"], "--curve: expected fractions in (0, 1)")):
        bad = subprocess.run([sys.executable, "-m", "cfbench.cli", "augment", "--task",
                              "breast-cancer", *args, "--out", str(tmp_path / "y")],
                             capture_output=True, text=True, timeout=600)
        assert bad.returncode == 2 and msg in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "y").exists()


@pytest.mark.parametrize("text", ['{"aggregate": [1, 2]}', 'NaN{',
                                  '{"fraction": 0.5, "aggregate": {"deficit": [{"fraction": 0.5}], "methods": []}}',
                                  '{"aggregate": {"deficit": [], "methods": [{"f1": "x"}]}}'])
def test_a_garbled_augment_json_is_one_user_error(tmp_path, text):
    from cfbench.report.augment import load

    (tmp_path / "augment.json").write_text(text)
    with pytest.raises(UserError, match="not an augmentation result of `cfbench augment`"):
        load(tmp_path)


@pytest.mark.slow
def test_disjoint_repetitions_in_separate_processes_merge_into_the_same_study(tmp_path):
    """The boards' studies run their repetitions in two processes (one per core) into one
    --out, then one --resume over all repetitions writes augment.json: it must equal the study
    made by a single process.  Stages lock their own folders, so the two never collide."""
    def augment(out, seeds, *extra):
        r = subprocess.run([sys.executable, "-m", "cfbench.cli", "augment", "--task", "breast-cancer",
                            "--methods", "nearest-neighbour", "--seeds", seeds, "--scenarios", "A",
                            "--max-per-class", "5", "--jobs", "1", "--out", str(out), "--quiet", *extra],
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr
        return json.loads((out / "augment.json").read_text())

    whole = augment(tmp_path / "one", "0-3")
    augment(tmp_path / "two", "0,1")
    part = augment(tmp_path / "two", "2,3", "--resume")
    assert {r["seed"] for r in part["rows"]} == {2, 3}  # each process writes its own repetitions
    merged = augment(tmp_path / "two", "0-3", "--resume")

    def key(r):
        return (r["fraction"], r["scenario"], r["seed"], r["method"], r["cfs"])

    assert sorted(merged["rows"], key=key) == sorted(whole["rows"], key=key)
    assert merged["aggregate"] == whole["aggregate"]


@pytest.mark.slow
def test_repetitions_side_by_side_give_the_rows_of_one_lane(tmp_path):
    """With --jobs 2 the repetitions run in two lanes (each stage's cells one at a time), so
    no core idles while a stage's longest cell finishes; the study is the one of --jobs 1."""
    def augment(out, jobs):
        r = subprocess.run([sys.executable, "-m", "cfbench.cli", "augment", "--task", "breast-cancer",
                            "--methods", "nearest-neighbour,nice:plausibility", "--seeds", "0-2",
                            "--scenarios", "A,B", "--max-per-class", "5", "--jobs", jobs,
                            "--out", str(out)], capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr
        return json.loads((out / "augment.json").read_text()), r.stderr

    one, _ = augment(tmp_path / "one", "1")
    two, log = augment(tmp_path / "two", "2")
    assert two["rows"] == one["rows"]  # same rows, same order
    assert two["aggregate"] == one["aggregate"]
    # every stage of every repetition was generated, each cell with one thread
    for seed in range(3):
        for sc in "AB":
            info = json.loads((tmp_path / "two" / "augment" / f"f0.5-{sc}-split{seed}" / "run.json").read_text())
            assert info["config"]["jobs"] == 1
    assert log.count("augmentation: split") == 6


def test_lanes_only_for_local_workers_with_cf_methods():
    from cfbench.execution.augment import AugmentConfig, lanes
    from cfbench.execution.config import RunConfig
    from cfbench.records.labels import Choice

    pairs = [Choice("nearest-neighbour", "default", ())]
    aug = AugmentConfig(seeds=(0, 1, 2))
    assert lanes(RunConfig(task="heart", jobs=2), aug, pairs) == 2
    assert lanes(RunConfig(task="heart", jobs=4), AugmentConfig(seeds=(0, 1)), pairs) == 2
    assert lanes(RunConfig(task="heart", jobs=1), aug, pairs) == 1
    assert lanes(RunConfig(task="heart", jobs=2), aug, []) == 1  # references only: nothing to spread
    assert lanes(RunConfig(task="heart", jobs=2, executor="ray"), aug, pairs) == 1
