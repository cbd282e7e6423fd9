"""The submission guide of docs/leaderboard.md works as written: its commands, run verbatim in a
folder holding a copy of the committed boards, put the example plugin (examples/cfbench-shift,
installed from its folder) on the heart board, and the result validates."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import plugin_env

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "leaderboard.md"


def guide_commands() -> list[list[str]]:
    """The ``cfbench`` lines of the guide's first bash block, comments dropped.

    Its ``pip install`` and ``pytest`` lines are what ``install_example`` and
    tests/plugins/test_example_plugin.py do (into a temporary folder, not site-packages)."""
    section = GUIDE.read_text().split("## Submitting a new generator", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [argv for argv in lines if argv and argv[0] == "cfbench"]


def test_the_guide_names_the_steps():
    steps = [argv[1] for argv in guide_commands()]
    assert steps == ["run", "leaderboard", "report", "leaderboard"], steps


@pytest.mark.slow
def test_the_example_plugin_joins_a_copy_of_the_heart_board_as_the_guide_says(
        example_plugin_site, tmp_path):
    shutil.copytree(ROOT / "leaderboard", tmp_path / "leaderboard")
    before = json.loads((tmp_path / "leaderboard" / "heart.json").read_text())
    env = plugin_env(example_plugin_site)
    for argv in guide_commands():
        r = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{shlex.join(argv)}:\n{r.stdout}\n{r.stderr}"
    board = json.loads((tmp_path / "leaderboard" / "heart.json").read_text())
    assert set(board["methods"]) == set(before["methods"]) | {"shift:linear", "shift:quadratic"}
    for name, row in before["methods"].items():  # nothing already on the board was re-run
        assert board["methods"][name] == row, name
    assert board["added"][:-1] == before.get("added", [])  # earlier additions kept as they were
    entry = board["added"][-1]
    assert entry["methods"] == ["shift:linear", "shift:quadratic"]
    assert entry["provenance"]["plugin_distribution"]["name"] == "cfbench-shift"
    md = (tmp_path / "leaderboard" / "heart.md").read_text()
    assert "shift:linear" in md and "cfbench-shift" in md
    assert "shift:linear" in (tmp_path / "leaderboard" / "index.html").read_text()
