"""`cfbench leaderboard --validate` catches a committed board edited by hand.

Two layers: the Markdown and plots must be what the JSON renders to (works for every board,
the committed ones included), and a board made with its records must be what those records
give (numbers recomputed through the `--update` code).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import one_error_line
from conftest import FIXTURES, install_on_path

from cfbench.core.errors import UserError
from cfbench.report.board import read_records_bytes, records_bytes, render_companions, write_board
from cfbench.report.check import verify_board

BOARDS = Path(__file__).parents[2] / "leaderboard"


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cfbench", *args], capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.fixture()
def committed(tmp_path) -> Path:
    """A copy of the committed leaderboard folder (boards with their records)."""
    dst = tmp_path / "leaderboard"
    shutil.copytree(BOARDS, dst, ignore=shutil.ignore_patterns("smoke*"))
    return dst


def edit_json(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2) + "\n")


@pytest.mark.slow
def test_committed_boards_pass_tied_to_their_records(committed):
    r = cli("leaderboard", "--validate", "--dir", str(committed))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "not tied to a run" not in r.stdout


@pytest.mark.slow
def test_a_board_without_its_records_fails(committed):
    """Hand-edited numbers re-rendered into the Markdown and plots would pass the render check;
    only the records catch them, so a board that drops its records is refused."""
    edit_json(committed / "heart.json", lambda doc: doc.pop("records_sha256"))
    (committed / "heart.records.jsonl.gz").unlink()
    r = cli("leaderboard", "--validate", "--dir", str(committed))
    assert r.returncode == 1
    assert "heart.json: not tied to a run (no records file)" in r.stdout


@pytest.mark.slow
def test_edited_validity_in_the_committed_json_fails(committed):
    def change(doc):
        label = next(iter(doc["methods"]))
        doc["methods"][label]["all"]["all"]["validity"] = 0.99
    edit_json(committed / "heart.json", change)
    r = cli("leaderboard", "--validate", "--dir", str(committed))
    assert r.returncode == 1
    assert "heart.md: differs from the one rendered from heart.json at line" in r.stdout


@pytest.mark.slow
def test_edited_markdown_cell_fails(committed):
    md = committed / "heart.md"
    lines = md.read_text().splitlines(keepends=True)
    i = next(i for i, line in enumerate(lines) if line.startswith("| nearest-neighbour |"))
    cells = lines[i].split(" | ")
    cells[3] = "0.99" if cells[3] != "0.99" else "0.98"  # the validity column
    lines[i] = " | ".join(cells)
    md.write_text("".join(lines))
    errors, _ = verify_board(committed / "heart.json")
    assert any(f"heart.md: differs from the one rendered from heart.json at line {i + 1}" in e
               for e in errors)


@pytest.mark.slow
def test_invented_method_fails(committed):
    def change(doc):
        doc["methods"]["my-method"] = doc["methods"][next(iter(doc["methods"]))]
    edit_json(committed / "ai-readi.json", change)
    errors, _ = verify_board(committed / "ai-readi.json")
    assert any("ai-readi.md: differs" in e for e in errors)
    assert any("ai-readi-features.svg: differs" in e for e in errors)


def test_edited_plot_fails(committed):
    svg = committed / "heart-metrics.svg"
    svg.write_text(svg.read_text().replace("validity", "valid1ty", 1))
    errors, _ = verify_board(committed / "heart.json")
    assert len(errors) == 1 and "heart-metrics.svg: differs" in errors[0]


def test_path_in_task_name_is_refused_and_nothing_is_written(tmp_path):
    board = json.loads((BOARDS / "heart.json").read_text())
    board["task"] = "../../escaped"
    out = tmp_path / "a" / "b" / "leaderboard"
    with pytest.raises(UserError, match="task name '../../escaped' cannot name leaderboard files"):
        write_board(board, out)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []
    out.mkdir(parents=True)
    (out / "bad.json").write_text(json.dumps(board))
    errors, _ = verify_board(out / "bad.json")
    assert errors and "cannot name leaderboard files" in errors[0]


def test_records_file_bytes_are_deterministic_and_round_trip():
    recs = [{"task": "t", "method": "m", "variant": v, "seed": 0, "query_id": q, "source": 0,
             "target": 1, "direction": "0->1", "k": 1, "status": "ok", "reason": "", "n_cfs": 1,
             "cfs": [[0.1, 2.0]], "seconds": float("nan") if q == 1 else 0.25, "batch_size": 1,
             "fit_seconds": 1.5, "provenance": {"host": "x"}, "raw": "free text"}
            for v in ("b", "a") for q in (2, 1)]
    blob = records_bytes(recs)
    assert blob == records_bytes(list(reversed(recs)))  # order of arrival does not matter
    back = read_records_bytes(blob)
    assert [(r["variant"], r["query_id"]) for r in back] == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert "provenance" not in back[0] and "raw" not in back[0]
    assert back[0]["seconds"] != back[0]["seconds"] and back[1]["seconds"] == 0.25
    assert b"NaN" not in __import__("gzip").decompress(blob)


# ----------------------------------------------------------------------------- boards with records


@pytest.fixture(scope="module")
def tied(tmp_path_factory) -> Path:
    """A board made by `--update` from a small real run: JSON, Markdown, plots and records."""
    root = tmp_path_factory.mktemp("tied")
    site = install_on_path(root / "site", FIXTURES / "cfbench_hello.py", "cfbench_hello", "hello")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    run = root / "run"
    r = cli("run", "--task", "breast-cancer", "--methods", "nearest-neighbour,hello-shift",
            "--n-queries", "3", "--out", str(run), "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    board_dir = root / "leaderboard"
    board_dir.mkdir()
    shutil.copy(BOARDS / "schema.json", board_dir)
    up = cli("leaderboard", str(run), "--update", "--dir", str(board_dir), env=env)
    assert up.returncode == 0, up.stderr
    again = root / "again"
    assert cli("leaderboard", str(run), "--update", "--dir", str(again), env=env).returncode == 0
    for p in board_dir.glob("breast-cancer*"):  # --update is deterministic, byte for byte
        assert (again / p.name).read_bytes() == p.read_bytes(), p.name
    return board_dir


@pytest.fixture()
def board(tied, tmp_path) -> Path:
    dst = tmp_path / "leaderboard"
    shutil.copytree(tied, dst)
    return dst / "breast-cancer.json"


def forge(path: Path, change) -> None:
    """Edit the board JSON and re-render its Markdown and plots to match (a careful forger)."""
    edit_json(path, change)
    render_companions(json.loads(path.read_text()), path.parent)


@pytest.mark.slow
def test_untouched_board_with_records_passes(board):
    r = cli("leaderboard", "--validate", "--dir", str(board.parent))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in r.stdout and "records_sha256" in board.read_text()


@pytest.mark.slow
def test_forged_validity_is_caught_by_the_records(board):
    forge(board, lambda d: d["methods"]["nearest-neighbour"]["all"]["all"].update(validity=0.5))
    r = cli("leaderboard", "--validate", "--dir", str(board.parent))
    assert r.returncode == 1
    assert "values differ from those recomputed from breast-cancer.records.jsonl.gz" in r.stdout
    assert "methods/nearest-neighbour/all/all/validity: committed 0.5, recomputed 1" in r.stdout


@pytest.mark.slow
def test_forged_invented_method_is_caught_by_the_records(board):
    def change(d):
        d["methods"]["my-method"] = d["methods"]["nearest-neighbour"]
        for metric in d["ci"].values():
            metric["my-method"] = [1.0, 1.0, 1.0]
    forge(board, change)
    errors, _ = verify_board(board)
    assert any("methods/my-method: in the board but not in the records" in e for e in errors)


@pytest.mark.slow
def test_edited_records_or_hash_are_caught(board):
    rpath = board.parent / "breast-cancer.records.jsonl.gz"
    recs = read_records_bytes(rpath.read_bytes())
    recs[0].update(status="error", cfs=[], n_cfs=0)  # a success turned into a failure
    rpath.write_bytes(records_bytes(recs))
    errors, _ = verify_board(board)
    assert any("does not match the board's records_sha256" in e for e in errors)
    # and a forger who also updates the hash: the numbers no longer follow from the records
    edit_json(board, lambda d: d.update(records_sha256=hashlib.sha256(rpath.read_bytes()).hexdigest()))
    errors, _ = verify_board(board)
    assert any("values differ from those recomputed" in e for e in errors)
    rpath.unlink()
    errors, _ = verify_board(board)
    assert errors == [f"{board}: records_sha256 is set but {rpath.name} is missing"]


@pytest.mark.slow
def test_rescore_rebuilds_the_committed_boards_from_their_records(committed):
    """`cfbench leaderboard --rescore` is the one command that rebuilds every committed board
    from its committed records; on the committed boards it changes no byte."""
    names = sorted(p.name for p in committed.glob("*") if p.is_file())
    before = {n: (committed / n).read_bytes() for n in names}
    r = cli("leaderboard", "--rescore", "--dir", str(committed))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in committed.glob("*") if p.is_file()) == names
    changed = [n for n in names if (committed / n).read_bytes() != before[n]]
    assert changed == [], "committed boards are stale: run `cfbench leaderboard --rescore`"
    (committed / "heart.records.jsonl.gz").unlink()
    r = cli("leaderboard", "--rescore", "--dir", str(committed))
    assert r.returncode == 2 and "no heart.records.jsonl.gz to rebuild it from" in r.stderr


def test_a_board_that_contradicts_its_suite_file_fails(committed):
    """A board written from its suite file with other flags (``--n-queries 5``) says "Run:
    `cfbench run --config heart.suite.toml`, i.e. ... --n-queries 5": --validate refuses it."""
    def other_flags(doc):
        doc["config"]["n_queries"] = 5
        doc["augmentation"]["seeds"] = [0, 1]

    from cfbench.report.check import suite_problems

    edit_json(committed / "heart.json", other_flags)
    [line] = suite_problems(committed / "heart.json", json.loads((committed / "heart.json").read_text()))
    assert "heart.suite.toml" in line and "n_queries 5 on the board, None in the file" in line
    assert "augment.seeds [0, 1] on the board, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] in the file" in line
    (committed / "heart.suite.toml").write_text("# edited\n" + (committed / "heart.suite.toml").read_text())
    [line] = suite_problems(committed / "heart.json", json.loads((committed / "heart.json").read_text()))
    assert "but that file is now" in line


def test_a_stale_index_page_fails(committed):
    from cfbench.report.check import index_problem

    assert index_problem(committed) is None
    page = committed / "index.html"
    page.write_text(page.read_text().replace("</body>", "<p>edited</p></body>"))
    assert "stale" in index_problem(committed) and "cfbench report --board" in index_problem(committed)


def test_validate_without_jsonschema_is_a_one_line_error(tmp_path):
    """jsonschema is a core dependency; should it still fail to import (a broken install),
    `--validate` says so in one line with the install command, not a traceback."""
    hidden = ("import sys; sys.modules['jsonschema'] = None; from cfbench.cli.app import main; "
              "sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", hidden, "leaderboard", "--validate", "--dir",
                        str(tmp_path)], capture_output=True, text=True, timeout=120)
    line = one_error_line(r)
    assert "--validate needs the jsonschema package" in line, line
    assert "pip install 'jsonschema>=4'" in line, line
