"""Under CI a missing optional dependency fails its tests instead of silently skipping them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

# Hide ray from importlib.util.find_spec (a None entry in sys.modules reads as "not installed").
NO_RAY = "import sys; sys.modules['ray'] = None; import pytest; sys.exit(pytest.main(sys.argv[1:]))"


def _pytest(args: list[str], ci: str | None, path: str | None = None,
            code: str = "import sys, pytest; sys.exit(pytest.main(sys.argv[1:]))"):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-c", code, "-q", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=TESTS.parent)


@pytest.mark.slow
@pytest.mark.parametrize("ci, failed", [(None, False), ("false", False), ("true", True)])
def test_missing_ray_skips_locally_and_fails_under_ci(ci, failed):
    r = _pytest([str(TESTS / "execution" / "test_ray_executor.py")], ci, code=NO_RAY)
    out = r.stdout + r.stderr
    if failed:
        assert r.returncode not in (0, 5) and "CI is set but the ray extra" in out, out
    else:
        assert r.returncode in (0, 5) and "1 skipped" in out and "error" not in out.lower(), out


@pytest.mark.slow
@pytest.mark.parametrize("ci, failed", [(None, False), ("true", True)])
def test_missing_chromium_skips_locally_and_fails_under_ci(ci, failed, tmp_path):
    r = _pytest([str(TESTS / "report" / "test_report.py"), "-k", "real_browser"], ci, path=str(tmp_path))
    out = r.stdout + r.stderr
    if failed:
        assert r.returncode != 0 and "CI is set but a system Chromium" in out, out
        assert "2 errors" in out, out
    else:
        assert r.returncode == 0 and "2 skipped" in out, out
