"""The library entry point ``cfbench.run``: a notebook-style call runs, scores and writes a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cfbench
from cfbench.core.errors import UserError


def test_run_from_a_notebook_returns_summary_and_records(tmp_path: Path):
    result = cfbench.run(cfbench.RunConfig(task="heart", methods="nearest-neighbour", n_queries=2,
                                           out=tmp_path / "r"))
    assert isinstance(result, cfbench.RunResult)
    assert result.out == tmp_path / "r" and result.task.name == "heart"
    assert list(result.summary["methods"]) == ["nearest-neighbour"]
    assert len(result.records) == 4  # 2 queries per class, one seed
    assert result.skipped == {}
    for name in ("summary.json", "scores.parquet", "records.parquet", "run.json"):
        assert (result.out / name).exists(), name


def test_run_refuses_a_mistake_before_any_work(tmp_path: Path):
    with pytest.raises(UserError, match="unknown variant"):
        cfbench.run(cfbench.RunConfig(task="heart", methods="nearest-neighbour:fast",
                                      out=tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_import_cfbench_stays_light():
    code = "import sys, cfbench; cfbench.__version__; print('cfbench.execution.orchestrator' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_augment_from_a_notebook_writes_and_returns_the_study(tmp_path: Path):
    """``cfbench.augment``: the study of a RunConfig + AugmentConfig, augment.json its document."""
    doc = cfbench.augment(
        cfbench.RunConfig(task="breast-cancer", methods="nearest-neighbour", jobs=1,
                          out=tmp_path / "aug"),
        cfbench.AugmentConfig(scenarios=("A",), seeds=(0, 1), max_per_class=3, references=()))
    assert doc == json.loads((tmp_path / "aug" / "augment.json").read_text())
    assert doc["task"] == "breast-cancer" and doc["methods"] == "nearest-neighbour"
    assert doc["scenarios"] == ["A"] and doc["seeds"] == [0, 1] and doc["curve"] == [0.5]
    assert {(r["seed"], r["method"]) for r in doc["rows"]} == {(0, "nearest-neighbour"),
                                                                (1, "nearest-neighbour")}
    assert doc["aggregate"]["methods"]
    with pytest.raises(UserError, match="at least 2 seeds"):  # checked before any work
        cfbench.augment(cfbench.RunConfig(task="breast-cancer", out=tmp_path / "x"),
                        cfbench.AugmentConfig(seeds=(0,)))
    assert not (tmp_path / "x").exists()


def test_leaderboard_from_a_notebook_reads_a_run_folder(tmp_path: Path):
    """``cfbench.leaderboard``: a run folder's summary, or its board, as a dict."""
    out = tmp_path / "r"
    cfbench.run(cfbench.RunConfig(task="heart", methods="nearest-neighbour", n_queries=2, out=out))
    summary = cfbench.leaderboard(out)
    assert summary == json.loads((out / "summary.json").read_text())
    assert list(summary["methods"]) == ["nearest-neighbour"]
    board = cfbench.leaderboard(str(out), board=True)
    assert board["task"] == "heart" and "nearest-neighbour" in board["methods"]
    with pytest.raises(UserError, match="board=True"):
        cfbench.leaderboard(out, augment_dir=tmp_path)
    with pytest.raises(UserError, match="no summary.json"):
        cfbench.leaderboard(tmp_path / "nowhere")
