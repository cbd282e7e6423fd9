"""The plugin system: third-party generators by entry point, unavailable and broken plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURES, install_on_path

from cfbench.plugins import build_registry


def cli(*args: str, env_path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if env_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(env_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "cfbench.cli", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_third_party_generator_found_by_entry_point_and_run(tmp_path):
    site = install_on_path(tmp_path / "site", FIXTURES / "cfbench_hello.py", "cfbench_hello", "hello")
    listed = cli("list", "methods", "--json", env_path=site)
    assert listed.returncode == 0, listed.stderr
    hello = next(m for m in json.loads(listed.stdout) if m["name"] == "hello-shift")
    assert hello["available"] and hello["plugin"] == "hello" and hello["variants"] == ["half", "full"]

    out = tmp_path / "out"
    run = cli("run", "--task", "breast-cancer", "--methods", "hello-shift", "--n-queries", "4",
              "--out", str(out), "--quiet", env_path=site)
    assert run.returncode == 0, run.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"hello-shift:half", "hello-shift:full"}
    full = summary["methods"]["hello-shift:full"]["all"]
    assert full["n_queries"] == 8 and full["status_counts"]["ok"] == 8
    # moving all the way to the class mean flips more queries than moving half-way
    assert full["all"]["valid"] >= summary["methods"]["hello-shift:half"]["all"]["all"]["valid"]


def test_missing_dependency_is_listed_with_install_command(faulty_plugin):
    reg = build_registry()
    ok, hint = reg.generator("needs-missing-lib").status()
    assert not ok
    assert hint == "missing surely_not_an_installed_module_xyz: pip install 'cfbench-harness[missing]'"
    assert reg.generator("nearest-neighbour").status() == (True, "")


def test_a_broken_plugin_never_breaks_the_others(tmp_path, monkeypatch):
    bad = tmp_path / "cfbench_broken.py"
    bad.write_text("raise ImportError('this plugin is broken on purpose')\n")
    site = install_on_path(tmp_path / "site", bad, "cfbench_broken", "broken")
    monkeypatch.syspath_prepend(str(site))
    reg = build_registry()
    assert "nearest-neighbour" in reg.generators
    assert "broken on purpose" in reg.broken["broken"]
    listed = cli("list", "methods", "--json", env_path=site)
    assert listed.returncode == 0
    rows = json.loads(listed.stdout)
    assert any(r["name"] == "nearest-neighbour" and r["available"] for r in rows)
    assert any("broken on purpose" in r["hint"] for r in rows)
