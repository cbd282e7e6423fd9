"""Augmentation under label scarcity: rows removed per scenario, CFs added, recovery arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cfbench.augment import _recovery, aggregate, augmentation_queries
from cfbench.errors import UserError
from cfbench.task import Task, resolve_spec


@pytest.fixture(scope="module")
def task() -> Task:
    return Task.load(resolve_spec("breast-cancer"))


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
        assert len(part) == min(int((removed_y == c).sum()), available)  # one CF per source row
        assert (scarce.y_train[scarce.X_train.index.get_indexer(part["query_id"])] != c).all()


def test_bad_scenario_and_fraction(task):
    with pytest.raises(UserError, match="unknown scarcity scenario 'D'; valid choices: A, B, C"):
        task.scarce("D", 0.5, 0)
    with pytest.raises(UserError, match="fraction must be in"):
        task.scarce("A", 1.5, 0)


def test_recovery_arithmetic():
    row = {"f1": 0.70, "macro_f1": 0.80, "accuracy": 0.8, "balanced_accuracy": 0.8}
    _recovery(row, {"f1": 0.90, "macro_f1": 0.90}, {"f1": 0.60, "macro_f1": 0.70})
    assert row["f1_recovered"] == pytest.approx(0.10)
    assert row["f1_recovered_rel"] == pytest.approx(0.10 / 0.30)
    assert row["macro_f1_recovered_rel"] == pytest.approx(0.5)
    agg = aggregate([{"scenario": "A", "method": "m", "cfs": "all", "n_added": 3, **row},
                     {"scenario": "A", "method": "m", "cfs": "all", "n_added": 5, **row}])
    assert agg[0]["n_added"] == 4 and agg[0]["n_added_std"] == pytest.approx(np.std([3, 5], ddof=1))


@pytest.mark.slow
def test_augment_cli_end_to_end(tmp_path):
    out = tmp_path / "aug"
    r = subprocess.run([sys.executable, "-m", "cfbench.cli", "augment", "--task", "breast-cancer",
                        "--methods", "nearest-neighbour", "--seeds", "0", "--scenarios", "A,C",
                        "--max-per-class", "10", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "augment.json").read_text())
    methods = {(a["scenario"], a["method"], a["cfs"]) for a in doc["aggregate"]}
    for s in ("A", "C"):
        assert {(s, "no-augmentation", "reference"), (s, "random-oversampling", "reference"),
                (s, "smote", "reference"), (s, "nearest-neighbour", "valid"),
                (s, "nearest-neighbour", "all")} <= methods
    nn = [a for a in doc["aggregate"] if a["method"] == "nearest-neighbour" and a["cfs"] == "all"]
    assert {a["scenario"]: a["n_added"] for a in nn} == {"A": 10, "C": 20}
    bad = subprocess.run([sys.executable, "-m", "cfbench.cli", "augment", "--task", "breast-cancer",
                          "--scenarios", "A,Z", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "unknown scenario 'Z'" in bad.stderr
