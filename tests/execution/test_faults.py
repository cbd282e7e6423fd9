"""Fault injection: every misbehaviour of a generator costs only its own queries.

Each variant of the hostile ``faulty`` plugin runs beside the well-behaved, deterministic
``nearest-neighbour`` on a small task.  For every variant the run completes, the neighbour's
records equal those of a clean run of it alone, the summary (strict JSON) counts the failure,
and nothing the generator spawned survives.  Signals to the main process are covered too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from conftest import FIXTURES, install_on_path

from cfbench.core.strict_json import loads_strict
from cfbench.execution.config import RunConfig
from cfbench.execution.orchestrator import execute
from cfbench.execution.select import resolve_methods
from cfbench.records.store import load_records, write_json_atomic
from cfbench.score.summary import summarize
from cfbench.tasks.spec import Task, resolve_spec

#: variant -> (status of each of its queries, fragment of the reason)
EXPECT = {
    "ok": ("ok", ""),
    "fit-raises": ("error", "boom in fit"),
    "raises": ("error", "boom in generate"),
    "hangs": ("timeout", "hard timeout"),
    "kills-itself": ("error", "died"),
    "nan": ("invalid_output", "NaN"),
    "inf": ("invalid_output", "infinite"),
    "huge": ("invalid_output", "envelope"),
    "huge-negative": ("invalid_output", "envelope"),
    "huge-int": ("invalid_output", "not numeric"),
    "strings": ("invalid_output", "not numeric"),
    "numeric-strings": ("invalid_output", "not numeric"),
    "complex": ("invalid_output", "not numeric"),
    "unknown-columns": ("invalid_output", "unknown column 'bogus'"),
    "wrong-shape": ("invalid_output", "shape"),
    "not-a-result": ("invalid_output", "expected QueryResult"),
    "not-found": ("not_found", "never finds one"),
    "nothing": ("invalid_output", "0 results for 1 queries"),
    "wrong-count": ("invalid_output", "2 results for 1 queries"),
    "duplicates": ("ok", "dropped 1 duplicate CFs"),
    "unpicklable-extra": ("ok", "extra made JSON-safe"),
    "circular-extra": ("ok", "circular reference"),
    "bad-keys-extra": ("ok", "non-string key"),
    "bad-reason": ("invalid_output", "reason cannot be turned into text"),
    "prints": ("ok", ""),
    "spawns": ("ok", ""),
    "spawns-hangs": ("timeout", "hard timeout"),
    "semaphore-hangs": ("timeout", "hard timeout"),
    "exits": ("error", "SystemExit"),
    "os-exit": ("error", "exit code 7"),
    "keyboard-interrupt": ("error", "KeyboardInterrupt"),
    "kills-group": ("error", "died"),
}
#: fields that may differ between two runs of a deterministic method
VOLATILE = {"seconds", "fit_seconds", "provenance", "batch_size"}
K = 2


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The faulty plugin for this module's tests; a marker env var tags every child process."""
    site = install_on_path(tmp_path_factory.mktemp("site"), FIXTURES / "cfbench_faulty.py",
                           "cfbench_faulty", "faulty")
    from cfbench.core.plugins import registry

    marker = f"cfbench-test-{uuid.uuid4().hex}"
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(site))
        mp.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
        mp.setenv("CFBENCH_TEST_MARKER", marker)
        registry.cache_clear()
        yield site, marker
    sys.modules.pop("cfbench_faulty", None)
    registry.cache_clear()


@pytest.fixture(scope="module")
def task() -> Task:
    return Task.load(resolve_spec("breast-cancer"))


def _run(task: Task, methods: str, out: Path) -> list[dict]:
    cfg = RunConfig(task="breast-cancer", methods=methods, n_queries=1, k=K, timeout=1.0,
                    grace=1.0, out=out)
    pairs, _ = resolve_methods(methods)
    execute(cfg, task, pairs)
    return load_records(out)


def _comparable(recs: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in recs),
                  key=lambda r: r["query_id"])


