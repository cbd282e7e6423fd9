"""``cfbench leaderboard --add``: a method joins a committed board without re-running the others,
only when it answered the board's questions; the merged board validates; studies merge likewise."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCHEMA = Path(__file__).parents[2] / "leaderboard" / "schema.json"
BASE = ("--task", "breast-cancer", "--n-queries", "3", "--k", "1", "--quiet")
STUDY = ("--task", "breast-cancer", "--seeds", "0,1", "--max-per-class", "5", "--quiet")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cfbench.cli", *args], capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A board of nearest-neighbour (with a study) and the runs and study of one more method."""
    tmp = tmp_path_factory.mktemp("add")
    boards = tmp / "leaderboard"
    boards.mkdir()
    (boards / "schema.json").write_text(SCHEMA.read_text())
    for name, method in (("base", "nearest-neighbour"), ("new", "nice:none")):
        r = cli("run", *BASE, "--methods", method, "--out", str(tmp / name))
        assert r.returncode == 0, r.stderr
    for name, methods in (("aug-base", "nearest-neighbour"), ("aug-new", "nice:none")):
        r = cli("augment", *STUDY, "--methods", methods, "--out", str(tmp / name))
        assert r.returncode == 0, r.stderr
    r = cli("leaderboard", str(tmp / "base"), "--update", "--augment", str(tmp / "aug-base"),
            "--dir", str(boards))
    assert r.returncode == 0, r.stderr
    return tmp, boards


@pytest.mark.slow
def test_add_merges_ranks_study_and_validates(made):
    tmp, boards = made
    before = json.loads((boards / "breast-cancer.json").read_text())
    r = cli("leaderboard", "--add", str(tmp / "new"), "--augment", str(tmp / "aug-new"),
            "--dir", str(boards))
    assert r.returncode == 0, r.stderr
    assert "added nice:none" in r.stdout and "added nice:none to the augmentation study" in r.stdout
    board = json.loads((boards / "breast-cancer.json").read_text())
    assert set(board["methods"]) == {"nearest-neighbour", "nice:none"}
    assert board["methods"]["nearest-neighbour"] == before["methods"]["nearest-neighbour"]
    assert set(board["ranks"]["methods"]) == {"nearest-neighbour", "nice:none"}
    [entry] = board["added"]
    assert entry["methods"] == ["nice:none"] and "--methods nice:none" in entry["command"]
    assert entry["provenance"]["task_hash"] == board["task_hash"]
    study = {row["method"] for row in board["augmentation"]["aggregate"]["methods"]}
    assert {"nearest-neighbour", "nice:none", "smote"} <= study
    assert board["augmentation"]["methods"] == "nearest-neighbour,nice:none"
    md = (boards / "breast-cancer.md").read_text()
    assert "nice:none: added from `cfbench run --task breast-cancer --methods nice:none" in md
    assert "are from before this run" not in md  # its study rows came with it
    v = cli("leaderboard", "--validate", "--dir", str(boards))
    assert v.returncode == 0, v.stdout + v.stderr
    merged = {p.name: p.read_bytes() for p in boards.iterdir()}
    r = cli("leaderboard", "--rescore", "--dir", str(boards))  # keeps where the rows came from
    assert r.returncode == 0, r.stderr
    assert {p.name: p.read_bytes() for p in boards.iterdir()} == merged

    again = cli("leaderboard", "--add", str(tmp / "new"), "--dir", str(boards))
    assert again.returncode == 2 and "nice:none already on it; pass --replace" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    ok = cli("leaderboard", "--add", str(tmp / "new"), "--replace", "--dir", str(boards))
    assert ok.returncode == 0 and "replaced nice:none" in ok.stdout
    assert len(json.loads((boards / "breast-cancer.json").read_text())["added"]) == 1
    # replaced without --augment: the board says its study rows are the earlier run's
    md = (boards / "breast-cancer.md").read_text()
    assert "the augmentation study's rows for nice:none are from before this run (not re-run with it)" in md


@pytest.mark.slow
def test_add_refuses_a_run_that_asked_other_questions(made):
    tmp, boards = made
    before = (boards / "breast-cancer.json").read_bytes()
    fewer = tmp / "fewer"  # the run's folder as `--n-queries 2` would have recorded it
    shutil.copytree(tmp / "new", fewer, dirs_exist_ok=True)
    info = json.loads((fewer / "run.json").read_text())
    info["config"]["n_queries"] = 2
    (fewer / "run.json").write_text(json.dumps(info))
    r = cli("leaderboard", "--add", str(fewer), "--dir", str(boards))
    assert r.returncode == 2
    assert "n_queries is 2 in the run and 3 on the board" in r.stderr
    assert (boards / "breast-cancer.json").read_bytes() == before  # nothing written
    r = cli("leaderboard", "--add", str(tmp / "new"), "--dir", str(tmp / "nowhere"))
    assert r.returncode == 2 and "no committed board for task 'breast-cancer'" in r.stderr


@pytest.mark.slow
def test_update_can_keep_the_study_of_the_board_it_replaces(made):
    tmp, boards = made
    study = json.loads((boards / "breast-cancer.json").read_text())["augmentation"]
    r = cli("leaderboard", str(tmp / "base"), "--update", "--keep-augmentation", "--dir", str(boards))
    assert r.returncode == 0, r.stderr
    board = json.loads((boards / "breast-cancer.json").read_text())
    assert board["augmentation"] == study and board["augmentation_kept"]["records_sha256"]
    assert "kept from the board it replaced" in (boards / "breast-cancer.md").read_text()
    v = cli("leaderboard", "--validate", "--dir", str(boards))
    assert v.returncode == 0, v.stdout + v.stderr
    bad = cli("leaderboard", str(tmp / "base"), "--update", "--keep-augmentation", "--dir",
              str(tmp / "empty"))
    assert bad.returncode == 2 and "there is no study to keep" in bad.stderr


def test_compatibility_names_the_first_difference():
    from cfbench.report.merge import compatibility_problem

    prov = {"task_hash": "a" * 64, "data_fingerprint": "d", "classifier": "random-forest",
            "model_sha256": "m"}
    board = {"task": "heart", "config": {"seeds": [0], "k": 1, "budget": 2.0, "timeout": 120.0},
             "provenance": prov}
    rows = [{"method": "nearest-neighbour", "variant": None, "seed": 0, "query_id": q,
             "source": 0, "target": 1, "provenance": prov} for q in range(3)]
    mine = [dict(r, method="nice", variant="none") for r in rows]
    assert compatibility_problem(board, rows, board["config"], mine) is None
    assert "k is 2 in the run and 1 on the board" in compatibility_problem(
        board, rows, {**board["config"], "k": 2}, mine)
    other = [dict(r, provenance={**prov, "model_sha256": "x"}) for r in mine]
    assert "model_sha256 is 'x' in the run" in compatibility_problem(board, rows, board["config"], other)
    assert "nice:none answered 2 queries, the board's methods 3" in compatibility_problem(
        board, rows, board["config"], mine[:2])
