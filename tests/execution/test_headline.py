"""The headline command as a new user meets it: a per-query budget apart from the hard kill, the
machine used (cores, order, threads), one truthful progress display, a run folder per run,
readable tables, and the first-contact details (resume pins methods, per-variant extras, help)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cfbench.cli.progress import fmt_duration
from cfbench.core.errors import UserError
from cfbench.execution import config, schedule
from cfbench.execution.config import Cell, RunConfig
from cfbench.execution.orchestrator import execute
from cfbench.execution.select import resolve_methods
from cfbench.records.store import load_records
from cfbench.tasks.spec import Task, resolve_spec


@pytest.fixture(scope="module")
def task() -> Task:
    return Task.load(resolve_spec("breast-cancer"))


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    root = Path(__file__).parents[2]
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(root / "plugins"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "cfbench", *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd, env=env)


# ----------------------------------------------------------------------------- budget and kill


def test_generate_gets_the_budget_not_the_hard_timeout(task, faulty_plugin, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cfg = RunConfig(task="breast-cancer", methods="faulty:budget", n_queries=1, out=tmp_path / "r",
                    budget=0.25, timeout=30.0, jobs=2)
    execute(cfg, task, [("faulty", "budget")])
    recs = load_records(tmp_path / "r")
    assert len(recs) == 2 and {r["status"] for r in recs} == {"ok"}
    for r in recs:
        assert r["extra"]["budget"] == 0.25  # was the hard timeout (30) before
        assert r["budget"] == 0.25 and r["timeout"] == 30.0
        # one cell on its own gets every core
        assert r["extra"]["omp"] == str(schedule.threads_per_cell(2, 1))
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["config"]["budget"] == 0.25 and info["config"]["timeout"] == 30.0
    assert info["pairs"] == [["faulty", "budget", []]]  # method, variant, parameters


def test_worker_phases_reach_the_display(task, faulty_plugin, tmp_path):
    from cfbench.cli.progress import RunObserver

    class Listen(RunObserver):
        def __init__(self) -> None:
            self.events: list[tuple] = []

        def plan(self, work, cfg, costs=None):
            self.events.append(("plan", len(work)))

        def start(self, cell, n):
            self.events.append(("start", cell.label, n))

        def phase(self, cell, text):
            self.events.append(("phase", cell.label, text))

        def record(self, cell, rec):
            self.events.append(("record", cell.label))

        def finish(self, cell):
            self.events.append(("finish", cell.label))

    obs = Listen()
    cfg = RunConfig(task="breast-cancer", n_queries=1, out=tmp_path / "r")
    execute(cfg, task, [("faulty", "budget")], observer=obs)
    assert obs.events == [("plan", 1), ("start", "faulty:budget", 2),
                          ("phase", "faulty:budget", "warming up the faulty model"),
                          ("record", "faulty:budget"), ("record", "faulty:budget"),
                          ("finish", "faulty:budget")]


def test_parent_phases_show_as_status_lines():
    from rich.console import Console

    from cfbench.cli.progress import PhaseStatus
    from cfbench.core import phase

    buf = io.StringIO()
    with PhaseStatus(Console(file=buf, width=80), "loading task", every=0.0):
        phase.say("generating the synthetic release")
        phase.step("converting", 3, 3)
    phase.say("after: nobody listens")  # no sink: nothing, no error
    assert buf.getvalue().splitlines() == ["generating the synthetic release", "converting: 3/3"]


def test_hard_kill_is_far_above_the_budget():
    assert schedule.hard_limit(timeout=1.0, budget=2.0, batch=1, grace=10.0) == 30.0
    assert schedule.hard_limit(config.DEFAULT_TIMEOUT, config.DEFAULT_BUDGET, 50, 10.0) >= (
        50 * 10 * config.DEFAULT_BUDGET)


# ----------------------------------------------------------------------------- the machine


def test_cells_run_longest_expected_first():
    work = [(Cell("nearest-neighbour", "default", 0), list(range(20))),
            (Cell("dice", "random", 0), list(range(20))),
            (Cell("cfnow", "greedy", 0), list(range(20))),
            (Cell("cfnow", "random", 0), list(range(20)))]
    order = [c.label for c, _ in schedule.longest_first(work, budget=5.0)]
    assert order == ["cfnow:greedy", "dice:random", "cfnow:random", "nearest-neighbour"]
    # a tiny budget makes the anytime search cheaper than DiCE
    order = [c.label for c, _ in schedule.longest_first(work, budget=0.1)]
    assert order[0] == "dice:random"
    # a possible first-use fine-tune (GeneratorSpec.first_use) starts that cell early, not last
    llm = [(Cell("llm-fewshot", "retrieval", 0), list(range(100))),
           (Cell("llm-finetuned", "default", 0), list(range(100)))]
    assert schedule.cell_cost("llm-finetuned", "default", 100, 2.0) < schedule.cell_cost(
        "llm-fewshot", "retrieval", 100, 2.0)
    assert [c.label for c, _ in schedule.longest_first(llm, budget=2.0)][0] == "llm-finetuned"


def test_a_plugins_bad_scheduling_hint_counts_as_the_default():
    """``cost`` / ``first_use`` come from third-party specs: a value that is not a finite number
    >= 0 falls back to the default instead of stopping the run while it sorts the cells."""
    from types import SimpleNamespace

    for bad in ("abc", float("nan"), -3.0, None, [1]):
        spec = SimpleNamespace(cost={"v": bad}, anytime=())
        assert schedule.per_query_cost(spec, "v", budget=2.0) == schedule.DEFAULT_COST
        assert schedule._seconds({"v": bad}, "v", 0.0) == 0.0
    assert schedule._seconds("not a table", "v", 1.5) == 1.5
    assert schedule._seconds({"*": 4}, "v", 0.0) == 4.0


def test_setup_gate_holds_cells_of_a_setup_being_prepared():
    import threading

    work = [("A", 1, "model"), ("B", 2, "model"), ("C", 3, ""), ("D", 4, "model")]
    gate = schedule.SetupGate([(c, q) for c, q, _ in work], key={c: k for c, _, k in work}.get)
    assert gate.next() == ("A", 1, "model")  # the first of its key prepares it
    assert gate.next() == ("C", 3, "")  # B waits for A's set-up: the free slot runs C
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(gate.next()))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and got == []  # nothing left but cells waiting for "model"
    gate.fitted("model")  # A's set-up is done (or A failed, or ended)
    waiter.join(5)
    assert got == [("B", 2, "model")]
    assert gate.next() == ("D", 4, "model") and gate.next() is None
    # an interrupt releases a thread blocked on a set-up
    gate = schedule.SetupGate([("A", 1), ("B", 2)], key=lambda c: "model")
    assert gate.next()[0] == "A"
    waiter = threading.Thread(target=lambda: got.append(gate.next()))
    waiter.start()
    gate.close()
    waiter.join(5)
    assert not waiter.is_alive() and got[-1] is None


@pytest.mark.slow
def test_cells_sharing_a_setup_start_once_it_is_ready(task, faulty_plugin, tmp_path):
    """The second cell of a shared set-up starts after the first one reported ``phase.ready``,
    not after its whole fit, and the other slot runs another method meanwhile."""
    cfg = RunConfig(task="breast-cancer", n_queries=1, out=tmp_path / "r", jobs=2)
    execute(cfg, task, [("shared-setup", "a"), ("shared-setup", "b"), ("faulty", "ok")])
    recs = load_records(tmp_path / "r")
    assert {r["status"] for r in recs} == {"ok"} and len(recs) == 6
    times = {r["variant"]: r["extra"] for r in recs if r["method"] == "shared-setup"}
    first, second = sorted(times.values(), key=lambda t: t["fit_start"])
    assert second["fit_start"] >= first["ready"]  # held until the set-up was done
    assert second["fit_start"] < first["fit_end"]  # released by ready, not by the end of the fit


def test_threads_are_divided_among_concurrent_cells(monkeypatch):
    assert schedule.threads_per_cell(jobs=2, n_cells=10, cores=8) == 4
    assert schedule.threads_per_cell(jobs=4, n_cells=2, cores=8) == 4  # only 2 run at once
    assert schedule.threads_per_cell(jobs=16, n_cells=16, cores=2) == 1
    env = schedule.worker_env(3, {"PATH": "/bin"})
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"
    assert env["TRANSFORMERS_VERBOSITY"] == "error"
    assert schedule.worker_env(3, {"OMP_NUM_THREADS": "1"})["MKL_NUM_THREADS"] == "1"  # user wins


def test_estimate_is_bounded_by_the_longest_cell():
    assert schedule.estimate([100.0, 10.0, 10.0], jobs=2) == 100.0
    assert schedule.estimate([50.0, 50.0, 50.0, 50.0], jobs=2) == 100.0


# ----------------------------------------------------------------------------- progress display


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _display(plain: bool):
    from rich.console import Console

    from cfbench.cli.progress import ProgressDisplay

    buf = io.StringIO()
    clock = _Clock()
    console = Console(file=buf, width=80, force_terminal=not plain)
    disp = ProgressDisplay(console, plain=plain, clock=clock,
                           validity=lambda cfs, targets: sum(c[0] > 0 for c in cfs))
    return disp, buf, clock


def test_a_second_plan_keeps_the_cells_of_another_plan_still_running():
    """An augmentation's repetitions run side by side, each stage with its own plan: a new plan
    drops finished cells, but a running cell of the other lane still reports its result."""
    disp, buf, clock = _display(plain=True)
    cfg = RunConfig(task="t", jobs=1, budget=2.0)
    a0, b0, a1 = Cell("dice", "random", 0), Cell("nice", "none", 0), Cell("dice", "random", 1)
    with disp:
        disp.plan([(a0, [0, 1]), (b0, [0])], cfg)
        disp.start(b0, 1)
        disp.record(b0, {"status": "ok", "cfs": [[1.0]], "target": 1, "k": 1, "seconds": 0.1})
        disp.finish(b0)
        disp.start(a0, 2)  # lane 0 still running a0 when lane 1 plans its stage
        disp.plan([(a1, [0, 1, 2])], cfg)
        assert set(disp.cells) == {a0, a1}
        for _ in range(2):
            disp.record(a0, {"status": "ok", "cfs": [[1.0]], "target": 1, "k": 1, "seconds": 0.1})
        disp.finish(a0)
    lines = buf.getvalue().splitlines()
    assert lines[-2].startswith("plan: 1 cell, 3 queries, 1 at a time")  # only its own cells
    assert lines[-1].startswith("✓ dice:random seed 0  valid 2/2 · ok 2/2")


def test_plain_output_is_a_plan_line_finished_cells_and_rare_progress_lines():
    disp, buf, clock = _display(plain=True)
    cells = [Cell("nearest-neighbour", "default", 0), Cell("dice", "random", 0)]
    cfg = RunConfig(task="t", jobs=2, budget=2.0)
    with disp:
        disp.plan([(c, list(range(100))) for c in cells], cfg)
        for c in cells:
            disp.start(c, 100)
            for i in range(100):
                clock.t += 1.0
                disp.record(c, {"status": "ok", "cfs": [[1.0 if i % 4 else -1.0]], "target": 1,
                                "k": 1, "seconds": 0.5})
            disp.finish(c)
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("plan: 2 cells, 200 queries, 2 at a time, budget 2 s/query")
    progress = [x for x in lines if "queries ·" in x]
    assert 1 <= len(progress) <= 200 // 30  # one line per 30 s at most
    done = [x for x in lines if x.startswith("✓")]
    assert done == [
        "✓ nearest-neighbour seed 0  valid 75/100 · ok 100/100 · 0.5 s/query · 1 min 40 s",
        "✓ dice:random seed 0  valid 75/100 · ok 100/100 · 0.5 s/query · 1 min 40 s"]
    assert "\r" not in buf.getvalue() and "\x1b" not in buf.getvalue()


def test_plan_line_names_a_first_use_set_up():
    """A cell that may first train its adapter (``first_use``) is named in the plan line, with
    the estimate that includes it; the plain estimate assumes a warm cache."""
    disp, buf, _ = _display(plain=True)
    cells = [Cell("llm-finetuned", "default", 0), Cell("nearest-neighbour", "default", 0)]
    with disp:
        disp.plan([(c, list(range(100))) for c in cells], RunConfig(task="t", jobs=2, budget=2.0))
    line = " ".join(buf.getvalue().split())  # rich wraps at the console's 80 columns
    warm = schedule.cell_cost("llm-finetuned", "default", 100, 2.0)
    cold = warm + schedule.first_use_cost("llm-finetuned", "default")
    assert line.endswith(f"expected about {fmt_duration(warm)} (about {fmt_duration(cold)} if "
                         "llm-finetuned must first do its one-time set-up)"), line


def test_running_cells_eta_and_phases():
    disp, _, clock = _display(plain=False)
    cell = Cell("llm-finetuned", "default", 0)
    disp.plan([(cell, list(range(10)))], RunConfig(task="t", jobs=1))
    disp.start(cell, 10)
    disp.phase(cell, "LoRA fine-tuning (first use only): step 3/16")
    assert "step 3/16" in disp.running_lines()[0]
    clock.t = 10.0
    for _ in range(5):
        disp.record(cell, {"status": "ok", "cfs": [[1.0]], "target": 1, "k": 1, "seconds": 2.0})
    done, total, eta = disp.totals()
    assert (done, total) == (5, 10) and eta == pytest.approx(10.0)  # 2 s/query observed
    assert "5/10 queries" in disp.status_line() and "ETA 10 s" in disp.status_line()


def test_eta_is_not_inflated_by_a_long_fit():
    """A cell that spent 5 min loading/fine-tuning before its first answer: the ETA extrapolates
    the measured seconds per query, not (fit + answers) / answers."""
    disp, _, clock = _display(plain=False)
    cell = Cell("llm-finetuned", "default", 0)
    disp.plan([(cell, list(range(100)))], RunConfig(task="t", jobs=1))
    disp.start(cell, 100)
    clock.t = 300.0
    disp.record(cell, {"status": "ok", "cfs": [[1.0]], "target": 1, "k": 1, "seconds": 1.5})
    assert disp.totals()[2] == pytest.approx(99 * 1.5)


# ----------------------------------------------------------------------------- methods


def test_a_variant_needing_a_missing_module_is_unavailable(faulty_plugin):
    pairs, skipped = resolve_methods("faulty")
    pairs = [(c.method, c.variant) for c in pairs]
    assert ("faulty", "needs-lib") not in pairs and ("faulty", "ok") in pairs
    assert "surely_not_an_installed_module_xyz" in skipped["faulty:needs-lib"]
    with pytest.raises(UserError, match="faulty:needs-lib' is unavailable"):
        resolve_methods("faulty:needs-lib")
    pairs, skipped = resolve_methods("all")
    pairs = [(c.method, c.variant) for c in pairs]
    assert ("faulty", "needs-lib") not in pairs and "faulty:needs-lib" in skipped


def test_list_methods_table_names_the_extra(faulty_plugin):
    r = cli("list", "methods")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "cfbench-harness[missing]" in text  # rich markup used to eat "[missing]"


# ----------------------------------------------------------------------------- run folders


def test_run_folders_and_latest(tmp_path):
    import datetime as dt

    from cfbench.records import runs

    now = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    a = runs.new_run_dir("heart", tmp_path, now)
    assert a == tmp_path / "heart" / "20250102T030405Z"
    a.mkdir(parents=True)
    (a / "run.json").write_text(json.dumps({"config": {"methods": "dice"}, "pairs": [["dice", "random"]]}))
    b = runs.new_run_dir("heart", tmp_path, now)
    assert b.name == "20250102T030405Z-2"
    later = runs.new_run_dir("ai-readi", tmp_path, now + dt.timedelta(seconds=1))
    later.mkdir(parents=True)
    (later / "run.json").write_text("{}")
    assert runs.latest_run(tmp_path) == later
    assert runs.latest_run(tmp_path, "heart") == a
    assert runs.pinned_pairs(a, None) == ("dice", [("dice", "random", ())])
    with pytest.raises(UserError, match="--methods was 'dice', now 'all'"):
        runs.pinned_pairs(a, "all")
    # what the run skipped when it started stays on its summary after a --resume
    assert runs.earlier_skipped(a) == {}
    (a / "summary.json").write_text(json.dumps({"skipped_methods": {"api-zeroshot": "set CFBENCH_API_BASE"}}))
    assert runs.earlier_skipped(a) == {"api-zeroshot": "set CFBENCH_API_BASE"}
    (a / "summary.json").write_text("{not json")
    assert runs.earlier_skipped(a) == {}


@pytest.mark.slow
def test_readme_commands_in_order_and_leaderboard_of_the_latest_run(tmp_path):
    common = ["run", "--task", "breast-cancer", "--methods", "nearest-neighbour", "--n-queries", "2"]
    first = cli(*common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = cli(*common, "--k", "2", cwd=tmp_path)  # used to stop: "--out out already holds a run"
    assert second.returncode == 0, second.stderr
    folders = sorted((tmp_path / "runs" / "breast-cancer").iterdir())
    assert len(folders) == 2
    assert f"run folder: {Path('runs') / 'breast-cancer' / folders[-1].name}" in second.stderr
    lb = cli("leaderboard", "--format", "json", cwd=tmp_path)
    assert lb.returncode == 0, lb.stderr
    assert json.loads(lb.stdout)["k"] == 2  # the latest run
    # a run without summary.json yet (running or interrupted) shows what is done
    (folders[-1] / "summary.json").unlink()
    lb = cli("leaderboard", str(folders[-1]), "--format", "json", cwd=tmp_path)
    assert lb.returncode == 0, lb.stderr
    assert "not finished" in lb.stderr
    assert json.loads(lb.stdout)["methods"]["nearest-neighbour"]["all"]["n_queries"] == 4
    # --resume keeps the method list and refuses another one
    r = cli(*common[:4], "dice,nearest-neighbour", "--n-queries", "2", "--k", "2", "--resume",
            cwd=tmp_path)
    assert r.returncode == 2 and "--methods was 'nearest-neighbour'" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 + r.stderr.count("run folder")


@pytest.mark.slow
def test_version_and_help_show_defaults_without_markup():
    v = cli("--version")
    assert v.returncode == 0 and v.stdout.startswith("cfbench ")
    h = cli("--help")
    assert "``" not in h.stdout
    r = cli("run", "--help")
    text = " ".join(r.stdout.split())
    assert f"(default: {config.DEFAULT_BUDGET})" in text and "(default: 1)" in text


@pytest.mark.slow
def test_more_queries_than_the_data_allow_says_so(tmp_path):
    r = cli("run", "--task", "breast-cancer", "--methods", "nearest-neighbour", "--n-queries",
            "1000", "--out", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr
    assert "--n-queries 1000 is more than the test split has" in " ".join(r.stderr.split())


# ----------------------------------------------------------------------------- tables


def test_tables_are_readable_at_80_columns():
    from rich.console import Console

    from cfbench.report.board import print_table

    board = json.loads((Path(__file__).parents[2] / "leaderboard" / "ai-readi.json").read_text())
    buf = io.StringIO()
    print_table(board, console=Console(file=buf, width=80))
    out = buf.getvalue()
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out
    for header in ("method", "validity", "L1/MAD", "+cat", "#changed", "LOF", "≤ p95", "s/query"):
        assert header in out
    assert "llm-zeroshot:freetext" in out and "failures: " in out
    wide = io.StringIO()
    print_table(board, wide=True, console=Console(file=wide, width=80))
    assert "HEOM" in wide.getvalue() and "…" not in wide.getvalue()


def test_a_spread_from_one_seed_prints_as_a_dash():
    from cfbench.report.augment import to_markdown

    row = {"scenario": "A", "method": "m", "cfs": "all", "n_seeds": 1, "n_added": 3.0,
           "f1_recovered_rel": 0.5}
    for m in ("f1", "macro_f1", "balanced_accuracy", "f1_recovered", "macro_f1_recovered"):
        row[m], row[f"{m}_std"] = 0.5, 0.0
    line = to_markdown([row]).splitlines()[-1]
    assert "± 0.0" not in line and "50.0 ± –" in line
    row["n_seeds"], row["f1_std"] = 3, 0.01
    assert "50.0 ± 1.0" in to_markdown([row])


def test_workers_keep_transformers_quiet_even_when_preloaded():
    code = ("import transformers, logging\n"
            "from cfbench.execution.schedule import quiet_libraries\n"
            "quiet_libraries()\n"
            "from transformers.utils import logging as tl\n"
            "assert not tl.is_progress_bar_enabled(), 'Loading weights bars still on'\n"
            "assert tl.get_verbosity() >= logging.ERROR, tl.get_verbosity()\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")}
    pytest.importorskip("transformers")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
