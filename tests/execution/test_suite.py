"""Suite files: the shape, one-line errors, the smoke check and the boards defined by suite files."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cfbench.core.errors import UserError
from cfbench.execution.suite import load_suite
from cfbench.smoke import SmokeRun, load_config

BOARDS = Path(__file__).parents[2] / "leaderboard"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cfbench", *args], capture_output=True,
                          text=True, timeout=600)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "suite.toml"
    p.write_text(text)
    return p


def test_tasks_times_methods_with_params_and_settings(tmp_path):
    p = write(tmp_path, '''
tasks = ["heart", "breast-cancer"]
methods = ["nice", { name = "dice:random", params = { total_cfs = 20 } }, "dice:random"]
seeds = "0-2"
k = 3
timeout = 5

[augment]
methods = ["nice"]
max_per_class = 4
''')
    suite = load_suite(p)
    assert suite.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    assert suite.identity() == {"file": "suite.toml", "sha256": suite.sha256}
    assert [r.name for r in suite.runs] == ["heart", "breast-cancer"]
    run = suite.runs[0]
    assert run.methods == "nice,dice:random[total_cfs=20],dice:random"
    assert run.settings == {"seeds": (0, 1, 2), "k": 3, "timeout": 5}
    assert run.augment == {"methods": "nice", "seeds": None, "scenarios": ["A", "B", "C"],
                           "fraction": 0.5, "curve": [], "max_per_class": 4, "timeout": None,
                           "budget": None}


@pytest.mark.parametrize("text, fragment", [
    ('task = "heart"\nmethods = ["nice"]\nqueries = 3\n', "unknown key 'queries'; valid keys: "),
    ('task = "heart"\nmethods = ["nice"]\nk = "three"\n', "k: expected a positive integer, got 'three'"),
    ('task = "heart"\n', "methods: missing"),
    ('methods = ["nice"]\n', "tasks: expected a task name"),
    ('task = "heart"\nmethods = [{ name = "nice", parms = {} }]\n', "methods[0]: unknown key 'parms'"),
    ('task = "heart"\nmethods = ["nice"]\nseeds = "a-b"\n', "seeds: expected integer seeds"),
    ('task = "heart"\nmethods = ["nice"]\n[augment]\nmax_per_clas = 3\n', "unknown key augment.max_per_clas"),
    ('task = "heart"\nmethods = ["nice"]\n[check]\natl = 1\n', "unknown key check.atl"),
    ('methods = ["nice"]\n[[runs]]\ntask = "heart"\n[[runs]]\ntask = "heart"\n', "two runs write to the folder 'heart'"),
    ('task = "heart"\nmethods = ["nice"\n', "not a valid TOML suite file"),
    ('task = "heart"\nmethods = ["nice"]\nexecutor = "slurm"\n',
     "executor: unknown executor 'slurm'; valid choices: local, ray"),
    ('task = "heart"\nmethods = ["nice"]\nexecutor = 1\n', "executor: expected str, got 1"),
    ('task = "heart"\nmethods = ["nice"]\nexecutor = "local"\nray_address = "h:6379"\n',
     "ray_address: 'h:6379' needs executor = \"ray\""),
    ('task = "heart"\nmethods = ["nice"]\n[[runs]]\nexecutor = "locl"\n',
     "runs[0] executor: unknown executor 'locl'"),
])
def test_mistakes_are_one_line_naming_file_and_key(tmp_path, text, fragment):
    p = write(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_suite(p)
    msg = str(err.value)
    assert fragment in msg and str(p) in msg, msg


def test_executor_settings(tmp_path):
    suite = load_suite(write(tmp_path, 'task = "heart"\nmethods = ["nice"]\nexecutor = "ray"\n'
                                       'ray_address = "10.0.0.5:6379"\n[[runs]]\n[[runs]]\n'
                                       'name = "here"\nray_address = "auto"\n'))
    assert [r.settings for r in suite.runs] == [
        {"executor": "ray", "ray_address": "10.0.0.5:6379"},
        {"executor": "ray", "ray_address": "auto"}]


@pytest.mark.slow
def test_run_config_executor_is_checked_like_the_flags_and_flags_win(tmp_path, monkeypatch):
    """A suite's ray_address without executor = "ray" is refused in one line, before any work,
    and --executor local overrides the file's executor = "ray" (then its address is refused)."""
    monkeypatch.delenv("CFBENCH_EXECUTOR", raising=False)
    out = tmp_path / "out"
    p = write(tmp_path, 'task = "breast-cancer"\nmethods = ["nearest-neighbour"]\nn_queries = 2\n'
                        'ray_address = "10.0.0.5:6379"\n')
    r = cli("run", "--config", str(p), "--out", str(out))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"{p}: ray_address '10.0.0.5:6379' needs executor = \"ray\"" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
    p = write(tmp_path, 'task = "breast-cancer"\nmethods = ["nearest-neighbour"]\nn_queries = 2\n'
                        'executor = "ray"\nray_address = "10.0.0.5:6379"\n')
    r = cli("run", "--config", str(p), "--out", str(out), "--executor", "local")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "ray_address '10.0.0.5:6379' needs executor" in r.stderr and not out.exists()


