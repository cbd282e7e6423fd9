"""Cell times measured here and kept between runs: the plan's estimate of a repeated run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cfbench.execution import schedule
from cfbench.execution.config import Cell, RunConfig
from cfbench.execution.orchestrator import execute
from cfbench.execution.timings import FILE, Timings, key
from cfbench.tasks.spec import Task, resolve_spec


def test_timings_round_trip_and_keep_the_fastest_fit(tmp_path):
    t = Timings(tmp_path / FILE)
    k = key("heart", "dice", "random", 1, 1, 2.0)
    assert t.get(k) is None
    t.put(k, 0.5, 30.0)  # a first fit with a one-time set-up in it
    t.put(k, 0.4, 3.0)
    t.put(k, 0.45, 4.0)
    assert Timings(tmp_path / FILE).get(k) == (0.45, 3.0)  # latest per query, fastest fit
    assert Timings(tmp_path / FILE).get(key("heart", "dice", "random", 2, 1, 2.0)) is None  # threads count


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '{"cells": 3}', "NaN", '{"cells": {"a": 1}}'])
def test_a_broken_timings_file_counts_as_absent(tmp_path, text):
    (tmp_path / FILE).write_text(text)
    t = Timings(tmp_path / FILE)
    assert t.get("a") is None
    t.put("b", 1.0, 2.0)  # and is replaced by a good one
    assert json.loads((tmp_path / FILE).read_text())["cells"]["b"]["s_per_query"] == 1.0


def test_entries_that_are_not_finite_non_negative_numbers_are_dropped(tmp_path):
    cells = {"neg": {"s_per_query": -1, "fit": 1}, "bool": {"s_per_query": True, "fit": 1},
             "str": {"s_per_query": "1", "fit": 1}, "big": {"s_per_query": 1e999, "fit": 1},
             "ok": {"s_per_query": 0.25, "fit": 0}}
    (tmp_path / FILE).write_text(json.dumps({"cells": cells}).replace("Infinity", "1e999"))
    t = Timings(tmp_path / FILE)
    assert [k for k in cells if t.get(k) is not None] == ["ok"]
    t.put("nan", float("nan"), 1.0)  # nothing non-finite is ever stored
    assert t.get("nan") is None


def test_a_fit_that_held_a_one_time_set_up_is_not_kept(tmp_path):
    t = Timings(tmp_path / FILE)
    t.put("ft", 1.0, None)  # the first run: its fit held the fine-tune
    assert Timings(tmp_path / FILE).get("ft") == (1.0, 0.0)
    t.put("ft", 0.9, 8.0)
    t.put("ft", 0.95, None)
    assert Timings(tmp_path / FILE).get("ft") == (0.95, 8.0)


def test_two_runs_writing_keep_each_others_entries(tmp_path):
    a, b = Timings(tmp_path / FILE), Timings(tmp_path / FILE)
    a.put("a", 1.0, 1.0)
    b.put("b", 2.0, 2.0)
    c = Timings(tmp_path / FILE)
    assert c.get("a") == (1.0, 1.0) and c.get("b") == (2.0, 2.0)


def test_an_unwritable_cache_costs_only_the_next_estimate(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    t = Timings(blocker / FILE)  # its folder is a file
    t.put("a", 1.0, 1.0)
    assert t.get("a") == (1.0, 1.0)


def test_the_plan_uses_what_a_cell_took_here_and_declared_costs_otherwise():
    t = Timings()
    costs = schedule.Costs(budget=2.0, task="heart", threads=1, k=1, timings=t)
    dice, nn = Cell("dice", "random", 0), Cell("nearest-neighbour", "default", 0)
    assert costs.cell(dice, 100) == schedule.cell_cost("dice", "random", 100, 2.0)  # declared
    t.put(key("heart", "dice", "random", 1, 1, 2.0), 0.01, 0.5)
    t.put(key("heart", "nearest-neighbour", "default", 1, 1, 2.0), 3.0, 7.0)
    assert costs.cell(dice, 100) == pytest.approx(schedule.CELL_OVERHEAD + 0.5 + 1.0)
    assert costs.cell(nn, 10) == pytest.approx(schedule.CELL_OVERHEAD + 7.0 + 30.0)
    assert costs.measured_share([dice, nn]) == 2
    work = [(dice, list(range(100))), (nn, list(range(10)))]
    assert [c.label for c, _ in schedule.longest_first(work, 2.0, costs)] == ["nearest-neighbour", "dice:random"]
    # an anytime variant takes the budget, whatever it took before
    t.put(key("heart", "cfnow", "greedy", 1, 1, 2.0), 0.1, 0.0)
    assert costs.cell(Cell("cfnow", "greedy", 0), 10) == schedule.cell_cost("cfnow", "greedy", 10, 2.0)
    # a cell measured here has done its one-time set-up: the cold estimate drops it
    ft = Cell("llm-finetuned", "default", 0)
    assert costs.first_use(ft) == schedule.first_use_cost("llm-finetuned", "default") > 0
    t.put(key("heart", "llm-finetuned", "default", 1, 1, 2.0), 1.0, 5.0)
    assert costs.first_use(ft) == 0.0


def test_a_run_stores_its_complete_cells_and_only_those(faulty_plugin, tmp_path, monkeypatch):
    monkeypatch.setenv("CFBENCH_CACHE", str(tmp_path / "cache"))
    task = Task.load(resolve_spec("breast-cancer"))
    cfg = RunConfig(task="breast-cancer", n_queries=2, out=tmp_path / "r", jobs=1)
    execute(cfg, task, [("nearest-neighbour", "default"), ("faulty", "os-exit"), ("faulty", "fit-raises")])
    cells = json.loads((tmp_path / "cache" / FILE).read_text())["cells"]
    threads = schedule.threads_per_cell(1, 3)
    assert list(cells) == [key("breast-cancer", "nearest-neighbour", "default", threads, 1, cfg.budget)]
    spq = cells[list(cells)[0]]["s_per_query"]
    assert 0 <= spq < 5
    # the next plan of the same cell reads it
    costs = schedule.Costs(cfg.budget, "breast-cancer", threads, 1, Timings.in_cache())
    assert costs.cell(Cell("nearest-neighbour", "default", 0), 4) == pytest.approx(
        schedule.CELL_OVERHEAD + cells[list(cells)[0]]["fit"] + 4 * spq)


def test_path_is_under_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CFBENCH_CACHE", str(tmp_path / "c"))
    assert Timings.in_cache().path == Path(tmp_path / "c" / FILE)


def test_a_fit_as_long_as_half_the_declared_set_up_is_not_stored(tmp_path, monkeypatch):
    """A cell whose method declares a one-time set-up (``first_use``) and whose fit took at least
    half of it did that set-up: its fit says nothing about the next run's."""
    monkeypatch.setenv("CFBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(schedule, "first_use_cost", lambda method, variant: 1e-9)
    task = Task.load(resolve_spec("breast-cancer"))
    cfg = RunConfig(task="breast-cancer", n_queries=1, out=tmp_path / "r", jobs=1)
    execute(cfg, task, [("nearest-neighbour", "default")])
    (entry,) = json.loads((tmp_path / "cache" / FILE).read_text())["cells"].values()
    assert entry["fit"] is None and entry["s_per_query"] >= 0


def test_an_absurd_cached_time_gives_an_absurd_estimate_not_a_crash(tmp_path):
    """A hand-edited cache entry of 1e308 s per query makes the plan's sums infinite: the plan
    line still prints."""
    import io

    from rich.console import Console

    from cfbench.cli.progress import ProgressDisplay, fmt_duration

    t = Timings(tmp_path / FILE)
    t.put(key("t", "nearest-neighbour", "default", 1, 1, 2.0), 1e308, 0.0)
    buf = io.StringIO()
    disp = ProgressDisplay(Console(file=buf, width=200), plain=True)
    costs = schedule.Costs(2.0, "t", 1, 1, Timings(tmp_path / FILE))
    with disp:
        disp.plan([(Cell("nearest-neighbour", "default", 0), list(range(100)))], RunConfig(task="t", jobs=1), costs)
    assert "expected about over 10,000 h" in buf.getvalue()
    assert fmt_duration(float("nan")) == fmt_duration(float("inf")) == "over 10,000 h"
    assert fmt_duration(3725) == "1 h 02 min"
