"""The run folder under attack: concurrent runs, deleted or garbled run.json, corrupt records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import RUN, cli, finished_run, one_error_line

from cfbench.records.store import RECORDS, RUN_INFO, load_records, lock_run_dir, release_run_dir


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished k=1 run (6 records) to copy for each attack."""
    return finished_run(tmp_path_factory)


def copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in (RECORDS, RUN_INFO):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


@pytest.mark.slow
def test_a_second_process_on_a_locked_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    lock_run_dir(out)  # this test process plays the first cfbench run
    try:
        line = one_error_line(cli(*RUN, "--out", str(out), "--resume"))
        assert line.endswith(f"run folder {out} is in use by another cfbench process (pid {os.getpid()})")
        assert not (out / RECORDS).exists()
    finally:
        release_run_dir(out)
    assert cli(*RUN, "--out", str(out), "--resume").returncode == 0  # free again: it runs


@pytest.mark.slow
def test_two_concurrent_runs_do_not_both_work(faulty_plugin, tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "cfbench", "run", "--task", "breast-cancer", "--methods",
            "faulty:slow", "--n-queries", "8", "--quiet", "--out", str(out)]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / RECORDS).exists() or not (out / RECORDS).stat().st_size:
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    second = cli(*args[3:], "--resume")
    assert f"is in use by another cfbench process (pid {first.pid})" in one_error_line(second)
    assert first.wait(300) == 0, first.stderr.read()
    recs = [json.loads(line) for line in (out / RECORDS).read_text().splitlines()]
    keys = [(r["method"], r["variant"], r["seed"], r["query_id"]) for r in recs]
    assert len(keys) == len(set(keys)) == 16  # nothing done twice


@pytest.mark.slow
def test_resume_without_run_json_cannot_mix_k(finished, tmp_path):
    out = copy_run(finished, tmp_path / "out")
    (out / RUN_INFO).unlink()
    line = one_error_line(cli(*RUN, "--k", "3", "--out", str(out), "--resume"))
    assert f"{out / RUN_INFO} is missing" in line
    assert {r["k"] for r in load_records(out)} == {1} and len(load_records(out)) == 6


@pytest.mark.slow
def test_resume_with_an_edited_run_json_is_checked_against_the_records(finished, tmp_path):
    out = copy_run(finished, tmp_path / "out")
    info = json.loads((out / RUN_INFO).read_text())
    (out / RUN_INFO).write_text(json.dumps({**info, "k": 3}))
    line = one_error_line(cli(*RUN, "--k", "3", "--out", str(out), "--resume"))
    assert "its records have k 1" in line


@pytest.mark.slow
@pytest.mark.parametrize("garbage", [b"{not json", b"\x00\xff\xfe", b"[1, 2]"])
def test_garbage_run_json_gives_one_line(finished, tmp_path, garbage):
    out = copy_run(finished, tmp_path / "out")
    (out / RUN_INFO).write_bytes(garbage)
    line = one_error_line(cli(*RUN, "--out", str(out), "--resume"))
    assert str(out / RUN_INFO) in line and "start a new --out" in line


@pytest.mark.slow
def test_corrupt_middle_record_is_skipped_reported_and_rerun(finished, tmp_path):
    out = copy_run(finished, tmp_path / "out")
    lines = (out / RECORDS).read_text().splitlines(keepends=True)
    lost = json.loads(lines[2])
    lines[2] = lines[2][: len(lines[2]) // 2] + "\n"  # a torn line in the middle
    (out / RECORDS).write_text("".join(lines))
    r = cli(*RUN, "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    assert "line 3 is not a valid record" in r.stderr and "Traceback" not in r.stderr
    recs = load_records(out)
    assert len(recs) == 6  # the other five kept, the damaged one answered again
    assert any(x["query_id"] == lost["query_id"] and x["variant"] == lost["variant"] for x in recs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"]["nearest-neighbour"]["all"]["n_queries"] == 6


@pytest.mark.slow
def test_a_refused_run_leaves_nothing_that_blocks_a_rerun(tmp_path):
    """A run that fails before its first record (here: a task whose query seed is negative)
    must not leave a records file that makes the next run demand --resume."""
    spec = (Path(__file__).parents[2] / "tasks" / "breast-cancer.toml").read_text()
    spec = spec.replace("[queries]\nper_class = 50\nseed = 0", "[queries]\nper_class = 50\nseed = -1")
    bad = tmp_path / "bad.toml"
    bad.write_text(spec.replace('name = "breast-cancer"', 'name = "neg-seed"'))
    out = tmp_path / "out"
    line = one_error_line(cli("run", "--task", str(bad), "--methods", "nearest-neighbour",
                              "--quiet", "--out", str(out)))
    assert f"{bad}: queries.seed: expected an integer in 0..4294967295, got -1" in line
    r = cli(*RUN, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert len(load_records(out)) == 6


@pytest.mark.slow
def test_out_that_is_a_file_or_read_only(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert "is a file, not a folder" in one_error_line(cli(*RUN, "--out", str(f)))
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    target = ro / "out"
    if os.geteuid() == 0:  # root writes anywhere but in a read-only file system such as /sys
        target = Path("/sys/cfbench-test-out")
        try:
            target.mkdir()
        except OSError:
            pass
        else:
            target.rmdir()
            pytest.skip("no read-only folder available to root here")
    assert "cannot write the run folder" in one_error_line(cli(*RUN, "--out", str(target)))


def test_unwritable_cache_gives_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env = {**os.environ, "CFBENCH_CACHE": str(blocker / "cache")}
    line = one_error_line(cli(*RUN, "--out", str(tmp_path / "out"), env=env))
    assert f"cache folder {blocker / 'cache'} cannot be used" in line and "CFBENCH_CACHE" in line