def test_runs_override_the_top_level_settings(tmp_path):
    suite = load_suite(write(tmp_path, '''
seeds = [0]
k = 1
methods = ["nice"]
[[runs]]
task = "heart"
k = 2
[[runs]]
task = "heart"
name = "heart-nn"
methods = ["nearest-neighbour"]
'''))
    assert [(r.name, r.methods, r.settings["k"]) for r in suite.runs] == [
        ("heart", "nice", 2), ("heart-nn", "nearest-neighbour", 1)]


def test_the_smoke_suite_expands_to_the_former_smoke_configuration():
    """leaderboard/smoke.suite.toml replaces smoke.toml: the same runs, settings and tolerances
    (the augmentation now over two repetitions: protocol 2 needs them for its CIs)."""
    runs, atol, rtol = load_config(BOARDS / "smoke.suite.toml")
    assert (atol, rtol) == (0.02, 0.05)
    assert runs == [  # what the old loader read from the old smoke.toml
        SmokeRun(task="heart", methods="nearest-neighbour,nice,dice:random,dice:genetic,dice:kdtree",
                 n_queries=3, seeds=(0,), k=1, timeout=30.0, augment_max_per_class=5,
                 augment_seeds=(0, 1)),
        SmokeRun(task="ai-readi", methods="nearest-neighbour,nice", n_queries=5, seeds=(0,), k=1,
                 timeout=30.0, augment_max_per_class=10, augment_seeds=(0, 1)),
    ]


def test_the_smoke_check_refuses_settings_it_would_not_honour(tmp_path):
    p = write(tmp_path, 'task = "heart"\nmethods = ["nice"]\nn_queries = 2\njobs = 2\n')
    with pytest.raises(UserError, match="does not support 'jobs'"):
        load_config(p)
    p = write(tmp_path, 'task = "heart"\nmethods = ["nice"]\nn_queries = 2\n[augment]\nfraction = 0.3\n')
    with pytest.raises(UserError, match="augment.fraction"):
        load_config(p)


