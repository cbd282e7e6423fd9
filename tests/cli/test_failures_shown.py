"""What `cfbench run` shows a plugin author when their method fails: a ✗ line with the first
reason and the log holding the traceback, and the plugin that failed to import by name."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from cli_helpers import cli, one_error_line
from conftest import FIXTURES, install_on_path

from cfbench.execution.config import Cell, RunConfig
from cfbench.execution.workerproc import log_name


def _display(out: Path):
    from rich.console import Console

    from cfbench.cli.progress import ProgressDisplay

    buf = io.StringIO()
    disp = ProgressDisplay(Console(file=buf, width=300), plain=True, clock=lambda: 0.0)
    return disp, buf


def _rec(status: str, reason: str = "") -> dict:
    return {"status": status, "cfs": [[1.0]] if status == "ok" else [], "target": 1, "k": 1,
            "seconds": 0.1, "reason": reason}


def test_a_cell_whose_every_query_failed_is_marked_with_its_first_reason(tmp_path):
    failing, mixed, empty = (Cell("gs-broken", "default", 0), Cell("dice", "random", 0),
                             Cell("nice", "none", 0))
    log = tmp_path / "logs" / log_name(failing.label, failing.seed)
    log.parent.mkdir()
    log.write_text("Traceback …\n")
    disp, buf = _display(tmp_path)
    with disp:
        disp.plan([(failing, [0, 1]), (mixed, [0, 1]), (empty, [0])], RunConfig(task="t", out=tmp_path))
        for cell, recs in ((failing, [_rec("error", "fit failed: KeyError: 'x' at gs/fit.py:12"),
                                      _rec("timeout", "later")]),
                           (mixed, [_rec("ok"), _rec("error", "boom")]),
                           (empty, [_rec("not_found", "none exists")])):
            disp.start(cell, len(recs))
            for r in recs:
                disp.record(cell, r)
            disp.finish(cell)
    lines = buf.getvalue().splitlines()
    bad = next(x for x in lines if "gs-broken" in x)
    assert bad.startswith("✗ gs-broken seed 0  ok 0/2")
    assert bad.endswith(f" · error: fit failed: KeyError: 'x' at gs/fit.py:12 · log: {log}")
    assert any(x.startswith("✓ dice:random seed 0  ok 1/2") and "boom" not in x for x in lines)
    assert any(x.startswith("✓ nice:none seed 0  ok 0/1") for x in lines)  # an answer, no failure


@pytest.mark.slow
def test_run_shows_the_plugins_line_keeps_the_traceback_and_names_a_plugin_that_failed(tmp_path):
    site = install_on_path(tmp_path / "site", FIXTURES / "cfbench_brokenfit.py",
                           "cfbench_brokenfit", "brokenfit")
    frob = tmp_path / "cfbench_frob.py"
    frob.write_text("import no_such_frobnicator_lib\n")
    install_on_path(site, frob, "cfbench_frob", "frobnicate")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}

    out = tmp_path / "out"
    r = cli("run", "--task", "breast-cancer", "--methods", "broken-fit:fit", "--n-queries", "2",
            "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr  # a failing generator costs its queries, not the run
    line = next(x for x in r.stderr.splitlines() if "broken-fit:fit seed 0" in x)
    log = out / "logs" / "broken-fit_fit-seed0.log"
    assert line.startswith("✗ broken-fit:fit seed 0") and f" · log: {log}" in line, line
    assert "error: fit failed: KeyError: 'no_such_column' at cfbench_brokenfit.py:" in line
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and 'cfbench_brokenfit.py", line' in text
    rec = json.loads((out / "records.jsonl").read_text().splitlines()[0])
    assert rec["provenance"]["plugin_distribution"] == {"name": "cfbench_brokenfit", "version": "0.1"}

    err = one_error_line(cli("run", "--task", "breast-cancer", "--methods", "frobnicate",
                             "--out", str(tmp_path / "none"), env=env))
    assert ("unknown method 'frobnicate'; plugin 'frobnicate' failed to load: ModuleNotFoundError: "
            "No module named 'no_such_frobnicator_lib'") in err
