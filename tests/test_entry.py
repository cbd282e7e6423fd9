"""The library entry point ``cfbench.run``: a notebook-style call runs, scores and writes a run."""

from __future__ import annotations

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
