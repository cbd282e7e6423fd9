"""One progress display that tells the truth, for ``cfbench run`` and ``cfbench augment``.

Before work starts: a plan line (cells, queries, expected duration from the cost model in
``cfbench.execution.schedule``).  While it runs, on a terminal: one overall bar with done/total and an
ETA, and one compact line per running cell (its queries, s/query, or the phase its worker is
in, e.g. fine-tuning); a finished cell collapses into one printed result line (validity of its
CFs, ok count, s/query), marked ✗ with its first failure's reason and the log holding the
traceback when every one of its queries failed.  When the output is not a terminal: the plan line, one line per
finished cell and at most one progress line every :data:`PLAIN_EVERY` seconds, no redraws.

The ETA uses each running cell's measured seconds per query once it has answered some (the
worker's own per-query timings, so a long fit does not inflate it), the declared cost
otherwise, so it improves as the run goes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cfbench.core import phase
from cfbench.execution import config, schedule, workerproc

#: seconds between two progress lines when the output is not a terminal
PLAIN_EVERY = 30.0
#: the statuses of a query that failed (``not_found`` is an answer: no CF exists or was found)
FAILED = frozenset({"error", "timeout", "invalid_output"})
#: at most this many characters of a failure's reason on a cell's result line
REASON_CHARS = 300


class RunObserver:
    """What the runner reports; every method is optional to override (the base does nothing)."""

    def plan(self, work: Sequence[tuple[Any, Any]], cfg: Any, costs: Any = None) -> None: ...

    def start(self, cell: Any, n_queries: int) -> None: ...

    def phase(self, cell: Any, text: str) -> None: ...

    def record(self, cell: Any, rec: dict[str, Any]) -> None: ...

    def finish(self, cell: Any) -> None: ...


@dataclass
class _CellState:
    label: str
    total: int
    expected: float  # seconds per query, from the cost model
    done: int = 0
    ok: int = 0
    failed: int = 0
    #: ``status: reason`` of the cell's first failed query
    first_failure: str = ""
    #: the cell's log (``OUT/logs/…``), where the traceback of a failure is kept
    log: Path | None = None
    seconds: list[float] = field(default_factory=list)
    cfs: list[list[float]] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    slots: int = 0
    started: float | None = None
    ended: float | None = None
    phase: str = ""
    phase_kind: str = ""
    phase_printed: float = -1e9

    def rate(self, now: float) -> float:
        """Seconds per query of this cell: the mean the worker measured for its answered queries
        (not wall time since the start, which holds the fit, e.g. a model load or a fine-tune,
        and for batched methods the wait for a whole batch); else the wall time per answered
        query; else the expected one."""
        if self.seconds:
            return sum(self.seconds) / len(self.seconds)
        if self.done and self.started is not None:
            return (now - self.started) / self.done
        return self.expected

    def remaining(self, now: float) -> float:
        if self.ended is not None:
            return 0.0
        if self.started is None:
            return schedule.CELL_OVERHEAD + self.total * self.expected
        return max(0, self.total - self.done) * self.rate(now)


#: durations from this many seconds on are shown as "over 10,000 h"
MAX_SHOWN = 10_000 * 3600.0


def fmt_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 12 min``; ``over 10,000 h`` past that (or for an estimate
    that is not a number: a plugin's hint or a cached time may be absurd, the display must not be)."""
    if not math.isfinite(seconds) or seconds >= MAX_SHOWN:
        return "over 10,000 h"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def fmt_rate(seconds: float) -> str:
    return "–" if seconds != seconds else f"{seconds:.3g} s/query"


