"""The CLI: the main job end to end, and one clear line for every user mistake."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cfbench", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_breast_cancer_nearest_neighbour_end_to_end(tmp_path):
    out = tmp_path / "out"
    r = cli("run", "--task", "breast-cancer", "--methods", "nearest-neighbour", "--out", str(out),
            "--n-queries", "10", "--k", "3")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    nn = summary["methods"]["nearest-neighbour"]
    assert set(nn) == {"0->1", "1->0", "all"}
    assert nn["all"]["n_queries"] == 20 and nn["all"]["n_cfs"] == 60
    assert nn["all"]["all"]["validity"] == 1.0  # candidates are predicted as the target class
    assert summary["classifier"]["accuracy"] > 0.9
    recs = pd.read_parquet(out / "records.parquet")
    assert len(recs) == 20 and set(recs["status"]) == {"ok"}
    md = cli("leaderboard", str(out), "--format", "markdown")
    assert md.returncode == 0 and "| nearest-neighbour | 10 |" in md.stdout


@pytest.mark.parametrize("args, fragment", [
    (["run", "--task", "nope"], "unknown task 'nope'; valid choices: "),
    (["run", "--task", "breast-cancer", "--methods", "dicee"], "unknown method 'dicee' (did you mean 'dice'?); valid choices: "),
    (["run", "--task", "breast-cancer", "--methods", "nearest-neighbour:fast"], "unknown variant 'fast'"),
    (["run", "--task", "breast-cancer", "--k", "zero"], "--k: expected a positive integer, got 'zero'"),
    (["run", "--task", "breast-cancer", "--timeout", "-1"], "--timeout: expected a positive number"),
    (["run", "--task", "breast-cancer", "--seeds", "a-b"], "--seeds: expected integer seeds"),
    (["run", "--task", "breast-cancer", "--seed", "-1"], "seeds must be integers from 0 to 4294967295"),
    (["run", "--task", "breast-cancer", "--seeds", "0-99999999999"], "at most 10000 per run"),
    (["augment", "--task", "breast-cancer", "--seeds", "0-99999999999"], "at most 10000 per run"),
    (["run", "--task", "/no/such/file.toml"], "cannot read task file"),
    (["list", "things"], "invalid choice: 'things'"),
    (["leaderboard", "/no/such/run"], "no summary.json"),
])
@pytest.mark.slow
def test_user_mistakes_get_one_line_and_exit_2(args, fragment):
    r = cli(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert fragment in lines[0] and "Traceback" not in r.stderr


@pytest.mark.parametrize("summary", [
    {},
    [1, 2],
    {"task": "t", "data_source": "d", "methods": {}},
    {"task": "t", "data_source": "d", "methods": {"m": {"all": {"n_queries": 1}}},
     "classifier": {"model": "rf", "accuracy": 0.9, "f1": 0.9, "n_train": 9, "n_test": 3}},
])
@pytest.mark.slow
def test_leaderboard_of_a_summary_with_missing_keys_is_one_line(tmp_path, summary):
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    r = cli("leaderboard", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "not a cfbench summary (missing" in r.stderr


@pytest.mark.slow
def test_list_json():
    for what in ("tasks", "methods", "metrics"):
        r = cli("list", what, "--json")
        assert r.returncode == 0
        names = [x["name"] for x in json.loads(r.stdout)]
        assert {"tasks": "breast-cancer", "methods": "nearest-neighbour", "metrics": "validity"}[what] in names
