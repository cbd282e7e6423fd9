"""docs/guarantees.md, "Untrusted inputs" and "Committed leaderboards": run folders, boards and
output paths under attack.  Every bad file or value is one line naming it and exit status 2
(``--validate`` lists it as a problem), and nothing already computed is lost."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import RUN, cli, finished_run, one_error_line

from cfbench.core.errors import UserError
from cfbench.records.store import RECORDS, RUN_INFO, load_records, read_run_info
from cfbench.report import board as board_module
from cfbench.report.board import board_markdown, write_board
from cfbench.report.markdown import md_cell

BOARDS = Path(__file__).parents[2] / "leaderboard"
DEEP = "[" * 200_000 + "]" * 200_000


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run folder (records, run.json, summary.json, scores.parquet) to copy."""
    return finished_run(tmp_path_factory)


@pytest.fixture()
def run(finished, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(finished, dst, ignore=shutil.ignore_patterns(".lock", "logs", "report"))
    return dst


@pytest.fixture()
def boards(tmp_path) -> Path:
    """A copy of the committed heart board (JSON, Markdown, plots, records)."""
    dst = tmp_path / "leaderboard"
    dst.mkdir()
    for p in BOARDS.glob("heart*"):
        shutil.copy(p, dst)
    return dst


# ----------------------------------------------------------------------------- run folders: JSON

@pytest.mark.parametrize("name, command", [
    ("run.json", "report"), ("run.json", "resume"), ("summary.json", "report"),
    ("summary.json", "leaderboard"),
])
@pytest.mark.slow
def test_deeply_nested_run_folder_json_is_one_line(run, name, command):
    (run / name).write_text(DEEP if name == RUN_INFO else '{"task": ' + DEEP + "}")
    args = {"report": ["report", str(run), "--out", str(run / "report")],
            "resume": [*RUN, "--out", str(run), "--resume"],
            "leaderboard": ["leaderboard", str(run)]}[command]
    line = one_error_line(cli(*args))
    assert f"{run / name}: not valid JSON (nested too deeply" in line
    assert len(load_records(run)) == 6  # nothing computed is lost


@pytest.mark.parametrize("key, value, named", [
    ("pairs", [[1, 2, 3, 4], "x", None], "'pairs[0]' is a list, expected [method, variant, "),
    ("pairs", [["nearest-neighbour", "default", 5]], "'pairs[0][2]' is a number"),
    ("config", "x", "'config' is a string, expected an object"),
    ("config", {"seeds": ["0"]}, "'config.seeds' holds a value that is not an integer"),
    ("k", True, "'k' is true/false, expected an integer"),
    ("task_meta", {"features": [1]}, "'task_meta.features' holds a value that is not a string"),
    ("skipped_methods", {"m": 1}, "'skipped_methods' holds a reason that is not a string"),
    ("params", [["m", 1]], "'params[0]' is a list, expected [target, {name: value}]"),
])
def test_run_json_structure_is_checked_at_load(run, key, value, named):
    info = json.loads((run / RUN_INFO).read_text())
    (run / RUN_INFO).write_text(json.dumps({**info, key: value}))
    with pytest.raises(UserError) as err:
        read_run_info(run)
    assert str(err.value).startswith(f"{run / RUN_INFO}: key {named}")


@pytest.mark.slow
def test_run_json_with_garbage_pairs_stops_resume_and_report_with_one_line(run):
    info = json.loads((run / RUN_INFO).read_text())
    (run / RUN_INFO).write_text(json.dumps({**info, "pairs": [[1, 2, 3, 4], "x", None]}))
    for args in ([*RUN, "--out", str(run), "--resume"], ["report", str(run), "--out", str(run / "r")]):
        line = one_error_line(cli(*args))
        assert f"{run / RUN_INFO}: key 'pairs[0]'" in line and "start a new --out" in line


def test_deeply_nested_record_line_is_skipped_like_any_corrupt_line(run, capsys):
    with open(run / RECORDS, "a") as fh:
        fh.write(DEEP + "\n")
    assert len(load_records(run)) == 6
    assert f"{run / RECORDS} line 7 is not a valid record" in capsys.readouterr().err


# ----------------------------------------------------------------------------- run folders: scores


def _list_column(path: Path) -> None:
    df = pd.read_parquet(path)
    df["validity"] = [[True, False]] * len(df)
    df.to_parquet(path)


def _bad_params(path: Path) -> None:
    df = pd.read_parquet(path)
    df["params"] = "[" * 10
    df.to_parquet(path)


@pytest.mark.parametrize("damage, problem", [
    (lambda p: p.write_bytes(bytes(range(256)) * 8), "not a readable Parquet file (Parquet magic"),
    (_list_column, "column 'validity' holds lists, expected numbers or true/false"),
    (_bad_params, "column 'params' holds '[[[[[[[[[[', expected a JSON object"),
    (lambda p: pd.read_parquet(p).drop(columns="seed").to_parquet(p), "column 'seed' is missing"),
])
@pytest.mark.slow
@pytest.mark.parametrize("command", ["report", "leaderboard"])
def test_damaged_scores_parquet_is_one_line_naming_the_rebuild(run, damage, problem, command):
    damage(run / "scores.parquet")
    if command == "leaderboard":
        (run / "summary.json").unlink()  # so the summary is rebuilt from the scores
    args = ["report", str(run), "--out", str(run / "r")] if command == "report" else [
        "leaderboard", str(run)]
    line = one_error_line(cli(*args))
    assert f"{run / 'scores.parquet'}: {problem}" in line
    assert line.endswith(f"rebuild it from the records with `cfbench leaderboard {run} --rescore`")


def test_scores_parquet_without_records_says_restore_it(run):
    (run / "scores.parquet").write_bytes(b"PAR1 not really PAR1")
    (run / RECORDS).unlink()
    line = one_error_line(cli("report", str(run), "--out", str(run / "r")))
    assert f"{run / 'scores.parquet'}: not a readable Parquet file" in line and "restore it" in line


# ----------------------------------------------------------------------------- output paths

@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "augment", "report", "update"])
def test_too_long_output_path_is_one_line_naming_it_and_the_limit(finished, tmp_path, command):
    out = tmp_path / ("x" * 300)
    args = {"run": [*RUN, "--out", str(out)],
            "augment": ["augment", "--task", "breast-cancer", "--methods", "nearest-neighbour",
                        "--out", str(out)],
            "report": ["report", str(finished), "--out", str(out)],
            "update": ["leaderboard", str(finished), "--update", "--dir", str(out)]}[command]
    line = one_error_line(cli(*args))
    flag = "--dir" if command == "update" else "--out"
    assert f"{flag} {out}: the name xxxxxxxxxxxxxxxxxxxx... is 300 bytes long; valid: at most " \
           "255 bytes per file or folder name" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_too_long_output_path_in_total_is_one_line(tmp_path):
    out = tmp_path.joinpath(*["y" * 200] * 21)
    line = one_error_line(cli(*RUN, "--out", str(out)))
    assert re.search(r"the path is \d+ bytes long; valid: at most \d+ bytes", line)


