"""Failures a plugin author can see: the reason names the plugin's own line, the traceback is
kept in the cell's log, and every record names the release of the plugin that produced it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import FIXTURES, install_on_path

from cfbench.execution import messages
from cfbench.execution.config import Cell, RunConfig
from cfbench.execution.failure import (
    MESSAGE_CHARS,
    TRACEBACK_CHARS,
    code_roots,
    describe_exception,
    format_traceback,
)
from cfbench.execution.orchestrator import Runner
from cfbench.execution.worker import answer_batch, fit_generator, plugin_roots
from cfbench.execution.workerproc import log_name
from cfbench.records.provenance import with_runtime
from cfbench.records.store import RunStore, load_records
from cfbench.score.metrics import envelope
from cfbench.tasks.spec import Task, resolve_spec

SOURCE = FIXTURES / "cfbench_brokenfit.py"
#: the line of the fixture plugin where pandas is called with a missing column
LINE = next(i for i, text in enumerate(SOURCE.read_text().splitlines(), 1)
            if text.strip().startswith('return frame["no_such_column"]'))
AT_PLUGIN = f" at cfbench_brokenfit.py:{LINE}"


@pytest.fixture()
def brokenfit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fixture plugin installed (dist-info ``cfbench_brokenfit`` 0.1) for this process and
    its workers."""
    from cfbench.core.plugins import registry

    site = install_on_path(tmp_path / "site", SOURCE, "cfbench_brokenfit", "brokenfit")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    registry.cache_clear()
    yield site
    sys.modules.pop("cfbench_brokenfit", None)
    registry.cache_clear()


@pytest.fixture(scope="module")
def task() -> Task:
    return Task.load(resolve_spec("breast-cancer"))


def _raised(fn: Any, *args: Any) -> BaseException:
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - the exception is what the test looks at
        return exc
    raise AssertionError("expected an exception")


def test_the_reason_names_the_plugins_deepest_line_not_the_librarys(brokenfit):
    import cfbench_brokenfit

    exc = _raised(cfbench_brokenfit._lookup, pd.DataFrame({"a": [1]}))
    roots = code_roots(("cfbench_brokenfit",))
    assert describe_exception(exc, roots) == f"KeyError: 'no_such_column'{AT_PLUGIN}"
    # without knowing the plugin's code: the deepest frame, which is pandas'
    assert describe_exception(exc).startswith("KeyError: 'no_such_column' at base.py:")
    # cfbench's own modules are the harness: only a built-in method's own file counts
    assert code_roots(("cfbench", "cfbench.execution.worker")) == (
        os.path.abspath(sys.modules["cfbench.execution.worker"].__file__),)


def test_a_huge_message_is_cut_and_the_location_kept():
    def hostile() -> None:
        raise ValueError("x" * 50_000_000)

    exc = _raised(hostile)
    reason = describe_exception(exc)
    assert len(reason) <= MESSAGE_CHARS and reason.endswith(
        f" at test_failures.py:{hostile.__code__.co_firstlineno + 1}")
    text = format_traceback(exc)
    assert len(text) <= TRACEBACK_CHARS + 100 and "more characters" in text
    assert "in hostile" in text and text.rstrip().endswith(")")


def test_a_chained_traceback_keeps_both_exceptions():
    def inner() -> None:
        raise KeyError("first")

    def outer() -> None:
        try:
            inner()
        except KeyError as err:
            raise RuntimeError("second") from err

    text = format_traceback(_raised(outer))
    assert text.index("KeyError: 'first'") < text.index("direct cause") < text.index(
        "RuntimeError: second")


def test_formatting_never_raises_whatever_the_exception_holds():
    class BadStr:
        def __str__(self) -> str:
            raise RuntimeError("no string")

    exc = ValueError(BadStr())
    exc.__notes__ = [BadStr()]
    assert describe_exception(exc) == "ValueError: <unprintable>"
    assert "ValueError: <unprintable>" in format_traceback(exc)


def test_worker_reports_the_plugins_line_and_the_traceback(brokenfit, task):
    gen, failed = fit_generator(task, "broken-fit", "fit", 0, {})
    assert gen is None and failed.kind == "fit_error"
    assert failed.reason == f"KeyError: 'no_such_column'{AT_PLUGIN}"
    assert "Traceback (most recent call last)" in failed.traceback
    assert f'cfbench_brokenfit.py", line {LINE}' in failed.traceback
    assert "pandas" in failed.traceback  # the library's frames are in the traceback, not the reason

    gen, fitted = fit_generator(task, "broken-fit", "generate", 0, {})
    assert fitted.kind == "fitted"
    assert fitted.provenance["plugin_distribution"] == {"name": "cfbench_brokenfit", "version": "0.1"}
    cols = task.schema.names
    q = task.queries(1)
    batch = messages.batch(0, q[cols].to_numpy(float).tolist(), q["target"].tolist(), 1, 1.0)
    answer = answer_batch(gen, task, 0, batch, envelope(task.X_train[cols].to_numpy(float)),
                          plugin_roots("broken-fit", gen))
    assert {o["reason"] for o in answer.outputs} == {f"KeyError: 'no_such_column'{AT_PLUGIN}"}
    assert f'cfbench_brokenfit.py", line {LINE}' in answer.traceback


