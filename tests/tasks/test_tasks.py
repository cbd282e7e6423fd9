"""The shipped task specs: features, immutables, bounds, labels; and the tasks actually load."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cfbench.tasks.ai_readi.synth import SynthParams, write_release
from cfbench.tasks.spec import Task, resolve_spec

AI_READI_ACTIONABLE = {"steps_per_day", "active_kcal_per_day", "sleep_hours", "deep_sleep_min"}


def test_ai_readi_specs() -> None:
    stress = resolve_spec("ai-readi")
    glyc = resolve_spec("ai-readi-glycemic")
    assert stress.loader == glyc.loader == "ai-readi"
    assert stress.loader_options == {"label": "stress"} and glyc.loader_options == {"label": "diabetes"}
    for spec in (stress, glyc):
        s = spec.schema
        assert set(s.immutable) == {"age", "site"}
        assert set(s.actionable) == AI_READI_ACTIONABLE
        assert s["site"].kind == "categorical" and s["site"].categories == (0.0, 1.0, 2.0)
        assert len(s["site"].labels) == 3
        for f in s:
            if f.kind == "numeric":
                assert f.lower is not None and f.upper is not None and f.unit, f.name
        assert "study_group" not in s.names
    assert "stress_mean" not in stress.schema.names  # the label's source is not a feature
    assert "hba1c" not in glyc.schema.names  # HbA1c defines diabetes: leaks the label
    assert "stress_mean" in glyc.schema.names and "hba1c" in stress.schema.names


def test_heart_spec_and_scores() -> None:
    spec = resolve_spec("heart")
    s = spec.schema
    assert len(s) == 13 and set(s.immutable) == {"age", "sex"}
    assert set(s.actionable) == {"trestbps", "chol", "fbs"}
    assert set(s.categorical) == {"sex", "cp", "fbs", "restecg", "exang", "slope", "thal"}
    assert s["ca"].kind == "ordinal" and s["thal"].categories == (3.0, 6.0, 7.0)
    assert all(len(f.labels) == len(f.categories) for f in s if f.kind != "numeric")
    task = Task.load(spec)
    X = task.dataset.X
    for f in s:
        if f.kind == "numeric":
            assert X[f.name].between(f.lower, f.upper).all(), f.name
    for f in s:
        if f.categories:
            assert set(X[f.name]) <= set(f.categories), f.name
    assert task.scores["n_train"] + task.scores["n_test"] == 303
    assert 0.7 < task.scores["accuracy"] < 0.95  # clearly better than the 54 % majority class


@pytest.fixture(scope="module")
def small_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ai") / "rel"
    return write_release(out, SynthParams(participants=150, days=2, release="v3", seed=7, garmin_interval_min=10))


@pytest.mark.parametrize("name", ["ai-readi", "ai-readi-glycemic"])
def test_ai_readi_task_on_a_release_folder(small_release: Path, name: str) -> None:
    spec = resolve_spec(name)
    task = Task.load(spec, dataset_options={"data_dir": str(small_release)})
    X = task.dataset.X[spec.schema.names]
    assert not X.isna().any().any()
    for f in spec.schema:
        if f.kind == "numeric":
            assert X[f.name].between(f.lower, f.upper).all(), f.name
        else:
            assert set(X[f.name]) <= set(f.categories), f.name
    prov = task.provenance()
    assert str(small_release) in prov["data_source"] and "release v3" in prov["data_source"]
    assert 0.5 < task.scores["accuracy"]
    counts = np.bincount(task.dataset.y)
    assert counts.min() >= 0.2 * counts.sum()


@pytest.mark.slow
def test_default_ai_readi_tasks_from_raw_files() -> None:
    """The default synthetic release, generated and reduced from raw files within 2 minutes."""
    t0 = time.perf_counter()
    task = Task.load(resolve_spec("ai-readi"))
    built = time.perf_counter() - t0
    assert "synthetic AI-READI release" in task.dataset.source
    n = task.scores["n_train"] + task.scores["n_test"]
    assert 400 <= n <= 500
    assert 0.65 < task.scores["accuracy"] < 0.95 and task.scores["f1"] > 0.6
    q = task.queries()
    assert q["source"].value_counts().min() >= 40
    glyc = Task.load(resolve_spec("ai-readi-glycemic"))
    assert 0.65 < glyc.scores["accuracy"] < 0.95
    assert built < 240  # 2 minutes on an idle 2-core machine; slack for shared CI runners


@pytest.mark.slow
def test_cli_run_uses_the_data_dir_and_records_it(small_release: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "cfbench.cli", "run", "--task", "ai-readi", "--methods", "nearest-neighbour",
         "--data-dir", str(small_release), "--n-queries", "3", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    recs = pd.read_parquet(out / "records.parquet")
    assert len(recs) == 6 and set(recs["status"]) == {"ok"}
    prov = json.loads(recs["provenance"].iloc[0])
    assert str(small_release) in prov["data_source"]
    rep = subprocess.run([sys.executable, "-m", "cfbench.cli", "data", "report", "--source", str(small_release)],
                         capture_output=True, text=True, timeout=600)
    assert rep.returncode == 0, rep.stderr
    assert "-1 (not at rest)" in rep.stdout and "label 'stress'" in rep.stdout
    csv = tmp_path / "f.csv"
    ex = subprocess.run([sys.executable, "-m", "cfbench.cli", "data", "ai-readi", "--source", str(small_release),
                         "--out", str(csv)], capture_output=True, text=True, timeout=600)
    assert ex.returncode == 0, ex.stderr
    assert len(pd.read_csv(csv)) >= 130
