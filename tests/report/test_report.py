"""The HTML report: built from files alone, strict JSON inside, escaped, and working in a browser."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require

from cfbench.records.store import SCHEMA_VERSION
from cfbench.report import html as report
from cfbench.report import svg as charts
from cfbench.report.board import board_markdown, print_table, to_markdown

BOARD_DIR = Path(__file__).parents[2] / "leaderboard"
EVIL = "<script>alert(1)</script>"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cfbench", *args], capture_output=True,
                          text=True, timeout=600)


def _strict_loads(text: str):
    def no_constant(name: str):
        raise ValueError(f"non-standard JSON token {name}")

    return json.loads(text, parse_constant=no_constant)


def _embedded(page: str):
    m = re.search(r'<script type="application/json" id="cfbench-data">(.*?)</script>', page, re.S)
    assert m, "no embedded data"
    return _strict_loads(m.group(1))


def _direction(valid: float, n: int = 2, fails: int = 0) -> dict:
    return {"n_queries": n, "n_cfs": n - fails,
            "status_counts": {"ok": n - fails, "not_found": fails, "error": 0, "timeout": 0,
                              "invalid_output": 0},
            "all": {"coverage": (n - fails) / n, "validity": valid, "lof_inlier": 1.0, "ynn": 0.5,
                    "respects_constraints": 1.0, "seconds_median": 0.1},
            "valid": {"l1_mad": 2.0 * valid + 1, "l2_minmax": float("nan"), "n_changed": 3.0,
                      "lof_inlier": 1.0, "ynn": 0.5, "violates_constraints": 0.0,
                      "actionable_share": 0.5},
            "found": {"validity": valid, "l1_mad": 2.0 * valid + 1, "diversity": float("nan")},
            "feature_change": {"a": 0.5, "b": 0.0}}


def _fake_run(tmp_path: Path, with_query: bool = True) -> Path:
    """A run folder written by hand: summary, run.json and records (task unknown here)."""
    run = tmp_path / "run"
    run.mkdir()
    summary = {
        "schema_version": SCHEMA_VERSION,
        "task": "no-such-task", "task_hash": "ab" * 32, "data_source": "made up",
        "classifier": {"model": "m", "accuracy": 0.9, "f1": 0.8, "n_train": 10, "n_test": 5},
        "skipped_methods": {"api-zeroshot": "set CFBENCH_API_BASE | and a key",
                            "evil": EVIL},
        "methods": {"good": {"0->1": _direction(1.0), "all": _direction(1.0)},
                    f"bad{EVIL}": {"0->1": _direction(0.0, fails=1), "all": _direction(0.0, fails=1)}},
    }
    # NaN tokens, as summaries hold them today
    (run / "summary.json").write_text(json.dumps(summary, allow_nan=True))
    (run / "run.json").write_text(json.dumps({"config": {
        "methods": "good,bad", "seeds": [0], "k": 1, "timeout": 5.0, "n_queries": 1,
        "out": str(tmp_path / "secret-place" / "run")}}))
    recs = []
    for method, cfs, status in (("good", [[1.0, 5.0]], "ok"), (f"bad{EVIL}", [], "not_found")):
        rec = {"method": method, "variant": "default", "seed": 0, "query_id": 7, "source": 0,
               "target": 1, "direction": "0->1", "status": status, "cfs": cfs,
               "reason": "" if cfs else f"nothing {EVIL}",
               "provenance": {"cfbench": "0.1.0", "libraries": {"numpy": "2"}}}
        if with_query:
            rec["query"] = [1.0, 2.0]
        recs.append(json.dumps(rec) + "\n")
    (run / "records.jsonl").write_text("".join(recs))
    return run


def test_strict_json_replaces_nan_and_cannot_close_the_script_tag():
    text = report.embed_json({"a": float("nan"), "b": [float("inf"), 1.5], "c": "</script><!--"})
    assert "NaN" not in text and "Infinity" not in text and "</" not in text
    assert _strict_loads(text) == {"a": None, "b": [None, 1.5], "c": "</script><!--"}


def test_committed_boards_are_strict_json_and_so_is_the_index():
    """Every committed board (and its smoke numbers) parses with a strict parser: ``null`` for
    an undefined number, never a bare ``NaN`` that browsers' ``JSON.parse`` rejects."""
    for path in sorted(BOARD_DIR.glob("*.json")) + sorted((BOARD_DIR / "smoke").glob("*.json")):
        _strict_loads(path.read_text())
    page = (BOARD_DIR / "index.html").read_text()
    data = _embedded(page)
    boards = sorted(p.stem for p in BOARD_DIR.glob("*.json") if p.name != "schema.json")
    assert [d["task"] for d in data] == boards and {"ai-readi", "heart"} <= set(boards)


def test_committed_index_is_up_to_date_with_the_boards(tmp_path):
    path = report.build_board_index(BOARD_DIR, tmp_path)
    assert path.read_text() == (BOARD_DIR / "index.html").read_text(), (
        "leaderboard/index.html is stale: run `cfbench report --board leaderboard/`")