class _Scripted:
    """A worker that says what it is told: a fit error, or a ``generate`` that raised."""

    def __init__(self, fit: tuple, results: str = "", old: bool = False) -> None:
        self.fit, self.results, self.old, self.inbox = fit, results, old, []

    def send(self, msg: tuple) -> None:
        self.inbox.append(msg)

    def recv(self, timeout: float) -> tuple[str, Any]:
        if not self.inbox:
            return "msg", self.fit
        _, first, rows, *_ = self.inbox.pop()
        out = {"status": "error", "cfs": [], "reason": "ValueError: boom at gen.py:3", "raw": None,
               "extra": {}}
        msg = ("results", first, [out] * len(rows), 0.0, self.results)
        return "msg", msg[:4] if self.old else msg

    def kill(self) -> None:
        pass

    def stop(self) -> None:
        pass


class _ScriptedExecutor:
    name = "scripted"

    def __init__(self, **kw: Any) -> None:
        self.kw = kw

    def open(self, task, cfg) -> None:
        pass

    def start(self, task, cell, cfg, threads=0, on_phase=None, on_ready=None) -> _Scripted:
        return _Scripted(**self.kw)

    def close(self) -> None:
        pass


def _run(task: Task, out: Path, cell: Cell, **kw: Any) -> list[dict]:
    cfg = RunConfig(task="breast-cancer", out=out)
    store = RunStore(out)
    Runner(cfg, task, store, executor=_ScriptedExecutor(**kw)).run_cell(cell, task.queries(2))
    store.close()
    return load_records(out)


def test_the_driver_keeps_a_fit_traceback_in_the_cells_log(task, tmp_path):
    cell = Cell("nearest-neighbour", "default", 0)
    recs = _run(task, tmp_path, cell,
                fit=("fit_error", "KeyError: 'x' at plug.py:3", "Traceback …\nKeyError: 'x'\n"))
    assert {r["reason"] for r in recs} == {"fit failed: KeyError: 'x' at plug.py:3"}
    log = tmp_path / "logs" / log_name(cell.label, cell.seed)
    text = log.read_text()
    assert text.count("fit raised ---") == 1 and "Traceback …\nKeyError: 'x'" in text


def test_the_same_generate_traceback_is_saved_once_and_an_older_worker_still_works(task, tmp_path):
    cell = Cell("nearest-neighbour", "default", 0)
    fitted = ("fitted", 0.1, {})
    recs = _run(task, tmp_path / "a", cell, fit=fitted, results="Traceback …\nValueError: boom\n")
    assert len(recs) == 4 and {r["status"] for r in recs} == {"error"}
    text = (tmp_path / "a" / "logs" / log_name(cell.label, cell.seed)).read_text()
    assert text.count("ValueError: boom") == 1
    recs = _run(task, tmp_path / "b", cell, fit=fitted, results="ignored", old=True)
    assert len(recs) == 4 and not (tmp_path / "b" / "logs").exists()  # 4-field results: no log


def test_every_record_names_the_plugins_distribution(task, brokenfit, tmp_path):
    import importlib.metadata

    from cfbench.records.provenance import editable_source

    recs = _run(task, tmp_path / "a", Cell("broken-fit", "fit", 0), fit=("fitted", 0.1, {}))
    assert {tuple(sorted(r["provenance"]["plugin_distribution"].items())) for r in recs} == {
        (("name", "cfbench_brokenfit"), ("version", "0.1"))}
    recs = _run(task, tmp_path / "b", Cell("nearest-neighbour", "default", 0), fit=("fitted", 0.1, {}))
    dist = recs[0]["provenance"]["plugin_distribution"]  # a built-in method: cfbench's own
    harness = importlib.metadata.distribution("cfbench-harness")
    assert (dist["name"], dist["version"]) == ("cfbench-harness", harness.version)
    assert dist.get("editable", False) == (editable_source(harness) is not None)
    if "commit" in dist:
        assert len(dist["commit"]) == 40


def test_a_worker_with_another_release_replaces_the_drivers_plugin_distribution():
    driver = {"plugin_distribution": {"name": "p", "version": "1", "editable": True, "commit": "c"}}
    same = with_runtime(driver, {"host": "n", "plugin_distribution": {"name": "p", "version": "1"}})
    assert same["plugin_distribution"]["commit"] == "c" and same["host"] == "n"
    other = with_runtime(driver, {"plugin_distribution": {"name": "p", "version": "2"}})
    assert other["plugin_distribution"] == {"name": "p", "version": "2"}
    assert with_runtime(driver, {})["plugin_distribution"]["commit"] == "c"