# ----------------------------------------------------------------------------- boards

@pytest.mark.parametrize("text, problem", [
    ('{"task": "heart", "x": ' + DEEP + "}", "heart.json: not valid JSON (nested too deeply"),
    ('{"task": "heart", "x": NaN}', "heart.json: not valid JSON (non-standard JSON token NaN)"),
], ids=["deep", "nan"])  # short ids: the test id is in the environment of the subprocess
@pytest.mark.slow
@pytest.mark.parametrize("command", ["report", "rescore", "validate"])
def test_bad_board_json_is_one_line(boards, text, problem, command):
    (boards / "heart.json").write_text(text)
    if command == "validate":  # --validate lists every problem and exits 1
        shutil.copy(BOARDS / "schema.json", boards)
        r = cli("leaderboard", "--validate", "--dir", str(boards))
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"{boards / problem}" in r.stdout
        return
    args = (["report", "--board", str(boards), "--out", str(boards / "site")]
            if command == "report" else ["leaderboard", "--rescore", "--dir", str(boards)])
    assert str(boards / problem) in one_error_line(cli(*args))


@pytest.mark.parametrize("key, value, problem", [
    ("methods", ["a"], "'methods' is list"),
    ("ranks", "x", "'ranks' is str"),
    ("task", "../x", "task name '../x' cannot name leaderboard files"),
    ("classifier", {"model": 3}, "classifier 'model' is int"),
    ("augmentation", {"aggregate": 5}, "a board cannot be rendered"),
])
@pytest.mark.slow
def test_board_with_wrong_types_is_one_line_in_the_report(boards, key, value, problem):
    doc = json.loads((boards / "heart.json").read_text())
    (boards / "heart.json").write_text(json.dumps({**doc, key: value}))
    line = one_error_line(cli("report", "--board", str(boards), "--out", str(boards / "site")))
    assert problem in line and "cfbench leaderboard --validate" in line


