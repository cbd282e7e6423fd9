"""The files that make an install repeat: constraints.txt agrees with pyproject.toml and with
scripts/setup.sh, and a bad CFBENCH_CONSTRAINTS is refused in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

packaging = pytest.importorskip("packaging")
from packaging.requirements import Requirement  # noqa: E402
from packaging.version import Version  # noqa: E402

from cfbench.core.safe_load import load_toml  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROJECT = load_toml(ROOT / "pyproject.toml", "pyproject")["project"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    """``constraints.txt`` as {canonical name: version}; every line is ``name==version``."""
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and name == canonical(name) and Version(version), line
        assert name not in out, f"{name} pinned twice"
        out[name] = version
    return out


def made_for() -> str:
    """The Python version constraints.txt was made for, from its header."""
    found = re.search(r"for Python (\d+\.\d+)", (ROOT / "constraints.txt").read_text())
    assert found is not None, "constraints.txt: no 'for Python X.Y' in its header"
    return found.group(1)


def declared() -> list[Requirement]:
    """The project's own requirements CI installs: core, and the extras all (expanded), dev and
    ray, markers evaluated for the Python that constraints.txt was made for."""
    opt = PROJECT["optional-dependencies"]
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in ("all", "dev", "ray"):
        for r in opt[extra]:
            req = Requirement(r)
            if canonical(req.name) == canonical(PROJECT["name"]):
                reqs += [Requirement(x) for e in req.extras for x in opt[e]]
            else:
                reqs.append(req)
    env = {"extra": "", "python_version": made_for()}
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def test_every_declared_requirement_is_pinned_within_its_range():
    """Raising a floor in pyproject.toml without refreshing constraints.txt fails here."""
    pinned = pins()
    wrong = [f"{r} but constraints.txt has {pinned.get(canonical(r.name))}"
             for r in declared()
             if not r.specifier.contains(pinned.get(canonical(r.name), "0.dev0"), prereleases=True)]
    assert wrong == [], "rerun python scripts/freeze-constraints.py:\n" + "\n".join(wrong)


def test_the_project_and_its_plugins_are_not_pinned():
    assert {canonical(PROJECT["name"]), "cfbench-shift"} & set(pins()) == set()


def test_torch_is_pinned_to_the_setup_scripts_version():
    torch = re.search(r'^TORCH="torch==([^"]+)"$', (ROOT / "scripts" / "setup.sh").read_text(),
                      re.MULTILINE)
    assert torch is not None
    assert pins()["torch"] == torch.group(1)  # no local label: the CPU and CUDA builds both match


def test_a_missing_constraints_file_is_refused_in_one_line(tmp_path):
    env = {**os.environ, "CFBENCH_CONSTRAINTS": str(tmp_path / "nope.txt"),
           "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True,
                       text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == (f"setup: CFBENCH_CONSTRAINTS={tmp_path / 'nope.txt'}: no such "
                                "file; valid: a constraints file, or none"), r.stderr
    assert r.stdout == ""  # refused before anything was installed
