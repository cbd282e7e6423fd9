"""What the end-to-end tests share: run the ``cfbench`` command, and read its one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m cfbench ARGS`` in a fresh process, its output captured as text."""
    return subprocess.run([sys.executable, "-m", "cfbench", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    """The single error line of a user mistake (exit 2, no traceback)."""
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


#: a small, quick run: nearest neighbour on breast cancer, 3 queries per class
RUN = ["run", "--task", "breast-cancer", "--methods", "nearest-neighbour", "--n-queries", "3",
       "--quiet"]


def finished_run(tmp_path_factory) -> Path:  # noqa: ANN001 - pytest's TempPathFactory
    """A finished ``RUN`` folder (records, run.json, summary.json, scores.parquet) to copy."""
    out = tmp_path_factory.mktemp("run") / "out"
    r = cli(*RUN, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out
