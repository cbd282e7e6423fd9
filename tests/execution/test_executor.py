"""The executor seam: choosing an executor, and the runner speaking only the handle protocol."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from cfbench.core.errors import UserError
from cfbench.execution.config import Cell, RunConfig
from cfbench.execution.executor import LocalExecutor, executor_name, get_executor
from cfbench.execution.orchestrator import Runner
from cfbench.records.store import RunStore, load_records
from cfbench.tasks.spec import Task, resolve_spec


def test_executor_name_flag_env_default(monkeypatch):
    monkeypatch.delenv("CFBENCH_EXECUTOR", raising=False)
    assert executor_name(None) == "local"
    monkeypatch.setenv("CFBENCH_EXECUTOR", "ray")
    assert executor_name(None) == "ray" and executor_name("local") == "local"  # the flag wins
    monkeypatch.setenv("CFBENCH_EXECUTOR", "dask")
    with pytest.raises(UserError, match=r"\$CFBENCH_EXECUTOR: unknown executor 'dask'; valid choices: local, ray"):
        executor_name(None)
    assert isinstance(get_executor("local"), LocalExecutor)
    with pytest.raises(UserError, match="valid choices: local, ray"):
        get_executor("slurm")
    with pytest.raises(UserError, match="--ray-address '10.0.0.1:6379' needs --executor ray"):
        get_executor("local", address="10.0.0.1:6379")


@pytest.mark.parametrize("args, env, fragment", [
    (["--executor", "spark"], {}, "--executor: unknown executor 'spark'; valid choices: local, ray"),
    ([], {"CFBENCH_EXECUTOR": "spark"}, "$CFBENCH_EXECUTOR: unknown executor 'spark'"),
    (["--ray-address", "127.0.0.1:1"], {"CFBENCH_EXECUTOR": "local"}, "needs --executor ray"),
])
@pytest.mark.slow
def test_bad_executor_is_one_line_exit_2(args, env, fragment, tmp_path):
    import os

    for cmd in ("run", "augment"):
        r = subprocess.run([sys.executable, "-m", "cfbench", cmd, "--task", "heart", "--out",
                            str(tmp_path / cmd), *args], capture_output=True, text=True,
                           timeout=120, env={**os.environ, **env})
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], r.stderr
        assert not (tmp_path / cmd).exists()  # refused before anything ran


class _ElsewhereHandle:
    """A worker on another host: reports its own provenance, answers every query not_found."""

    def __init__(self) -> None:
        self.inbox: list[tuple] = []

    def send(self, msg: tuple) -> None:
        self.inbox.append(msg)

    def recv(self, timeout: float) -> tuple[str, Any]:
        if not self.inbox:
            return "msg", ("fitted", 0.5, {"host": "node-7", "python": "3.99"})
        _, first, rows, *_ = self.inbox.pop()
        out = {"status": "not_found", "cfs": [], "reason": "none", "raw": None, "extra": {}}
        return "msg", ("results", first, [out] * len(rows), 0.0)

    def kill(self) -> None:
        pass

    def stop(self) -> None:
        pass


class _ElsewhereExecutor:
    name = "elsewhere"

    def open(self, task, cfg) -> None:
        pass

    def start(self, task, cell, cfg, threads=0, on_phase=None, on_ready=None) -> _ElsewhereHandle:
        return _ElsewhereHandle()

    def close(self) -> None:
        pass


def test_provenance_is_taken_where_the_cell_runs(tmp_path):
    task = Task.load(resolve_spec("breast-cancer"))
    cfg = RunConfig(task="breast-cancer", out=tmp_path)
    store = RunStore(tmp_path)
    Runner(cfg, task, store, executor=_ElsewhereExecutor()).run_cell(
        Cell("nearest-neighbour", "default", 0), task.queries(2))
    store.close()
    recs = load_records(tmp_path)
    assert len(recs) == 4 and {r["status"] for r in recs} == {"not_found"}
    for r in recs:
        prov = r["provenance"]
        assert prov["host"] == "node-7" and prov["python"] == "3.99"  # the worker's, not ours
        assert prov["task_hash"] == task.spec.hash and prov["seed"] == 0  # the driver's part
        assert r["fit_seconds"] == 0.5


def test_an_unreachable_ray_address_is_refused_before_anything_is_written(tmp_path):
    pytest.importorskip("ray")
    import socket

    from cfbench.execution.orchestrator import execute

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    task = Task.load(resolve_spec("breast-cancer"))
    cfg = RunConfig(task="breast-cancer", out=tmp_path / "run", executor="ray",
                    ray_address=f"127.0.0.1:{port}")
    with pytest.raises(UserError, match=f"--ray-address '127.0.0.1:{port}': no Ray cluster answers"):
        execute(cfg, task, [("nearest-neighbour", "default")])
    assert not (tmp_path / "run").exists()
