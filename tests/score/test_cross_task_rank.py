"""Ranking methods across tasks: each task a block, methods missing somewhere left out by name."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from cfbench.score.ranking import rank_across_tasks


def test_ranks_per_task_then_mean_and_friedman() -> None:
    overall = {
        "a": {"m1": 2.0, "m2": 3.0, "m3": 5.0, "only-a": 1.0},
        "b": {"m1": 4.0, "m2": 3.5, "m3": 9.0},
        "c": {"m1": 1.5, "m2": 6.0, "m3": 6.0},
    }
    out = rank_across_tasks(overall)
    assert out["methods"] == ["m1", "m2", "m3"] and out["tasks"] == ["a", "b", "c"]
    assert out["per_task"]["b"] == {"m1": 2.0, "m2": 1.0, "m3": 3.0}
    assert out["per_task"]["c"] == {"m1": 1.0, "m2": 2.5, "m3": 2.5}  # ties averaged
    assert out["mean_rank"] == pytest.approx({"m1": 4 / 3, "m2": 5.5 / 3, "m3": 8.5 / 3})
    assert out["left_out"] == {"only-a": ["b", "c"]}
    want = stats.friedmanchisquare([1, 2, 1], [2, 1, 2.5], [3, 3, 2.5])
    assert out["friedman"]["p_value"] == pytest.approx(want.pvalue)
    assert out["nemenyi_cd"] > 0


def test_too_few_methods_or_tasks_give_no_test() -> None:
    out = rank_across_tasks({"a": {"m1": 1.0, "m2": 2.0}, "b": {"m1": 2.0, "m2": 1.0}})
    assert math.isnan(out["friedman"]["p_value"])
    assert rank_across_tasks({})["methods"] == []