class ProgressDisplay(RunObserver):
    """The display (see the module docstring); use as a context manager around the work.

    ``validity(cfs, targets)`` — optional — returns how many of the rows in ``cfs`` the task's
    classifier assigns to their target, for the one-line result of a finished cell.
    """

    def __init__(self, console: Any, quiet: bool = False, indent: str = "",
                 validity: Callable[[list[list[float]], list[int]], int] | None = None,
                 plain: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.quiet = quiet
        self.indent = indent
        self.validity = validity
        self.plain = (not console.is_terminal) if plain is None else plain
        self.clock = clock
        self.cells: dict[Any, _CellState] = {}
        self.jobs = 1
        self.t0 = clock()
        self._lock = threading.RLock()
        self._live: Any = None
        self._last_plain = clock()

    # ------------------------------------------------------------------ context
    def __enter__(self) -> ProgressDisplay:
        if not self.quiet and not self.plain:

            self._live = Live(get_renderable=self._render, console=self.console,
                              refresh_per_second=2, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def _print(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False)

    # ------------------------------------------------------------------ observer
    def plan(self, work: Sequence[tuple[Any, Any]], cfg: Any, costs: Any = None) -> None:
        """Print the plan line; ``costs`` (``schedule.Costs``) gives the cells' expected times
        (default: the methods' declared costs)."""
        budget = float(getattr(cfg, "budget", config.DEFAULT_BUDGET))
        costs = costs or schedule.Costs(budget)
        self.jobs = int(getattr(cfg, "jobs", 1))
        out = getattr(cfg, "out", None)
        with self._lock:
            self.t0 = self.clock()
            self._last_plain = self.t0
            # a new plan replaces the finished cells; cells of another plan still running (an
            # augmentation's repetitions side by side) stay on the display
            self.cells = {c: st for c, st in self.cells.items()
                          if st.started is not None and st.ended is None}
            new: dict[Any, _CellState] = {}
            expected = {}
            for cell, todo in work:
                expected[cell] = costs.cell(cell, len(todo))
                per_q = (expected[cell] - schedule.CELL_OVERHEAD) / max(len(todo), 1)
                new[cell] = _CellState(f"{cell.label} seed {cell.seed}", len(todo), per_q)
                if out is not None:
                    new[cell].log = Path(out) / "logs" / workerproc.log_name(cell.label, cell.seed)
            self.cells.update(new)
            n_q = sum(c.total for c in new.values())
            secs = [expected[cell] for cell in new]
            est = schedule.estimate(secs, self.jobs)
            first = {cell: costs.first_use(cell) for cell, _ in work}
            cold = schedule.estimate([c + first[cell] for c, cell in zip(secs, new, strict=True)],
                                     self.jobs)
            here = costs.measured_share(list(new))
            setups = sorted({cell.label for cell, s in first.items() if s > 0})
        if not work:
            self._print(f"{self.indent}plan: nothing left to run")
            return
        cells = f"{len(work)} cell{'s' if len(work) != 1 else ''}"
        also = (f" (about {fmt_duration(cold)} if {', '.join(setups)} must first do "
                f"{'its' if len(setups) == 1 else 'their'} one-time set-up)") if setups else ""
        based = f"; {here} of {len(work)} from their times here" if here else ""
        self._print(f"{self.indent}plan: {cells}, {n_q} queries, {self.jobs} at a time, "
                    f"budget {budget:g} s/query; expected about {fmt_duration(est)}{also}{based}")

    def start(self, cell: Any, n_queries: int) -> None:
        with self._lock:
            st = self.cells.get(cell)
            if st is not None:
                st.started = self.clock()

    def phase(self, cell: Any, text: str) -> None:
        with self._lock:
            st = self.cells.get(cell)
            if st is None:
                return
            st.phase = text
            kind = text.split(":", 1)[0]
            now = self.clock()
            if not self.plain or (kind == st.phase_kind and now - st.phase_printed < PLAIN_EVERY):
                return
            st.phase_kind, st.phase_printed = kind, now
        self._print(f"{self.indent}{st.label}: {text}")

    def record(self, cell: Any, rec: dict[str, Any]) -> None:
        with self._lock:
            st = self.cells.get(cell)
            if st is None:
                return
            st.done += 1
            st.phase = ""
            st.slots += int(rec.get("k") or 1)
            if rec.get("status") in FAILED:
                st.failed += 1
                if not st.first_failure:
                    st.first_failure = f"{rec['status']}: {rec.get('reason') or 'no reason given'}"
            if rec.get("status") == "ok":
                st.ok += 1
                for cf in rec.get("cfs") or []:
                    st.cfs.append(cf)
                    st.targets.append(int(rec["target"]))
            sec = rec.get("seconds")
            if isinstance(sec, (int, float)) and sec == sec:
                st.seconds.append(float(sec))
        self._maybe_plain_line()

    def finish(self, cell: Any) -> None:
        with self._lock:
            st = self.cells.get(cell)
            if st is None:
                return
            st.ended = self.clock()
        self._print(self.indent + self.result_line(st))

    # ------------------------------------------------------------------ text
    def result_line(self, st: _CellState) -> str:
        """``✓ label  valid 31/50 · ok 50/50 · 0.41 s/query · 21 s``; ``✗`` for a cell cut short
        or whose every query failed, the latter followed by its first failure and the log that
        holds the traceback (``✗ label  ok 0/4 · – · 2 s · error: fit failed: KeyError: 'x' at
        pkg/fit.py:12 · log: OUT/logs/label-seed0.log``)."""
        parts = []
        if self.validity is not None and st.slots:
            try:
                n_valid = int(self.validity(st.cfs, st.targets)) if st.cfs else 0
                parts.append(f"valid {n_valid}/{st.slots}")
            except Exception:  # noqa: BLE001 - the line is informative only
                pass
        parts.append(f"ok {st.ok}/{st.total}")
        med = sorted(st.seconds)[len(st.seconds) // 2] if st.seconds else float("nan")
        parts.append(fmt_rate(med))
        if st.started is not None and st.ended is not None:
            parts.append(fmt_duration(st.ended - st.started))
        all_failed = st.done > 0 and st.failed == st.done
        if all_failed:
            why = " ".join(st.first_failure[: REASON_CHARS * 4].split())
            parts.append(why if len(why) <= REASON_CHARS else why[: REASON_CHARS - 1] + "…")
            if st.log is not None and st.log.exists():  # the traceback, the worker's output
                parts.append(f"log: {st.log}")
        mark = "✓" if st.done >= st.total and not all_failed else "✗"
        return f"{mark} {st.label}  " + " · ".join(parts)

    def totals(self) -> tuple[int, int, float]:
        """(queries done, queries planned, ETA in seconds)."""
        with self._lock:
            done = sum(c.done for c in self.cells.values())
            total = sum(c.total for c in self.cells.values())
            now = self.clock()
            rem = [c.remaining(now) for c in self.cells.values() if c.ended is None]
        return done, total, schedule.estimate(rem, self.jobs)

    def status_line(self) -> str:
        done, total, eta = self.totals()
        elapsed = self.clock() - self.t0
        return (f"{done}/{total} queries · {fmt_duration(elapsed)} elapsed · "
                f"ETA {fmt_duration(eta) if done < total else '–'}")

    def running_lines(self) -> list[str]:
        with self._lock:
            running = [c for c in self.cells.values() if c.started is not None and c.ended is None]
        out, now = [], self.clock()
        for c in running:
            what = c.phase or (fmt_rate(c.rate(now)) if c.done else "starting / fitting")
            out.append(f"  {c.label}: {c.done}/{c.total} · {what}")
        return out

    def _maybe_plain_line(self) -> None:
        if not self.plain or self.quiet:
            return
        now = self.clock()
        with self._lock:
            if now - self._last_plain < PLAIN_EVERY:
                return
            self._last_plain = now
        self._print(self.indent + self.status_line())

    def _render(self) -> Any:
        done, total, _ = self.totals()
        grid = Table.grid(padding=(0, 1))
        grid.add_column()
        grid.add_column()
        grid.add_row(ProgressBar(total=max(total, 1), completed=done, width=30),
                     Text(self.status_line()))
        lines = [Text(self.indent + line, overflow="ellipsis", no_wrap=True)
                 for line in self.running_lines()]
        return Group(grid, *lines)


class PhaseStatus:
    """The status line of the parent's own long phases (task load, synthetic data): a rich
    spinner on a terminal, plain lines at most every few seconds otherwise."""

    def __init__(self, console: Any, text: str, quiet: bool = False, every: float = 10.0) -> None:
        self.console = console
        self.text = text
        self.quiet = quiet
        self.every = every
        self._status: Any = None
        self._last = -1e9
        self._prev: Any = None

    def __enter__(self) -> PhaseStatus:
        if not self.quiet and self.console.is_terminal:
            self._status = self.console.status(self.text)
            self._status.__enter__()
        self._prev = phase.set_sink(self.update)
        return self

    def update(self, text: str) -> None:
        if self.quiet:
            return
        if self._status is not None:

            self._status.update(escape(text))
            return
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.console.print(text, markup=False, highlight=False)

    def __exit__(self, *exc: Any) -> None:
        phase.set_sink(self._prev)
        if self._status is not None:
            self._status.__exit__(*exc)
