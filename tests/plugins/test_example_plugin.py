"""The submission guide's example plugin, examples/cfbench-shift, works as written: the page
shows its files verbatim, it installs from its folder (into a temporary folder, never
site-packages), ``cfbench`` lists it, and it passes its own conformance test."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import cli
from conftest import EXAMPLES, install_example, plugin_env

from cfbench.testing import CHECKS

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-a-plugin.md"
EXAMPLE = EXAMPLES / "cfbench-shift"
FILES = ("pyproject.toml", "cfbench_shift.py", "test_shift.py")


def doc_blocks() -> dict[str, str]:
    """The page's code blocks introduced by a line "`FILE`:" naming one of the example's files."""
    text = DOC.read_text()
    return {m[1]: m[2] for m in re.finditer(r"^`([\w.]+)`:\n\n```\w*\n(.*?)^```$", text, re.M | re.S)
            if m[1] in FILES}


def test_the_page_shows_the_example_files_verbatim():
    blocks = doc_blocks()
    assert sorted(blocks) == sorted(FILES)
    for name in FILES:
        assert blocks[name] == (EXAMPLE / name).read_text(), f"docs and examples/ differ: {name}"
    tree = DOC.read_text().split("```\n", 2)[1]  # the folder tree above the files
    assert all(name in tree for name in FILES)


@pytest.mark.slow
def test_the_example_installs_from_its_folder_and_cfbench_lists_it(tmp_path):
    """Installed into a folder of its own: this process (and so every board run) sees no new
    distribution; with the folder on PYTHONPATH, cfbench lists the method."""
    before = {d.metadata["Name"] for d in importlib.metadata.distributions()}
    site = install_example("cfbench-shift", tmp_path / "site")
    importlib.invalidate_caches()
    assert {d.metadata["Name"] for d in importlib.metadata.distributions()} == before
    assert (site / "cfbench_shift.py").is_file() and list(site.glob("cfbench_shift-*.dist-info"))
    r = cli("list", "methods", env=plugin_env(site))
    assert r.returncode == 0, r.stderr
    assert re.search(r"shift\s+│\s+linear, quadratic\s+│\s+available", r.stdout), r.stdout


@pytest.mark.slow
def test_the_example_passes_its_own_conformance_test(example_plugin_site, tmp_path):
    """Its test_shift.py, run as the page says, finds the installed plugin (a copy of the test
    runs outside the source folder, which pytest would otherwise import the module from)."""
    shutil.copy(EXAMPLE / "test_shift.py", tmp_path)
    r = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                        "test_shift.py"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600, env=plugin_env(example_plugin_site))
    assert r.returncode == 0, r.stdout + r.stderr
    for variant in ("linear", "quadratic"):
        for check in CHECKS:
            if check.__name__ != "check_param_changes":  # only with changes=(key, value)
                assert f"test_shift[shift:{variant}-{check.__name__}] PASSED" in r.stdout, r.stdout
