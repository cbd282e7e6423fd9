"""The plugin surface: in-tree and example plugins import cfbench only through ``cfbench.api``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import cfbench.api as api

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALLOWED = ("cfbench.api", "cfbench.testing")


def _cfbench_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import of cfbench or a cfbench submodule in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            if node.module == "cfbench":  # from cfbench import x: x may be a submodule
                modules = [f"cfbench.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, m) for m in modules if m == "cfbench" or m.startswith("cfbench.")]
    return found


def test_plugins_import_only_the_api():
    files = sorted(PLUGINS.rglob("*.py"))
    assert len(files) > 10, "the in-tree plugins were not found"
    wrong = [f"{p.relative_to(PLUGINS)}:{line}: {m}" for p in files
             for line, m in _cfbench_imports(p) if m not in ALLOWED]
    assert not wrong, "plugins may import cfbench only via cfbench.api:\n" + "\n".join(wrong)


def test_the_example_plugins_import_only_the_api():
    """What the submission guide shows a third party must keep to the rule too."""
    files = sorted(EXAMPLES.rglob("*.py"))
    assert files, "the example plugins were not found"
    wrong = [f"{p.relative_to(EXAMPLES)}:{line}: {m}" for p in files
             for line, m in _cfbench_imports(p) if m not in ALLOWED]
    assert not wrong, "plugins may import cfbench only via cfbench.api:\n" + "\n".join(wrong)


def test_the_check_sees_every_import_form(tmp_path: Path):
    f = tmp_path / "p.py"
    f.write_text("import cfbench.task\nfrom cfbench import phase\nfrom cfbench.api import mad\n"
                 "def g():\n    from cfbench.metrics import mad\n")
    assert _cfbench_imports(f) == [(1, "cfbench.task"), (2, "cfbench.phase"), (3, "cfbench.api"),
                                   (5, "cfbench.metrics")]


@pytest.mark.parametrize("name", api.__all__)
def test_every_api_name_resolves(name: str):
    assert getattr(api, name) is not None


def test_api_lists_its_names_once_and_refuses_others():
    assert sorted(api.__all__) == sorted(api._NAMES) and "hookimpl" in api.__all__
    with pytest.raises(AttributeError, match="may import only"):
        api.Runner  # noqa: B018 - the lookup is the test


def test_a_plugin_registering_loads_no_heavy_module():
    code = ("import sys; from cfbench.api import Capabilities, GeneratorSpec, Param, hookimpl; "
            "print(sorted(m for m in ('cfbench.tasks.spec', 'cfbench.score.metrics', 'sklearn') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
