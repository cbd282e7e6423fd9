"""The ray executor against a real Ray cluster started here on 127.0.0.1 (never a mock).

One head node (2 CPUs) is shared by the module: same records as the local executor, faults
recorded as with the local executor, a plugin missing on the workers named with its install
command, and ``kill -9`` of the driver then ``--resume`` losing and duplicating nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from conftest import kill_mid_run, require
from test_faults import _kill_leftovers, wait_until_gone

from cfbench.execution.config import Cell, RunConfig
from cfbench.execution.orchestrator import Runner, execute
from cfbench.execution.select import resolve_methods
from cfbench.records.store import RunStore, load_records
from cfbench.tasks.spec import Task, resolve_spec

require(importlib.util.find_spec("ray") is not None, "the ray extra (pip install -e '.[ray]')")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster() -> str:
    """A Ray head node on 127.0.0.1 for this module; only its own processes are ended.

    Token authentication with a fresh token, given to the head and to every driver (this
    process and the CLI subprocesses) through the environment, so no user file is involved.
    """
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    if "ray" in sys.modules:  # Ray reads the mode at import; make an earlier import see it
        from ray._raylet import Config

        Config.initialize("")
    import ray

    port = _free_port()
    temp = tempfile.mkdtemp(prefix="cfbray")  # short: Ray's socket paths live under it
    log = open(Path(temp) / "head.log", "w+")  # noqa: SIM115 - closed below
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--num-cpus", "2",
         "--port", str(port), "--node-ip-address", "127.0.0.1", "--include-dashboard=false",
         "--disable-usage-stats", "--temp-dir", temp, "--block"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # no memory-pressure kills on a shared CI machine: a cell dying of that is recorded
        # as `error` (correctly) but would make the comparisons here flaky.  Ray's own cleanup
        # of a dead worker's process group is off (as in older Ray): the one tested is cfbench's
        env={**os.environ, "RAY_memory_monitor_refresh_ms": "0",
             "RAY_process_group_cleanup_enabled": "0"})
    deadline = time.time() + 180
    while "Ray runtime started" not in Path(log.name).read_text():
        if head.poll() is not None or time.time() > deadline:
            pytest.fail("ray start failed:\n" + Path(log.name).read_text()[-3000:])
        time.sleep(0.5)
    yield f"127.0.0.1:{port}"
    if ray.is_initialized():
        ray.shutdown()
    head.terminate()  # `ray start --block` ends the processes it started on SIGTERM
    try:
        head.wait(90)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
    log.close()
    shutil.rmtree(temp, ignore_errors=True)
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def heart() -> Task:
    return Task.load(resolve_spec("heart"))


def _run(task: Task, methods: str, out: Path, **kw) -> list[dict]:
    cfg = RunConfig(task=task.name, methods=methods, out=out, **kw)
    pairs, _ = resolve_methods(methods)
    execute(cfg, task, pairs)
    return load_records(out)


def _rows(records: list[dict]) -> list[tuple]:
    return sorted((r["method"], r["variant"], r["seed"], r["query_id"], r["status"],
                   json.dumps(r["cfs"])) for r in records)


def test_ray_records_equal_local_records(cluster, heart, tmp_path):
    # dice:random is seeded (DiCE's random_seed = the cell's seed): the same CFs on either side.
    # A roomy budget, so a busy machine cannot turn one side's query into a timeout.
    kw = {"n_queries": 2, "seeds": (0, 1), "budget": 20.0}
    methods = "nearest-neighbour,nice:sparsity,dice:random"
    local = _run(heart, methods, tmp_path / "local", **kw)
    remote = _run(heart, methods, tmp_path / "ray", executor="ray", ray_address=cluster, jobs=2, **kw)
    assert len(local) == 3 * 2 * 4  # methods × seeds × (2 queries per class)
    assert _rows(remote) == _rows(local), [r["reason"] for r in remote if r["status"] != "ok"]
    assert {r["status"] for r in remote} == {"ok"}
    prov = remote[0]["provenance"]
    assert {"host", "python", "libraries", "plugin", "task_hash"} <= set(prov)
    run = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert run["config"]["executor"] == "ray" and run["config"]["ray_address"] == cluster


def test_hung_and_crashing_cells_are_recorded_and_the_run_goes_on(cluster, faulty_plugin, tmp_path):
    task = Task.load(resolve_spec("breast-cancer"))
    methods = "faulty:hangs,faulty:kills-itself,faulty:raises,faulty:fit-raises,faulty:ok"
    recs = _run(task, methods, tmp_path / "run", n_queries=1, timeout=1.0, grace=2.0, jobs=2,
                executor="ray", ray_address=cluster)
    by: dict[str, list[dict]] = {}
    for r in recs:
        by.setdefault(r["variant"], []).append(r)
    expect = {"hangs": ("timeout", "hard timeout"), "kills-itself": ("error", "died"),
              "raises": ("error", "boom in generate"), "fit-raises": ("error", "boom in fit"),
              "ok": ("ok", "")}
    assert {k: len(v) for k, v in by.items()} == dict.fromkeys(expect, 2)
    for variant, (status, fragment) in expect.items():
        for r in by[variant]:
            assert r["status"] == status and fragment in r["reason"], (variant, r["reason"])

    # The same plugin, not visible to the workers: a per-cell error naming the method and
    # the install command; the run is not stopped.
    from cfbench.execution.ray_executor import RayExecutor

    cfg = RunConfig(task=task.name, out=tmp_path / "missing")
    executor = RayExecutor(cluster, ship_env=False)
    executor.open(task, cfg)
    store = RunStore(cfg.out)
    try:
        Runner(cfg, task, store, executor=executor).run_cell(Cell("faulty", "ok", 0), task.queries(1))
    finally:
        store.close()
        executor.close()
    missing = load_records(cfg.out)
    assert len(missing) == 2
    for r in missing:
        assert r["status"] == "error", r["reason"]
        assert "method 'faulty' is not installed on Ray worker" in r["reason"]
        assert "pip install cfbench_faulty" in r["reason"]


def test_a_cells_processes_die_with_its_actor(cluster, faulty_plugin, tmp_path, monkeypatch):
    """What a generator starts (a child and a grandchild ``sleep 300``) is killed with its actor:
    on the hard timeout of a hung cell and at the end of a finished one."""
    marker = f"cfbench-ray-{uuid.uuid4().hex}"
    monkeypatch.setenv("CFBENCH_TEST_MARKER", marker)  # shipped to the actors, inherited below
    task = Task.load(resolve_spec("breast-cancer"))
    try:
        recs = _run(task, "faulty:spawns-hangs,faulty:spawns", tmp_path / "run", n_queries=1,
                    timeout=1.0, grace=2.0, jobs=2, executor="ray", ray_address=cluster)
        assert sorted((r["variant"], r["status"]) for r in recs) == [
            ("spawns", "ok"), ("spawns", "ok"), ("spawns-hangs", "timeout"), ("spawns-hangs", "timeout")]
        assert wait_until_gone(marker) == []
    finally:
        _kill_leftovers(marker)


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cfbench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_kill_9_of_the_driver_then_resume_equals_a_clean_run(cluster, faulty_plugin, tmp_path):
    common = ["run", "--task", "breast-cancer", "--methods", "faulty:slow,nearest-neighbour",
              "--n-queries", "8", "--seeds", "0,1", "--quiet", "--jobs", "2"]
    ray_args = ["--executor", "ray", "--ray-address", cluster]
    full = _cli(*common, "--out", str(tmp_path / "full"))  # the local executor, uninterrupted
    assert full.wait(300) == 0, full.stderr.read()

    out = tmp_path / "killed"
    proc = _cli(*common, *ray_args, "--out", str(out))
    records = out / "records.jsonl"
    n_before = kill_mid_run(proc, records, within=180)
    assert 0 < n_before < 64, "the kill should land mid-run"

    resumed = _cli(*common, *ray_args, "--out", str(out), "--resume")
    assert resumed.wait(300) == 0, resumed.stderr.read()
    keys = [tuple(json.loads(x)[k] for k in ("method", "variant", "seed", "query_id"))
            for x in records.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 2 * 16 * 2  # nothing duplicated, nothing lost
    assert _rows(load_records(out)) == _rows(load_records(tmp_path / "full"))


def _tree(pid: int) -> dict[int, tuple[str, str]]:
    """pid -> (start time, command line) of ``pid`` and every live process below it (Linux)."""
    out: dict[int, tuple[str, str]] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        started = _started(p)
        if p in out or started is None:
            continue
        cmdline = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")
        out[p] = (started, cmdline.decode(errors="replace").strip())
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                pass
    return out


def _started(pid: int) -> str | None:
    """A live process's start time (None for a dead or zombie one): tells a reused pid apart."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in "ZX" else fields[19]


def test_kill_9_of_the_driver_ends_its_local_cluster(faulty_plugin, tmp_path):
    """``kill -9`` of a driver that started its own Ray: within seconds nothing of that cluster
    is left, neither the actors (one hung in a batch) nor Ray's agents (Ray alone: a minute)."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cfbench", "run", "--task", "breast-cancer", "--methods",
         "faulty:hangs,nearest-neighbour", "--n-queries", "1", "--timeout", "300", "--jobs", "2",
         "--executor", "ray", "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    tree: dict[int, tuple[str, str]] = {}
    try:
        deadline = time.monotonic() + 180
        records = out / "records.jsonl"
        while not (records.exists() and records.read_text().count("\n") >= 2  # the neighbour's
                   and any("CellActor" in c for _, c in _tree(proc.pid).values())):  # one hangs
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not get going"
            time.sleep(0.2)
        tree = _tree(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 20
        while (left := [c for p, (t, c) in tree.items() if _started(p) == t]) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left == [], left
    finally:
        proc.kill()
        for p, (t, _) in tree.items():  # after a failure: only this run's processes
            if _started(p) == t:
                os.kill(p, signal.SIGKILL)