def test_index_shows_every_board_method_skipped_method_and_no_local_path():
    page = (BOARD_DIR / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and '<html lang="en">' in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<link" not in page  # nothing fetched at view time
    for p in sorted(BOARD_DIR.glob("*.json")):
        if p.name == "schema.json":
            continue
        board = json.loads(p.read_text())
        for m in board["methods"]:
            assert f'<th scope="row" data-v="{m}">{m}</th>' in page
        for m, why in board["skipped_methods"].items():
            assert f"<dt>{m}</dt>" in page and why in page
        out = board["config"]["out"]  # where it was made; a relative name may be the example's
        assert not Path(out).is_absolute() or out not in page
        assert str(Path.home()) not in page and "/tmp/" not in page
        if board["config"].get("suite"):
            assert f"cfbench run --config leaderboard/{board['config']['suite']['file']}" in page
        assert board["provenance"]["task_path"] not in page
        assert board["task_hash"] in page  # provenance
        assert f"cfbench run --task {board['task']} --methods" in page  # the exact command


def test_run_report_from_files_alone_escapes_everything(tmp_path):
    run = _fake_run(tmp_path)
    out = report.build_run_report(run, tmp_path / "site")
    page = out.read_text()
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    data = _embedded(page)
    assert data[0]["methods"]["good"]["all"]["valid"]["l2_minmax"] is None
    assert "secret-place" not in page
    assert "<dt>api-zeroshot</dt>" in page and "set CFBENCH_API_BASE | and a key" in page
    # the example: query -> CF with the changed feature marked, features by position
    assert '<td class="chg"><mark>5</mark><span class="sr-only"> (changed)</span></td>' in page
    assert "features shown by position" in page
    assert "does not reload the classifier" in page
    assert "nothing &lt;script&gt;" in page  # failure reasons listed, escaped


def _fake_augment(tmp_path: Path, name: str, fraction: float, task: str = "no-such-task") -> Path:
    d = tmp_path / name
    d.mkdir()
    row = {"scenario": "A", "method": "good", "cfs": "all", "n_seeds": 1, "f1": 0.5 + fraction,
           "f1_std": float("nan"), "n_added": 3.0, "f1_recovered_rel": float("nan")}
    (d / "augment.json").write_text(json.dumps(
        {"task": task, "fraction": fraction, "seeds": [0], "scenarios": ["A"], "methods": "good",
         "timeout": 5.0, "max_per_class": 3, "rows": [row], "aggregate": [row]}, allow_nan=True))
    return d


def test_run_report_with_augmentation_folders(tmp_path):
    run = _fake_run(tmp_path)
    one = _fake_augment(tmp_path, "aug1", 0.5)
    page = report.build_run_report(run, tmp_path / "s1", [one]).read_text()
    assert "50% of the training rows removed" in page and "One scarcity level only" in page
    assert "cfbench augment --task no-such-task --methods good --seeds 0 --fraction 0.5" in page
    two = _fake_augment(tmp_path, "aug2", 0.25)
    page = report.build_run_report(run, tmp_path / "s2", [one, two]).read_text()
    assert 'class="scarcity"' in page and "25% of the training rows removed" in page
    _embedded(page)
    other = _fake_augment(tmp_path, "aug3", 0.5, task="heart")
    r = cli("report", str(run), "--augment", str(other), "--out", str(tmp_path / "s3"))
    assert r.returncode == 2 and "augmentation of task 'heart'" in r.stderr


def test_run_report_without_query_values_shows_the_cfs_and_says_so(tmp_path):
    page = report.build_run_report(_fake_run(tmp_path, with_query=False), tmp_path / "s").read_text()
    assert "the query's values are not in this run's records" in page
    assert 'class="chg"' not in page


def test_cliques_and_cd_diagram_by_hand():
    ranks = {"a": 1.0, "b": 1.5, "c": 3.0, "d": 3.4}
    assert charts.cliques(ranks, 1.0) == [["a", "b"], ["c", "d"]]
    assert charts.cliques(ranks, 2.0) == [["a", "b", "c"], ["b", "c", "d"]]  # 3.4 - 1.5 <= 2
    assert charts.cliques(ranks, None) == []
    svg = charts.cd_diagram("x", "validity", ranks, 1.0)
    assert svg.count('class="clique"') == 2 and "CD = 1.00" in svg
    assert all(f">{m} (" in svg for m in ranks)
    assert charts.cd_diagram("x", "validity", {"a": 1.0}, None) == ""


def test_scarcity_plot_needs_two_fractions():
    row = {"scenario": "A", "method": "m", "cfs": "all", "f1": 0.7}
    one = [{"fraction": 0.5, "aggregate": [row]}]
    assert charts.scarcity_plot("s", one) == ""
    two = one + [{"fraction": 0.25, "aggregate": [{**row, "f1": 0.8}]}]
    svg = charts.scarcity_plot("s", two)
    assert "<polyline" in svg and "25%" in svg and "50%" in svg


def test_markdown_and_terminal_table_list_skipped_methods(capsys):
    summary = json.loads((BOARD_DIR / "heart.json").read_text())
    md = to_markdown(summary)
    assert "## Skipped methods" in md
    for m, why in summary["skipped_methods"].items():
        assert f"| {m} | {why} |" in md
    print_table(summary)
    out = " ".join(capsys.readouterr().out.split())
    assert "skipped methods" in out
    for m, why in summary["skipped_methods"].items():
        assert f"{m}: {' '.join(why.split())}" in out


@pytest.mark.parametrize("task", ["heart", "ai-readi"])
def test_committed_markdown_is_rendered_from_the_committed_json(task):
    board = json.loads((BOARD_DIR / f"{task}.json").read_text())
    md = (BOARD_DIR / f"{task}.md").read_text()
    assert board_markdown(board) == md and "## Skipped methods" in md


@pytest.mark.parametrize("args, fragment", [
    (["report"], "give a run folder"),
    (["report", "/no/such/run"], "no summary.json"),
    (["report", "--board", "/no/such/dir"], "not a folder"),
    (["report", "x", "--board", "leaderboard"], "not both"),
])
@pytest.mark.slow
def test_report_mistakes_get_one_line_and_exit_2(args, fragment):
    r = cli(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in r.stderr, r.stderr


# ----------------------------------------------------------------------------- real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    require(CHROMIUM is not None, "a system Chromium (apt-get install chromium)")
    require(importlib.util.find_spec("playwright") is not None, "playwright (pip install playwright)")
    from playwright import sync_api
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open(browser, path: Path):
    """The page at ``path`` with its console errors and every non-local request collected."""
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))

    def route(r):
        if r.request.url.startswith(("file:", "data:")):
            r.continue_()
        else:
            problems.append(f"network request: {r.request.url}")
            r.abort()

    page.route("**/*", route)
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, problems


