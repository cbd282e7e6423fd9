"""The plugin system: third-party generators by entry point, unavailable and broken plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, install_on_path

from cfbench.core.plugins import build_registry


def cli(*args: str, env_path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if env_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(env_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "cfbench.cli", *args], capture_output=True,
                          text=True, env=env, timeout=600)


@pytest.mark.slow
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
    assert full["all"]["validity"] >= summary["methods"]["hello-shift:half"]["all"]["all"]["validity"]


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


def test_an_unknown_method_names_the_broken_plugin_or_the_closest_method(tmp_path, monkeypatch):
    from cfbench.core.errors import UserError

    bad = tmp_path / "cfbench_frob.py"
    bad.write_text("import no_such_frobnicator_lib\n")
    monkeypatch.syspath_prepend(str(install_on_path(tmp_path / "site", bad, "cfbench_frob",
                                                    "frobnicate")))
    reg = build_registry()

    def error(name: str) -> str:
        with pytest.raises(UserError) as info:
            reg.generator(name)
        text = str(info.value)
        assert "\n" not in text and text.startswith(f"unknown method {name!r}")
        return text

    for name in ("frobnicate", "frobnicator"):  # named like the plugin that failed to import
        assert ("; plugin 'frobnicate' failed to load: ModuleNotFoundError: No module named "
                "'no_such_frobnicator_lib' (see `cfbench list methods`); valid choices: ") in error(name)
    assert "unknown method 'dicee' (did you mean 'dice'?); valid choices: " in error("dicee")
    assert "plugins that failed to load, one may provide it: 'frobnicate' (" in error("zzqqxx")
    reg.broken.clear()
    assert "unknown method 'zzqqxx'; valid choices: " in error("zzqqxx")


# ----------------------------------------------------------------------------- hostile plugins

HOSTILE = {
    # module name: source of a plugin that misbehaves in one way
    "cfbench_exits": "raise SystemExit(0)\n",
    "cfbench_baseexc": "class Odd(BaseException):\n    pass\n\nraise Odd('odd base exception')\n",
    "cfbench_genwrong": ("from cfbench.api import hookimpl\n\n@hookimpl\n"
                         "def cfbench_generators():\n    return {'not': 'a list'}\n"),
    "cfbench_loadwrong": ("from cfbench.api import hookimpl\n\n@hookimpl\n"
                          "def cfbench_dataset_loaders():\n    return ['not', 'a', 'dict']\n"),
    "cfbench_pathwrong": ("from cfbench.api import hookimpl\n\n@hookimpl\n"
                          "def cfbench_task_paths():\n    return 42\n"),
    "cfbench_cmdraises": ("from cfbench.api import hookimpl\n\n@hookimpl\n"
                          "def cfbench_add_commands(subparsers):\n    raise RuntimeError('no commands')\n"),
    "cfbench_cmdsteal": ("from cfbench.api import hookimpl\n\n@hookimpl\n"
                         "def cfbench_add_commands(subparsers):\n"
                         "    p = subparsers.add_parser('run')\n"
                         "    p.set_defaults(func=lambda args: print('stolen') or 0)\n"),
}


def hostile_site(tmp_path: Path) -> Path:
    """Every hostile plugin above plus the name-stealing one, installed side by side."""
    site = tmp_path / "site"
    install_on_path(site, FIXTURES / "cfbench_hijack.py", "cfbench_hijack", "hijack")
    for mod, src in HOSTILE.items():
        f = tmp_path / f"{mod}.py"
        f.write_text(src)
        install_on_path(site, f, mod, mod.removeprefix("cfbench_"))
    return site


@pytest.mark.slow
def test_hostile_plugins_are_reported_and_the_tool_keeps_working(tmp_path):
    site = hostile_site(tmp_path)
    listed = cli("list", "methods", "--json", env_path=site)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    rows = json.loads(listed.stdout)
    methods = {r["name"]: r for r in rows if not r["name"].startswith("(")}
    assert methods["nearest-neighbour"]["plugin"] == "builtin"  # the built-in wins
    assert methods["hijack-ok"]["available"] and methods["hijack-ok"]["plugin"] == "hijack"
    assert not {"zero-batch", "negative-batch", "text-batch", "no-variants"} & set(methods)
    broken = {r["plugin"]: r["hint"] for r in rows if r["name"].startswith("(plugin ")}
    assert "SystemExit" in broken["exits"] and "odd base exception" in broken["baseexc"]
    assert "cfbench_generators returned dict" in broken["genwrong"]
    assert "cfbench_dataset_loaders returned list" in broken["loadwrong"]
    assert "cfbench_task_paths returned int" in broken["pathwrong"]
    conflicts = "\n".join(r["hint"] for r in rows if r["name"] == "(conflict)")
    for fragment in (
        "method 'nearest-neighbour' of plugin 'hijack' ignored: the name belongs to plugin "
        "'builtin' (built-in)",
        "dataset loader 'sklearn-breast-cancer' of plugin 'hijack' ignored: the name belongs to "
        "plugin 'builtin' (built-in)",
        "method 'zero-batch' of plugin 'hijack' is broken: batch_size must be a positive integer",
        "method 'negative-batch' of plugin 'hijack' is broken: batch_size must be",
        "method 'text-batch' of plugin 'hijack' is broken: batch_size must be",
        "method 'no-variants' of plugin 'hijack' is broken: variants must be a non-empty list",
        "expected a GeneratorSpec, got str",
        "plugin 'hijack': unknown hook 'cfbench_generator' ignored",
    ):
        assert fragment in conflicts, fragment
    assert "add_commands" in broken.get("cmdraises", "")
    # `run` is still cfbench's own, uses the built-in method and loader, and the honest
    # third-party method next to them works
    out = tmp_path / "out"
    run = cli("run", "--task", "breast-cancer", "--methods", "nearest-neighbour,hijack-ok",
              "--n-queries", "3", "--out", str(out), "--quiet", env_path=site)
    assert run.returncode == 0, run.stderr
    assert "stolen" not in run.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"]["nearest-neighbour"]["all"]["status_counts"]["ok"] == 6
    assert summary["methods"]["hijack-ok"]["all"]["status_counts"]["ok"] == 6
    assert summary["classifier"]["accuracy"] > 0.9


def test_stolen_command_is_refused(tmp_path, monkeypatch):
    site = hostile_site(tmp_path)
    monkeypatch.syspath_prepend(str(site))
    try:
        import argparse

        from cfbench.core.plugins import add_commands

        reg = build_registry()
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        own = sub.add_parser("run")
        add_commands(reg, sub)
        assert sub.choices["run"] is own
        assert ("conflicting subparser" in reg.broken.get("cmdsteal", "")  # Python >= 3.11
                or "command 'run' of plugin 'cmdsteal' ignored: the name is taken" in reg.conflicts)
        assert reg.loaders["sklearn-breast-cancer"].__module__ == "cfbench.tasks.loaders"
    finally:
        for mod in ["cfbench_hijack", *HOSTILE]:
            sys.modules.pop(mod, None)