# ----------------------------------------------------------------------------- Markdown boards

EVIL = ["<img src=x onerror=alert(1)>", "<!-- hidden", "*bold* _em_ **x**", "[link](javascript:x)",
        "![i](x)", "a|b", "`code`", "back\\slash\\*", "~~gone~~", "&lt;entity", "two\nlines",
        "$x$ and $y$"]


def _cell_text(label: str) -> str:
    """The text a Markdown renderer shows for ``md_cell(label)`` in a table cell (with every
    HTML tag it produced, so that a smuggled tag shows up)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    page = md.render(f"| m | x |\n|---|---|\n| {md_cell(label)} | 1 |\n")
    cell = re.search(r"<tbody>\s*<tr>\s*<td>(.*?)</td>", page, re.S)
    assert cell, page
    return cell.group(1)


@pytest.mark.parametrize("label", EVIL)
def test_markdown_cells_show_a_label_as_its_text(label):
    shown = _cell_text(label)
    assert "<" not in shown  # no tag at all: no img, no link, no emphasis, no code
    assert html.unescape(shown) == " ".join(label.split())
    if label.count("$") > 1:
        assert md_cell(label).count("\\$") == label.count("$")  # no math either


def test_board_markdown_escapes_every_label_and_name(boards):
    board = json.loads((boards / "heart.json").read_text())
    evil = "<img src=x onerror=alert(1)>"
    board["methods"] = {evil: next(iter(board["methods"].values()))}
    board["ranks"]["methods"] = [evil]
    board["ranks"]["overall"] = {evil: 1.0}
    for m in board["ranks"]["metrics"].values():
        m["mean_rank"] = {evil: 1.0}
    board["skipped_methods"] = {evil: evil}
    board["data_source"] = evil
    text = board_markdown(board)
    assert "<img" not in text and text.count("&lt;img src=x onerror=alert(1)>") >= 5


def test_ordinary_labels_of_the_committed_boards_are_unchanged():
    """``--validate`` needs the committed Markdown byte for byte: escaping leaves their labels,
    skipped methods, reasons, model and data source as they are."""
    for path in sorted(BOARDS.glob("*.json")):
        if path.name == "schema.json":
            continue
        board = json.loads(path.read_text())
        names = [*board["methods"], *board["ranks"]["methods"], *board["ranks"]["metrics"],
                 *board["skipped_methods"].items(), board["classifier"]["model"],
                 board["data_source"]]
        for a in [board.get("augmentation") or {}]:
            names += [r["method"] for r in (a.get("aggregate") or {}).get("methods", [])]
        for name in (n for x in names for n in ([x] if isinstance(x, str) else x)):
            assert md_cell(name) == name, (path.name, name)
    for label in ("dice:random", "llm-fewshot:verified", "nearest-neighbour", "cfnow:random_optim"):
        assert md_cell(label) == label


# ----------------------------------------------------------------------------- plots, atomic --update


def test_dollar_signs_in_feature_and_method_names_are_plotted_as_text(boards, tmp_path):
    board = json.loads((boards / "heart.json").read_text())
    odd_feature, odd_method = r"$\frac{a$ $b}{$", "$x$ $y$"
    board["methods"][odd_method] = board["methods"].pop(next(iter(board["methods"])))
    for per_dir in board["methods"].values():
        for d in per_dir.values():
            fc = d["feature_change"]
            fc[odd_feature] = fc.pop(next(iter(fc)))
    out = tmp_path / "out"
    write_board(board, out)
    svg = (out / "heart-features.svg").read_text()
    assert html.escape(odd_feature, quote=False) in svg and odd_method in svg


def test_a_failed_update_leaves_the_previous_board_as_it_was(boards, monkeypatch):
    before = {p.name: p.read_bytes() for p in boards.iterdir()}
    board = json.loads((boards / "heart.json").read_text())
    board["data_source"] = "a new run"

    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")

    # patched where board.py looks it up: it imports the name from cfbench.report.svg
    monkeypatch.setattr(board_module, "feature_profile", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_board(board, boards, records=[])
    assert {p.name: p.read_bytes() for p in boards.iterdir()} == before  # no partial board