def marked_processes(marker: str, not_children_of: int | None = None) -> list[tuple[int, str]]:
    """(pid, command line) of live processes whose initial environment holds ``marker``.

    ``not_children_of``: leave out that process's direct children (this test process's own
    fork server and resource tracker, which live as long as it does).
    """
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if marker.encode() not in (d / "environ").read_bytes():
                continue
            state, ppid = (d / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            if state == "Z" or int(ppid) == not_children_of:  # a zombie is dead, only not reaped
                continue
            found.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except OSError:
            continue
    return found


def wait_until_gone(marker: str, seconds: float = 10.0,
                    not_children_of: int | None = None) -> list[tuple[int, str]]:
    deadline = time.monotonic() + seconds
    while (left := marked_processes(marker, not_children_of)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _kill_leftovers(marker: str) -> None:
    """Clean up after a failed assertion: only processes carrying this test's marker."""
    for pid, _ in marked_processes(marker, not_children_of=os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture(scope="module")
def clean(task, plugin, tmp_path_factory) -> list[dict]:
    return _comparable(_run(task, "nearest-neighbour", tmp_path_factory.mktemp("clean") / "run"))


def strict_json_files(out: Path) -> list[Path]:
    """Parse every JSON file under ``out`` with a strict parser; return the files parsed."""
    files = [p for p in out.rglob("*") if p.suffix in (".json", ".jsonl")]
    for p in files:
        text = p.read_text()
        for line in text.splitlines() if p.suffix == ".jsonl" else [text]:
            loads_strict(line)
    return files


#: the variants also run in the fast lane (each costs a run of about 2 s; "spawns-hangs" waits out
#: a hard timeout, so it runs with the slow tests)
FAST = {"huge", "numeric-strings", "complex", "duplicates", "circular-extra", "unpicklable-extra",
        "not-found", "prints", "kills-group", "exits"}


@pytest.mark.parametrize("variant", [v if v in FAST else pytest.param(v, marks=pytest.mark.slow)
                                     for v in sorted(EXPECT)])
def test_fault_costs_only_its_own_queries(variant, task, plugin, clean, tmp_path):
    _, marker = plugin
    out = tmp_path / "run"
    try:
        recs = _run(task, f"faulty:{variant},nearest-neighbour", out)
        nn = [r for r in recs if r["method"] == "nearest-neighbour"]
        bad = [r for r in recs if r["method"] == "faulty"]
        assert _comparable(nn) == clean  # complete and identical to a clean run
        assert len(bad) == len(clean)
        status, fragment = EXPECT[variant]
        for r in bad:
            assert r["status"] == status, (r["status"], r["reason"])
            assert fragment in r["reason"], r["reason"]
            assert (r["n_cfs"] > 0) == (status == "ok")
        if variant == "duplicates":
            assert all(r["n_cfs"] == 1 for r in bad)
        summary = summarize(task, recs, {"k": K})
        write_json_atomic(out / "summary.json", summary)
        counts = summary["methods"][f"faulty:{variant}"]["all"]["status_counts"]
        assert counts == {**dict.fromkeys(counts, 0), **Counter(r["status"] for r in bad)}
        assert summary["methods"]["nearest-neighbour"]["all"]["status_counts"]["ok"] == len(clean)
        assert {p.name for p in strict_json_files(out)} >= {"records.jsonl", "run.json",
                                                            "summary.json"}
        assert wait_until_gone(marker, not_children_of=os.getpid()) == []  # nothing spawned lives on
        if variant == "prints":
            log = (out / "logs" / "faulty_prints-seed0.log").read_text()
            assert "GARBAGE-FROM-GENERATE" in log and "RAW-GARBAGE-ON-FD-1" in log
    finally:
        _kill_leftovers(marker)


@pytest.mark.slow
def test_a_method_without_any_cf_is_summarised(task, plugin, tmp_path):
    """Every query failed (here: never found; with DiCE: a tiny timeout): no KeyError 'valid'."""
    recs = _run(task, "faulty:not-found,faulty:hangs", tmp_path / "run")
    s = summarize(task, recs)
    for label in ("faulty:not-found", "faulty:hangs"):
        agg = s["methods"][label]["all"]
        assert agg["n_cfs"] == 0 and agg["all"]["coverage"] == 0.0 and agg["all"]["validity"] == 0.0
        assert agg["found"]["l1_mad"] != agg["found"]["l1_mad"]  # NaN: no CF to measure
        assert agg["valid"]["l1_mad"] != agg["valid"]["l1_mad"] and agg["n_valid"] == 0


def test_one_cf_repeated_k_times_counts_once(task):
    """All-scope validity is per distinct CF: repeating one valid CF k times is not k hits."""
    q = task.queries(n_per_class=1).iloc[0]
    names = task.schema.names
    X = task.X_train[names]
    cf = X[task.predict(X) == int(q["target"])].iloc[0].tolist()  # a valid CF
    rec = {"method": "m", "variant": "default", "seed": 0, "query_id": int(q["query_id"]),
           "source": int(q["source"]), "target": int(q["target"]),
           "direction": f"{int(q['source'])}->{int(q['target'])}", "k": 4, "status": "ok",
           "n_cfs": 4, "cfs": [cf] * 4, "seconds": 0.1}
    agg = summarize(task, [rec])["methods"]["m"]["all"]
    assert agg["n_cfs"] == 1
    assert agg["all"]["validity"] == 0.25  # one valid CF in 4 slots, not 4 in 4


def _cli(args: list[str], marker: str, log: Path) -> subprocess.Popen:
    """Start ``cfbench`` with output to ``log`` (a pipe would block on an orphan holding it)."""
    env = {**os.environ, "CFBENCH_TEST_MARKER": marker}
    with open(log, "w") as fh:
        return subprocess.Popen([sys.executable, "-m", "cfbench", *args], stdout=fh, stderr=fh,
                                env=env)


def _wait_for(pred, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not pred():
        assert time.monotonic() < deadline, "timed out waiting for the run to get going"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -9), (signal.SIGTERM, 143)])
def test_killing_the_run_leaves_no_process(plugin, tmp_path, sig, code):
    """kill -9 / SIGTERM of the main process: fork server, tracker, workers and their children go."""
    marker = f"cfbench-kill-{uuid.uuid4().hex}"
    out = tmp_path / "run"
    proc = _cli(["run", "--task", "breast-cancer", "--methods",
                 "nearest-neighbour,faulty:spawns-hangs,faulty:hangs", "--jobs", "3", "--n-queries", "1",
                 "--timeout", "300", "--out", str(out), "--quiet"], marker, tmp_path / "log")
    try:
        # the neighbour is done, and both hanging workers run (one with its `sleep 300`)
        _wait_for(lambda: (out / "records.jsonl").exists()
                  and (out / "records.jsonl").read_text().count("\n") >= 2
                  and any("sleep" in c for _, c in marked_processes(marker))
                  and len(marked_processes(marker)) >= 6)
        os.kill(proc.pid, sig)
        assert proc.wait(60) == code, (tmp_path / "log").read_text()
        assert wait_until_gone(marker) == []
        recs = load_records(out)  # finished records are kept
        assert [r["method"] for r in recs] == ["nearest-neighbour"] * 2
        if sig == signal.SIGTERM:
            assert "interrupted" in (tmp_path / "log").read_text()
    finally:
        proc.kill()
        _kill_leftovers(marker)


@pytest.mark.slow
def test_cli_run_of_hostile_methods_is_clean(plugin, tmp_path):
    """``cfbench run`` with many hostile methods: exit 0, nothing on stdout, strict JSON only."""
    marker = f"cfbench-cli-{uuid.uuid4().hex}"
    out = tmp_path / "run"
    variants = ("prints", "huge", "circular-extra", "unpicklable-extra", "spawns", "kills-group",
                "exits", "not-found", "fit-raises", "semaphore-hangs")
    env_print = {"CFBENCH_FAULTY_IMPORT_PRINT": "1"}
    try:
        r = subprocess.run(
            [sys.executable, "-m", "cfbench", "run", "--task", "breast-cancer", "--methods",
             ",".join(f"faulty:{v}" for v in variants) + ",nearest-neighbour", "--n-queries", "1",
             "--timeout", "1", "--jobs", "2", "--out", str(out), "--quiet"],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "CFBENCH_TEST_MARKER": marker, **env_print})
        assert r.returncode == 0, r.stderr
        assert r.stdout == ""  # --quiet: nothing of ours, nothing of the plugin's
        assert "leaked semaphore" not in r.stderr  # from the killed worker's lock
        files = {p.name for p in strict_json_files(out)}
        assert {"records.jsonl", "run.json", "summary.json"} <= files
        summary = json.loads((out / "summary.json").read_text())
        assert summary["methods"]["faulty:huge"]["all"]["status_counts"]["invalid_output"] == 2
        lb = subprocess.run([sys.executable, "-m", "cfbench", "leaderboard", str(out), "--format",
                             "json"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **env_print})
        assert lb.returncode == 0, lb.stderr
        assert "GARBAGE" not in lb.stdout
        assert loads_strict(lb.stdout)["task"] == "breast-cancer"
        assert wait_until_gone(marker) == []
    finally:
        _kill_leftovers(marker)


