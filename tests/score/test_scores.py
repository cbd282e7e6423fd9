"""Run folders that render themselves: ``scores.parquet`` written at run time, and the summary,
the board and the HTML report rebuilt from the run folder with the task's data gone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mixed_task import wearable

from cfbench.records.store import SCHEMA_VERSION
from cfbench.score import registry as R

METHODS = "nearest-neighbour,nice:sparsity"


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cfbench", *args], capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(run folder, spec, data file) of a small run on a CSV task."""
    root = tmp_path_factory.mktemp("csvtask")
    data = root / "cohort.csv"
    wearable(n=160, seed=5).to_csv(data, index=False)
    spec = root / "tasks" / "cohort.toml"
    r = cli("task", "init", str(data), "--label", "diabetic", "--out", str(spec))
    assert r.returncode == 0, r.stderr
    out = root / "run"
    r = cli("run", "--task", str(spec), "--methods", METHODS, "--n-queries", "3", "--k", "2",
            "--timeout", "30", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    return out, spec, data


@pytest.mark.slow
def test_scores_parquet_has_one_row_per_cf_with_every_per_cf_metric(csv_run):
    out, _, _ = csv_run
    scores = pd.read_parquet(out / "scores.parquet")
    summary = json.loads((out / "summary.json").read_text())
    assert len(scores) == sum(d["all"]["n_cfs"] for d in summary["methods"].values()) > 0
    for col in ("method", "variant", "params", "method_label", "seed", "query_id", "direction",
                "cf_index", *(m.name for m in R.per_cf_metrics())):
        assert col in scores.columns, col
    assert not scores.duplicated(["method_label", "seed", "query_id", "cf_index"]).any()
    assert scores["validity"].dtype == bool
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {r["schema_version"] for r in records} == {SCHEMA_VERSION}
    assert summary["schema_version"] == SCHEMA_VERSION
    assert json.loads((out / "run.json").read_text())["task_meta"]["task"] == "cohort"


@pytest.mark.slow
def test_board_from_the_run_folder_equals_the_board_rescored_from_records(csv_run, tmp_path):
    """``--update`` reads scores.parquet; ``--validate`` re-scores the records with the task:
    both must give the same numbers (and the board says its schema version)."""
    from cfbench.core.strict_json import dumps
    from cfbench.records.store import load_records
    from cfbench.report.board import FROM_RECORDS, board_from_records, build_board
    from cfbench.report.check import _diff
    from cfbench.tasks.spec import Task, load_spec

    out, spec, _ = csv_run
    board_dir = tmp_path / "lb"
    r = cli("leaderboard", str(out), "--update", "--dir", str(board_dir))
    assert r.returncode == 0, r.stderr
    board = json.loads((board_dir / "cohort.json").read_text())
    assert board["schema_version"] == SCHEMA_VERSION
    # every ranked metric is ranked, or left out with the reason (constant over every method)
    ranks = board["ranks"]
    assert set(ranks["metrics"]) | set(ranks["unranked"]) == {m.name for m in R.ranked()}
    assert all(why.startswith("not ranked: ") for why in ranks["unranked"].values())
    again = board_from_records(Task.load(load_spec(spec)), load_records(out), config={},
                               provenance={}, skipped_methods={}, augmentation=None)
    diffs: list[str] = []
    for key in FROM_RECORDS:
        _diff(json.loads(dumps(again[key])), board[key], key, diffs)
    assert diffs == []
    # the check can fail: a changed score in scores.parquet gives another board
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    s = pd.read_parquet(moved / "scores.parquet")
    s["heom"] = s["heom"] + 1.0
    s.to_parquet(moved / "scores.parquet", index=False)
    first = next(iter(board["methods"]))
    assert (build_board(moved)["methods"][first]["all"]["valid"]["heom"]
            != board["methods"][first]["all"]["valid"]["heom"])


@pytest.mark.slow
def test_leaderboard_update_and_report_work_with_the_task_data_gone(csv_run, tmp_path):
    out, _, data = csv_run
    summary = json.loads((out / "summary.json").read_text())
    run = tmp_path / "run"
    shutil.copytree(out, run)
    hidden = data.with_suffix(".hidden")
    data.rename(hidden)  # the CSV is gone and the classifier cache is empty
    env = {**os.environ, "CFBENCH_CACHE": str(tmp_path / "empty-cache")}
    try:
        r = cli("leaderboard", str(run), "--format", "json", env=env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == summary
        (run / "summary.json").unlink()  # rebuilt from records + scores.parquet + run.json
        r = cli("leaderboard", str(run), "--format", "json", env=env)
        assert r.returncode == 0, r.stderr
        again = json.loads(r.stdout)
        assert again.pop("partial") is True and again["methods"] == summary["methods"]
        r = cli("leaderboard", str(run), "--update", "--dir", str(tmp_path / "lb"), env=env)
        assert r.returncode == 0, r.stderr
        r = cli("report", str(run), "--out", str(tmp_path / "site"), env=env)
        assert r.returncode == 0, r.stderr
        page = (tmp_path / "site" / "index.html").read_text()
        assert "Critical-difference diagrams" in page  # ranks from scores.parquet
        # without scores.parquet the task is needed, and it is not here: one clear line
        (run / "scores.parquet").unlink()
        r = cli("leaderboard", str(run), "--format", "json", env=env)
        assert r.returncode == 2 and "cohort.csv" in r.stderr and "Traceback" not in r.stderr
    finally:
        hidden.rename(data)


@pytest.mark.slow
def test_a_folder_without_scores_is_scored_with_the_task_as_before(csv_run, tmp_path):
    """Run folders made by older code (no scores.parquet, no task_meta, a v1 summary)."""
    out, _, _ = csv_run
    run = tmp_path / "old"
    shutil.copytree(out, run)
    summary = json.loads((out / "summary.json").read_text())
    (run / "scores.parquet").unlink()
    info = json.loads((run / "run.json").read_text())
    del info["task_meta"]
    (run / "run.json").write_text(json.dumps(info))
    old = {**summary, "schema_version": 1, "skipped_methods": {"api-x": "no endpoint"}}
    del info["skipped_methods"]  # kept only in the summary by older code
    (run / "run.json").write_text(json.dumps(info))
    (run / "summary.json").write_text(json.dumps(old))
    r = cli("leaderboard", str(run), "--format", "json")
    assert r.returncode == 0 and "older cfbench" in r.stderr, r.stderr
    assert json.loads(r.stdout)["methods"] == summary["methods"]
    assert json.loads(r.stdout)["skipped_methods"] == {"api-x": "no endpoint"}
    r = cli("leaderboard", str(run), "--rescore")
    assert r.returncode == 0, r.stderr
    assert (run / "scores.parquet").exists()
    assert json.loads((run / "summary.json").read_text()) == {
        **summary, "skipped_methods": {"api-x": "no endpoint"}}


def test_summary_scopes_by_hand():
    """all: valid CFs over k slots; valid: mean over valid CFs; found: mean over all CFs."""
    from cfbench.score.summary import summarize_frames

    q = pd.DataFrame({"qidx": [0, 1], "method_label": "m", "direction": "0->1", "k": 2,
                      "status": ["ok", "not_found"], "n_cfs": [2, 0], "seconds": [1.0, 3.0]})
    per_cf = {m.name: np.zeros(2) for m in R.per_cf_metrics()}
    per_cf.update(validity=np.array([True, False]), l1_mad=np.array([2.0, 0.0]),
                  lof_inlier=np.array([True, True]), n_changed=np.array([3, 1]))
    cf = pd.DataFrame({"qidx": [0, 0], **per_cf, "n_changed_actionable": [3, 0],
                       "changed::a": [True, True]})
    meta = {"task": "t", "task_hash": "h", "data_source": "d", "classifier": {}, "features": ["a"]}
    d = summarize_frames(cf, q, meta)["methods"]["m"]["all"]
    assert d["n_valid"] == 1 and d["all"]["coverage"] == 0.5
    assert d["all"]["validity"] == 0.25 and d["all"]["lof_inlier"] == 0.25  # 1 of 4 slots
    assert d["valid"]["l1_mad"] == 2.0 and d["found"]["l1_mad"] == 1.0
    assert d["found"]["validity"] == 0.5 and "validity" not in d["valid"]
    assert d["valid"]["actionable_share"] == 1.0 and d["found"]["actionable_share"] == 0.75
    assert d["all"]["seconds_median"] == 2.0


@pytest.mark.slow
def test_a_run_without_any_cf_round_trips_through_scores_parquet(csv_run, tmp_path):
    """Every query failed: scores.parquet has no rows, and the summary and board built from it
    equal those scored with the task (no crash on empty frames)."""
    from cfbench.core.strict_json import dumps
    from cfbench.records.store import load_records
    from cfbench.report.board import board_from_frames
    from cfbench.score.summary import (
        frames_from_scores,
        score_records,
        summarize_frames,
        task_meta,
        write_scores,
    )
    from cfbench.tasks.spec import Task, load_spec

    out, spec, _ = csv_run
    task = Task.load(load_spec(spec))
    records = load_records(out)
    for r in records:
        r.update(cfs=[], n_cfs=0, status="not_found")
    cf, q = score_records(task, records)
    write_scores(tmp_path / "scores.parquet", records, cf, q)
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert len(scores) == 0 and "validity" in scores.columns
    cf2, q2 = frames_from_scores(records, scores, len(task.schema.names))
    meta = task_meta(task)
    assert dumps(summarize_frames(cf2, q2, meta)) == dumps(summarize_frames(cf, q, meta))
    board = board_from_frames(cf2, q2, meta, config={}, provenance={}, skipped_methods={},
                              augmentation=None)
    assert set(board["ranks"]["overall"].values()) == {1.5}  # two methods, all failed: tied


def test_coverage_counts_valid_cfs_and_returned_any_cf_by_hand():
    """CF-Bench's coverage: queries with a valid CF; `returned`: queries with any CF."""
    from cfbench.score.summary import summarize_frames

    # three queries: one valid CF; one invalid CF only; nothing
    q = pd.DataFrame({"qidx": [0, 1, 2], "method_label": "m", "direction": "0->1", "k": 1,
                      "status": ["ok", "ok", "not_found"], "n_cfs": [1, 1, 0],
                      "seconds": [1.0, 1.0, 1.0]})
    per_cf = {m.name: np.zeros(2) for m in R.per_cf_metrics()}
    per_cf.update(validity=np.array([True, False]))
    cf = pd.DataFrame({"qidx": [0, 1], **per_cf, "n_changed_actionable": [0, 0],
                       "changed::a": [True, True]})
    meta = {"task": "t", "task_hash": "h", "data_source": "d", "classifier": {}, "features": ["a"]}
    d = summarize_frames(cf, q, meta)["methods"]["m"]["all"]["all"]
    assert d["coverage"] == pytest.approx(1 / 3)  # only query 0 holds a valid CF
    assert d["returned"] == pytest.approx(2 / 3)  # queries 0 and 1 returned something