def _row_names(table) -> list[str]:
    return table.locator("tbody tr th[scope=row]").all_inner_texts()


def _check_page(page, problems: list[str], methods_by_task: dict[str, list[str]], shot: Path) -> None:
    assert page.evaluate("document.documentElement.lang") == "en"
    n = page.evaluate("JSON.parse(document.getElementById('cfbench-data').textContent).length")
    assert n == len(methods_by_task)
    for task, methods in methods_by_task.items():
        table = page.locator(f"#{report._slug(task)}-dir-all")
        names = _row_names(table)
        assert sorted(names) == sorted(methods)  # every method of the run is on the page
        # clicking the method header twice sorts descending: the row order changes
        button = table.locator("thead button", has_text="method")
        button.click()
        assert button.locator("xpath=..").get_attribute("aria-sort") == "ascending"
        button.click()
        after = _row_names(table)
        assert after == sorted(methods, reverse=True) and after != names
        # a numeric column, from the keyboard: lower L1/MAD+cat first, undefined values last
        l1 = table.locator("thead button", has_text=re.compile(r"^L1/MAD\+cat$"))
        l1.focus()
        page.keyboard.press("Enter")
        idx = [c.inner_text() for c in table.locator("thead th").all()].index(l1.inner_text())
        vals = table.locator(f"tbody tr > :nth-child({idx + 1})").evaluate_all(
            "cells => cells.map(c => c.getAttribute('data-v'))")
        nums = [float(v) for v in vals if v]
        assert nums == sorted(nums) and vals[: len(nums)] == [v for v in vals if v]
        assert l1.locator("xpath=..").get_attribute("aria-sort") == "ascending"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert problems == []


@pytest.mark.slow
def test_run_report_in_a_real_browser(browser, tmp_path):
    run = tmp_path / "run"
    r = cli("run", "--task", "heart", "--methods", "nearest-neighbour,nice:sparsity",
            "--n-queries", "2", "--k", "2", "--out", str(run), "--quiet")
    assert r.returncode == 0, r.stderr
    r = cli("report", str(run), "--out", str(tmp_path / "site"))
    assert r.returncode == 0, r.stderr
    methods = list(json.loads((run / "summary.json").read_text())["methods"])
    assert methods == ["nearest-neighbour", "nice:sparsity"]
    page, problems = _open(browser, tmp_path / "site" / "index.html")
    _check_page(page, problems, {"heart": methods}, tmp_path / "run-report.png")
    # query -> CF with changed features highlighted, from the records alone
    assert page.locator("table.example td.chg mark").count() > 0
    page.close()


@pytest.mark.slow
def test_committed_leaderboard_index_in_a_real_browser(browser, tmp_path):
    boards = {}
    for p in sorted(BOARD_DIR.glob("*.json")):
        if p.name != "schema.json":
            board = json.loads(p.read_text())
            boards[board["task"]] = list(board["methods"])
    page, problems = _open(browser, BOARD_DIR / "index.html")
    assert page.locator("svg.cd").count() >= len(boards)  # critical-difference diagrams
    imgs = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
    assert imgs and all(imgs)  # the inlined plots decode
    _check_page(page, problems, boards, tmp_path / "leaderboard.png")
    page.close()


def test_values_are_finite_or_dash():
    assert report._fmt(float("nan"), ".2f") == "–" and report._fmt(None, ".2f") == "–"
    assert report._fmt(1.234, ".2f") == "1.23" and not math.isnan(float(report._dv(2.0)))