@pytest.mark.slow
def test_every_json_file_cfbench_writes_is_strict(plugin, tmp_path):
    """records.jsonl, run.json, summary.json, augment.json and a board: no NaN/Infinity tokens,
    though the run has failed fits (NaN seconds), k = 1 (NaN diversity) and no-CF methods."""
    from cfbench.report import augment as augment_report
    from cfbench.report import board as leaderboard

    out = tmp_path / "run"
    run = subprocess.run(
        [sys.executable, "-m", "cfbench", "run", "--task", "breast-cancer", "--methods",
         "nearest-neighbour,faulty:fit-raises,faulty:not-found", "--n-queries", "2", "--out",
         str(out), "--quiet"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "NaN" in json.dumps(summarize(Task.load(resolve_spec("breast-cancer")),
                                         load_records(out)))  # there is something to convert
    aug = subprocess.run(
        [sys.executable, "-m", "cfbench", "augment", "--task", "breast-cancer", "--methods",
         "nearest-neighbour", "--scenarios", "A", "--seeds", "0,1", "--max-per-class", "2",
         "--out", str(tmp_path / "aug"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert aug.returncode == 0, aug.stderr
    board = leaderboard.build_board(out, tmp_path / "aug")
    leaderboard.write_board(board, tmp_path / "board")
    files = {p.name for p in strict_json_files(tmp_path)}
    assert {"records.jsonl", "run.json", "summary.json", "augment.json", "breast-cancer.json"} <= files
    assert augment_report.to_markdown(augment_report.load(tmp_path / "aug")["aggregate"])  # reads nulls back
    assert leaderboard.to_markdown(leaderboard.load_summary(out))


#: how the pbomb plugin's preload module misbehaves at import -> (status of the method's
#: queries, fragments of their reason: the module and what happened)
PRELOAD_FAULTS = {
    "raise": ("error", ("preload module 'pbomb_heavy' failed to import",
                        "OSError: libtorch_cpu.so")),
    "exit": ("error", ("while importing preload module 'pbomb_heavy'", "exit code 3")),
    "hang": ("timeout", ("fit exceeded 5 s while importing preload module 'pbomb_heavy'",)),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(PRELOAD_FAULTS))
def test_failing_preload_costs_only_its_method(fault, plugin, clean, tmp_path):
    """A method whose ``preload`` module raises, calls ``os._exit`` or hangs at import (first in
    the workers' fork server, then in its own worker) fails alone, with the module named;
    nearest-neighbour beside it gets a clean run's records, the run a summary and exit 0."""
    site = install_on_path(tmp_path / "site", FIXTURES / "cfbench_pbomb.py", "cfbench_pbomb",
                           "pbomb")
    (site / "pbomb_heavy.py").write_text((FIXTURES / "pbomb_heavy.py").read_text())
    marker = f"cfbench-preload-{uuid.uuid4().hex}"
    out = tmp_path / "run"
    env = {**os.environ, "CFBENCH_TEST_MARKER": marker, "CFBENCH_PBOMB": fault,
           "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    try:
        r = subprocess.run(
            [sys.executable, "-m", "cfbench", "run", "--task", "breast-cancer", "--methods",
             "nearest-neighbour,pbomb", "--n-queries", "1", "--k", str(K), "--timeout", "1",
             "--fit-timeout", "5", "--jobs", "2", "--out", str(out), "--quiet"],
            capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr
        recs = load_records(out)
        assert _comparable([r for r in recs if r["method"] == "nearest-neighbour"]) == clean
        bad = [r for r in recs if r["method"] == "pbomb"]
        status, fragments = PRELOAD_FAULTS[fault]
        assert len(bad) == len(clean)
        for rec in bad:
            assert rec["status"] == status, rec["reason"]
            assert all(f in rec["reason"] for f in fragments), rec["reason"]
        counts = json.loads((out / "summary.json").read_text())["methods"]["pbomb"]["all"]
        assert counts["status_counts"][status] == len(bad)
        assert wait_until_gone(marker) == []  # a hung fork server or worker is not left behind
    finally:
        _kill_leftovers(marker)
