"""Runner: faults are recorded and the run goes on; kill -9 + resume loses and duplicates nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import kill_mid_run

from cfbench.execution.config import RunConfig
from cfbench.execution.orchestrator import execute
from cfbench.execution.select import resolve_methods
from cfbench.execution.worker import normalise_result
from cfbench.records.store import RunStore, load_records
from cfbench.tasks.spec import Task, resolve_spec


@pytest.fixture(scope="module")
def task() -> Task:
    return Task.load(resolve_spec("breast-cancer"))


def _run(task: Task, methods: str, out: Path, **kw) -> list[dict]:
    cfg = RunConfig(task="breast-cancer", methods=methods, n_queries=kw.pop("n_queries", 2),
                    out=out, **kw)
    pairs, _ = resolve_methods(methods)
    execute(cfg, task, pairs)
    return load_records(out)


@pytest.mark.slow
def test_faults_are_recorded_and_the_run_goes_on(task, faulty_plugin, tmp_path):
    methods = ",".join(f"faulty:{v}" for v in (
        "fit-raises", "raises", "hangs", "kills-itself", "nan", "strings",
        "unknown-columns", "wrong-shape", "not-a-result", "ok")) + ",nearest-neighbour"
    recs = _run(task, methods, tmp_path / "run", timeout=1.0, grace=2.0, jobs=2)
    by = {}
    for r in recs:
        by.setdefault(r["variant"] if r["method"] == "faulty" else r["method"], []).append(r)
    assert all(len(v) == 4 for v in by.values()), {k: len(v) for k, v in by.items()}  # 2 per class
    expect = {
        "fit-raises": ("error", "boom in fit"),
        "raises": ("error", "boom in generate"),
        "hangs": ("timeout", "hard timeout"),
        "kills-itself": ("error", "died"),
        "nan": ("invalid_output", "NaN"),
        "strings": ("invalid_output", "not numeric"),
        "unknown-columns": ("invalid_output", "unknown column 'bogus'"),
        "wrong-shape": ("invalid_output", "shape"),
        "not-a-result": ("invalid_output", "expected QueryResult"),
        "ok": ("ok", ""),
        "nearest-neighbour": ("ok", ""),
    }
    for name, (status, fragment) in expect.items():
        for r in by[name]:
            assert r["status"] == status, (name, r["status"], r["reason"])
            assert fragment in r["reason"], (name, r["reason"])
            assert (r["n_cfs"] > 0) == (status == "ok")


def test_every_row_carries_provenance(task, tmp_path):
    rec = _run(task, "nearest-neighbour", tmp_path / "run")[0]
    prov = rec["provenance"]
    assert prov["task_hash"] == task.spec.hash and prov["seed"] == 0
    assert {"cfbench", "python", "host", "cpu", "cpu_flags", "environment_sha256", "libraries",
            "data_source"} <= set(prov)
    assert "scikit-learn" in prov["libraries"]


def test_every_row_carries_its_query_values(task, tmp_path):
    # the HTML report shows query -> CF from the run folder alone, without the task's data
    recs = _run(task, "nearest-neighbour", tmp_path / "run")
    for rec in recs:
        expect = task.X_test.loc[rec["query_id"], task.schema.names].to_numpy(float).tolist()
        assert rec["query"] == expect


def test_same_seed_same_results(task, faulty_plugin, tmp_path):
    a = _run(task, "faulty:slow", tmp_path / "a", seeds=(3,))
    b = _run(task, "faulty:slow", tmp_path / "b", seeds=(3,))
    c = _run(task, "faulty:slow", tmp_path / "c", seeds=(4,))
    key = lambda rs: sorted((r["query_id"], json.dumps(r["cfs"])) for r in rs)  # noqa: E731
    assert key(a) == key(b)
    assert key(a) != key(c)


def test_normalise_rejects_garbage():
    from cfbench.core.generator import QueryResult

    cols = ["a", "b"]
    assert normalise_result(QueryResult.ok([[1, 2], [3, 4], [5, 6]]), cols, 2)["cfs"] == [[1, 2], [3, 4]]
    assert normalise_result(QueryResult("weird"), cols, 1)["status"] == "invalid_output"
    assert normalise_result(QueryResult.ok([[1, float("inf")]]), cols, 1)["status"] == "invalid_output"
    assert normalise_result(QueryResult.ok([]), cols, 1)["status"] in ("invalid_output", "not_found")
    assert normalise_result(QueryResult.not_found("none"), cols, 1) == {
        "status": "not_found", "cfs": [], "reason": "none", "raw": None, "extra": {}}


def test_normalise_flags_values_a_feature_cannot_take():
    """heart-like codes: cp = 3.29, fbs = 0.072 and a fractional integer age are kept and
    scored, and the record says which values they are (the scoring counts them as violations)."""
    from cfbench.core.generator import QueryResult
    from cfbench.core.schema import Feature, FeatureSchema

    schema = FeatureSchema((Feature("age", integer=True),
                            Feature("cp", kind="categorical", categories=(1.0, 2.0, 3.0, 4.0)),
                            Feature("fbs", kind="categorical", categories=(0.0, 1.0))))
    cols = schema.names
    out = normalise_result(QueryResult.ok([[54, 3.29, 0.072], [54.5, 2, 1], [54, 2, 1]]), cols, 3,
                     schema=schema)
    assert out["status"] == "ok" and len(out["cfs"]) == 3
    assert out["flags"] == ["CF 0: cp = 3.29 is not one of its codes (1, 2, 3, 4)",
                            "CF 0: fbs = 0.072 is not one of its codes (0, 1)",
                            "CF 1: age = 54.5 is not an integer"]
    assert normalise_result(QueryResult.ok([[54, 2, 1]]), cols, 1, schema=schema)["flags"] == []


def test_normalise_accepts_only_real_finite_distinct_cfs():
    import numpy as np
    import pandas as pd

    from cfbench.core.generator import QueryResult

    cols = ["a", "b"]
    df = pd.DataFrame([["1.5", "2"]], columns=cols)
    assert normalise_result(QueryResult.ok(df), cols, 1)["status"] == "invalid_output"  # numeric strings
    assert normalise_result(QueryResult.ok([["1.5", "2"]]), cols, 1)["status"] == "invalid_output"
    assert normalise_result(QueryResult.ok(np.array([[1 + 0j, 2]])), cols, 1)["status"] == "invalid_output"
    assert normalise_result(QueryResult.ok([[1 + 2j, 2]]), cols, 1)["status"] == "invalid_output"
    assert normalise_result(QueryResult.ok([[10**400, 2]]), cols, 1)["status"] == "invalid_output"
    bounds = (np.array([-10.0, -10]), np.array([10.0, 10]))
    huge = normalise_result(QueryResult.ok([[1e308, 2]]), cols, 1, bounds)
    assert huge["status"] == "invalid_output" and "envelope" in huge["reason"]
    assert normalise_result(QueryResult.ok([[9.5, 2]]), cols, 1, bounds)["status"] == "ok"
    dup = normalise_result(QueryResult.ok([[1, 2], [1, 2], [3, 4], [1, 2]]), cols, 3)
    assert dup["cfs"] == [[1, 2], [3, 4]] and "dropped 2 duplicate CFs" in dup["reason"]


def test_normalise_makes_extra_strict_json():
    import threading

    from cfbench.core.generator import QueryResult
    from cfbench.core.strict_json import loads_strict

    loop: dict = {"n": float("nan")}
    loop["me"] = loop
    extra = {"lock": threading.Lock(), (1, 2): "t", 3: float("inf"), "loop": loop,
             "big": 10**5000, "fine": [1, "x"]}
    out = normalise_result(QueryResult.ok([[1, 2]], extra=extra), ["a", "b"], 1)
    assert out["status"] == "ok" and "extra made JSON-safe" in out["reason"]
    text = json.dumps(out, allow_nan=False)  # raises on anything that is not strict JSON
    back = loads_strict(text)["extra"]
    assert back["fine"] == [1, "x"] and back["3"] is None and back["loop"]["n"] is None
    assert back["loop"]["me"] == "<circular reference>" and back["lock"] == "<lock>"


def test_store_writes_strict_json(tmp_path):
    from cfbench.core.strict_json import loads_strict

    store = RunStore(tmp_path)
    loop: dict = {}
    loop["loop"] = loop
    store.append({"method": "m", "variant": "v", "seed": 0, "query_id": 1, "seconds": float("nan"),
                  "x": float("-inf"), "extra": {(1, 2): loop}})
    store.close()
    rec = loads_strict((tmp_path / "records.jsonl").read_text())
    assert rec["seconds"] is None and rec["x"] is None and rec["extra"]["(1, 2)"]["loop"]


def test_store_drops_a_torn_last_line(tmp_path):
    store = RunStore(tmp_path)
    store.append({"method": "m", "variant": "v", "seed": 0, "query_id": 1})
    store.close()
    with open(tmp_path / "records.jsonl", "a") as fh:
        fh.write('{"method": "m", "variant": "v", "se')  # what kill -9 mid-write leaves
    store = RunStore(tmp_path)
    store.append({"method": "m", "variant": "v", "seed": 0, "query_id": 2})
    store.close()
    assert [r["query_id"] for r in load_records(tmp_path)] == [1, 2]


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cfbench.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted(faulty_plugin, tmp_path):
    common = ["run", "--task", "breast-cancer", "--methods", "faulty:slow,nearest-neighbour",
              "--n-queries", "8", "--seeds", "0,1", "--quiet"]
    full = _cli(*common, "--out", str(tmp_path / "full"))
    assert full.wait(300) == 0, full.stderr.read()

    out = tmp_path / "killed"
    proc = _cli(*common, "--out", str(out))
    records = out / "records.jsonl"
    n_before = kill_mid_run(proc, records)
    assert 0 < n_before < 64, "the kill should land mid-run"

    again = _cli(*common, "--out", str(out))
    assert again.wait(60) == 2 and "--resume" in again.stderr.read()
    resumed = _cli(*common, "--out", str(out), "--resume")
    assert resumed.wait(300) == 0, resumed.stderr.read()

    def rows(d: Path) -> list[tuple]:
        return sorted((r["method"], r["variant"], r["seed"], r["query_id"], r["status"],
                       json.dumps(r["cfs"])) for r in load_records(d))

    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == len({json.dumps(json.loads(x)["query_id"]) + json.loads(x)["method"]
                              + json.loads(x)["variant"] + str(json.loads(x)["seed"]) for x in lines})
    assert rows(out) == rows(tmp_path / "full")
    assert len(rows(out)) == 2 * 16 * 2
