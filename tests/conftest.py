"""Shared fixtures: a cache folder per session and ways to put third-party plugins on the path
(a fixture module with a hand-written dist-info, or the example plugin installed by pip)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
#: the submission guide's example plugins (docs/writing-a-plugin.md shows examples/cfbench-shift)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def install_on_path(target: Path, module_file: Path, dist: str, entry_name: str) -> Path:
    """Copy ``module_file`` into ``target`` with a dist-info that registers it as a cfbench plugin."""
    target.mkdir(parents=True, exist_ok=True)
    mod = module_file.stem
    (target / module_file.name).write_text(module_file.read_text())
    info = target / f"{dist}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[cfbench]\n{entry_name} = {mod}\n")
    return target


def install_example(name: str, target: Path) -> Path:
    """``pip install`` the example plugin ``examples/<name>`` from its folder into ``target`` and
    return ``target``; put it on ``PYTHONPATH`` (``plugin_env``) to use the plugin.

    Never into site-packages: every later ``--methods all`` run would pick the plugin up.
    Offline: no dependencies (cfbench is the one, and it is here) and no build isolation, so
    the installed build backend (hatchling, in the ``dev`` extra) builds it.
    """
    require(importlib.util.find_spec("hatchling") is not None,
            "hatchling (the dev extra) to build the example plugin")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(EXAMPLES / name)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    return target


def plugin_env(site: Path) -> dict[str, str]:
    """This process's environment with ``site`` first on ``PYTHONPATH``, for a subprocess
    (``cfbench``, pytest) that should see the plugins installed there."""
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


@pytest.fixture(scope="session")
def example_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/cfbench-shift installed once per session into a temporary folder (the
    ``shift`` method; see ``install_example``); ``plugin_env(site)`` runs commands that see it."""
    return install_example("cfbench-shift", tmp_path_factory.mktemp("example-site"))


def in_ci() -> bool:
    """True when the environment variable CI is set (and not "0" or "false")."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(available: bool, what: str) -> None:
    """Skip when ``what`` is missing; under CI (which installs it) fail instead."""
    if available:
        return
    if in_ci():
        pytest.fail(f"CI is set but {what} is missing; run scripts/setup.sh test", pytrace=False)
    pytest.skip(f"needs {what}", allow_module_level=True)


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep each test session's classifier cache apart from the user's, unless CI shares one."""
    if "CFBENCH_CACHE" not in os.environ:
        os.environ["CFBENCH_CACHE"] = str(tmp_path_factory.mktemp("cfbench-cache"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny torch ops are fastest (and stable on a shared 2-core machine) on one thread."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def faulty_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The misbehaving-generators plugin, visible to this process and its spawned workers."""
    from cfbench.core.plugins import registry

    site = install_on_path(tmp_path / "site", FIXTURES / "cfbench_faulty.py", "cfbench_faulty", "faulty")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    registry.cache_clear()
    yield site
    sys.modules.pop("cfbench_faulty", None)
    registry.cache_clear()


class Evil:
    """Unpickling this runs a shell command that creates ``marker`` (a code-execution probe)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def kill_mid_run(proc, records: Path, at_least: int = 6, within: float = 120) -> int:
    """SIGKILL the process group of a running ``cfbench run`` once ``records`` holds
    ``at_least`` lines (or ``within`` seconds have passed); returns the lines written then."""
    import signal
    import time

    deadline = time.time() + within
    while time.time() < deadline:
        if records.exists() and records.read_text().count("\n") >= at_least:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return records.read_text().count("\n")