@pytest.mark.parametrize("task", ["heart", "ai-readi"])
def test_board_suites_reproduce_the_committed_boards_commands(task):
    """The committed board was made from leaderboard/<task>.suite.toml as it is committed: the
    board records that file's SHA-256, and the settings it ran with are the file's -- the
    headline defaults, so the board's command is the README's headline command for the task."""
    from cfbench.execution.config import DEFAULT_BUDGET, DEFAULT_TIMEOUT

    path = BOARDS / f"{task}.suite.toml"
    board = json.loads((BOARDS / f"{task}.json").read_text())
    cfg, aug = board["config"], board["augmentation"]
    assert cfg["suite"] == {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    [run] = load_suite(path).runs
    assert run.task == board["task"] and run.methods == cfg["methods"] == "all"
    s = run.settings
    assert set(s) <= {"seeds", "k"}  # every other run setting is left at its default
    assert (list(s["seeds"]), s.get("k", 1)) == (cfg["seeds"], cfg["k"])
    assert (cfg["n_queries"], cfg["budget"], cfg["timeout"]) == (None, DEFAULT_BUDGET, DEFAULT_TIMEOUT)
    a = run.augment
    assert (a["methods"], list(a["seeds"]), a["scenarios"], a["fraction"], a["max_per_class"]) == (
        aug["methods"], aug["seeds"], aug["scenarios"], aug["fraction"], aug["max_per_class"])
    # the fractions of the scarcity curve (a protocol-1 board has only the table's)
    assert sorted({float(a["fraction"]), *map(float, a["curve"])}) == aug.get("curve", [aug["fraction"]])
    assert a["timeout"] is None and aug["timeout"] == DEFAULT_TIMEOUT


def test_board_markdown_names_the_suite_file_and_its_hash():
    from cfbench.report.board import board_markdown

    board = json.loads((BOARDS / "ai-readi.json").read_text())
    digest = hashlib.sha256((BOARDS / "ai-readi.suite.toml").read_bytes()).hexdigest()
    assert f"`cfbench run --config ai-readi.suite.toml` (suite file SHA-256 `{digest[:16]}`)" in (
        board_markdown(board))
    board["config"]["suite"] = {"file": "heart.suite.toml", "sha256": "ab" * 32}
    board["config"]["params"] = [["dice:random", {"total_cfs": 20}]]
    md = board_markdown(board)
    assert "`cfbench run --config heart.suite.toml` (suite file SHA-256 `abababababababab`)" in md
    assert "--param dice:random.total_cfs=20`" in md


@pytest.mark.slow
def test_run_config_runs_every_task_in_its_folder_and_flags_win(tmp_path):
    p = tmp_path / "two.suite.toml"
    p.write_text('methods = ["nearest-neighbour"]\nn_queries = 2\nk = 1\n'
                 '[[runs]]\ntask = "breast-cancer"\nname = "a"\n'
                 '[[runs]]\ntask = "breast-cancer"\nname = "b"\nmethods = ["nearest-neighbour", "nice:none"]\n')
    out = tmp_path / "out"
    r = cli("run", "--config", str(p), "--k", "2", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    for name, methods in (("a", {"nearest-neighbour"}), ("b", {"nearest-neighbour", "nice:none"})):
        info = json.loads((out / name / "run.json").read_text())
        assert info["k"] == 2 and info["n_queries"] == 2  # --k won, n_queries from the file
        assert info["config"]["suite"] == {"file": "two.suite.toml", "sha256": digest}
        summary = json.loads((out / name / "summary.json").read_text())
        assert set(summary["methods"]) == methods


@pytest.mark.slow
def test_run_config_checks_every_run_before_starting(tmp_path):
    p = tmp_path / "bad.suite.toml"
    p.write_text('methods = ["nearest-neighbour"]\nn_queries = 2\n'
                 '[[runs]]\ntask = "breast-cancer"\nname = "ok"\n'
                 '[[runs]]\ntask = "breast-cancer"\nname = "bad"\n'
                 'methods = [{ name = "nice", params = { ae_epoch = 3 } }]\n')
    out = tmp_path / "out"
    r = cli("run", "--config", str(p), "--out", str(out))
    assert r.returncode == 2 and "unknown parameter 'ae_epoch' of method 'nice'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    r = cli("run", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "cannot read the suite file" in r.stderr


@pytest.mark.slow
def test_no_augment_runs_a_suite_without_its_augmentation(tmp_path):
    """``--no-augment`` runs the suite file's runs and skips its ``[augment]`` table (a board's
    run part, timed on its own); the run still records the suite file it came from."""
    p = tmp_path / "aug.suite.toml"
    p.write_text('task = "breast-cancer"\nmethods = ["nearest-neighbour"]\nn_queries = 2\n'
                 '[augment]\nmethods = ["nearest-neighbour"]\nseeds = [0, 1]\n')
    out = tmp_path / "out"
    r = cli("run", "--config", str(p), "--out", str(out), "--quiet", "--no-augment")
    assert r.returncode == 0, r.stderr
    assert (out / "summary.json").exists()
    assert not (out / "augment.json").exists() and not (out / "augment").exists()
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["suite"]["file"] == "aug.suite.toml"
    r = cli("run", "--config", str(p), "--out", str(tmp_path / "x"), "--augment", "--no-augment")
    assert r.returncode == 2 and "not allowed with argument" in r.stderr
    r = cli("run", "--task", "breast-cancer", "--out", str(tmp_path / "y"), "--no-augment")
    assert r.returncode == 2 and "--no-augment skips a suite file's [augment] table" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "y").exists()
