"""Using the machine: the per-query budget, how many cells run at once, in what order, on how
many threads each, and how long the plan is expected to take.

The cost model is deliberately small.  A method declares on its ``GeneratorSpec`` the expected
seconds per query on one core for each variant (``cost``) and which variants are *anytime*
searches that use the whole per-query budget (``anytime``).  A cell's expected duration is

    CELL_OVERHEAD + queries x (budget if anytime else cost, else DEFAULT_COST)

unless the same cell (task, method, variant, threads, k, budget) has run on this machine
before: then ``CELL_OVERHEAD + fit + queries x seconds per query`` as measured then
(``timings``; ``Costs`` decides which).

Cells run longest-expected-first, so the long ones start while short ones fill the gaps, and the
plan's estimate is the larger of (sum of cells / jobs) and the longest cell.  A variant may also
declare ``first_use`` seconds, a one-time set-up its first cell caches (a fine-tune): it counts
in the order (such a cell starts early) and in the plan line's second estimate only.  Cells
sharing a first-use set-up (``GeneratorSpec.setup``) are started through ``SetupGate``.
Nothing but the order and the displayed estimates depends on these numbers.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from threadpoolctl import threadpool_limits

from cfbench.core.machine import usable_cores
from cfbench.core.plugins import registry
from cfbench.execution.timings import Timings, key

#: the hard kill never comes before this many budgets per query
KILL_BUDGETS = 10.0
#: seconds per query assumed for a method that declares no cost
DEFAULT_COST = 1.0
#: seconds per cell for starting a worker and fitting (beyond the per-query cost)
CELL_OVERHEAD = 2.0
#: the environment a worker gets unless the user set these already
QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def hard_limit(timeout: float, budget: float, batch: int, grace: float) -> float:
    """Seconds before a worker answering ``batch`` queries is killed: far above the budget."""
    return max(timeout, KILL_BUDGETS * budget) * batch + grace


def generator_spec(method: str) -> Any:
    """The method's ``GeneratorSpec``, or None for an unknown one (resolving it reports that)."""

    try:
        return registry().generator(method)
    except Exception:  # noqa: BLE001
        return None


def _seconds(table: Any, variant: str, default: float) -> float:
    """``table[variant]`` (else ``table["*"]``, else ``default``) as seconds; a plugin's hint
    that is not a finite number >= 0 counts as ``default``: a hint must not stop the run."""
    try:
        table = dict(table or {})
        value = float(table.get(variant, table.get("*", default)))
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) and value >= 0 else default


def per_query_cost(spec: Any, variant: str, budget: float) -> float:
    """Expected seconds per query of one variant (see the module docstring)."""
    if variant in (getattr(spec, "anytime", ()) or ()):
        return float(budget)
    return _seconds(getattr(spec, "cost", None), variant, DEFAULT_COST)


def cell_cost(method: str, variant: str, n_queries: int, budget: float) -> float:
    """Expected seconds of one cell with ``n_queries`` queries left."""
    return CELL_OVERHEAD + n_queries * per_query_cost(generator_spec(method), variant, budget)


def first_use_cost(method: str, variant: str) -> float:
    """Seconds the first cell of a variant may spend on a one-time set-up that it caches
    (``GeneratorSpec.first_use``, e.g. a LoRA fine-tune): 0 when cached, unknown beforehand."""
    return _seconds(getattr(generator_spec(method), "first_use", None), variant, 0.0)


class Costs:
    """Expected seconds of the cells of one plan: what the same cell took on this machine before
    (``timings``), else what its method declares.  Anytime variants take the budget either way."""

    def __init__(self, budget: float, task: str = "", threads: int = 1, k: int = 1,
                 timings: Timings | None = None) -> None:
        self.budget, self.task, self.threads, self.k = float(budget), task, int(threads), int(k)
        self.timings = timings

    def measured(self, cell: Any) -> tuple[float, float] | None:
        """``(seconds per query, fit seconds)`` of ``cell`` measured here, or None."""
        if self.timings is None or cell.variant in (getattr(generator_spec(cell.method), "anytime", ()) or ()):
            return None
        return self.timings.get(key(self.task, cell.method, cell.variant, self.threads, self.k, self.budget))

    def cell(self, cell: Any, n_queries: int) -> float:
        """Expected seconds of ``cell`` with ``n_queries`` queries left."""
        m = self.measured(cell)
        if m is None:
            return cell_cost(cell.method, cell.variant, n_queries, self.budget)
        return CELL_OVERHEAD + m[1] + n_queries * m[0]

    def first_use(self, cell: Any) -> float:
        """A possible one-time set-up (``first_use_cost``); none for a cell that ran here before."""
        return 0.0 if self.measured(cell) is not None else first_use_cost(cell.method, cell.variant)

    def measured_share(self, cells: Sequence[Any]) -> int:
        """How many of ``cells`` are estimated from their times here."""
        return sum(self.measured(c) is not None for c in cells)


def longest_first(work: Sequence[tuple[Any, Any]], budget: float,
                  costs: Costs | None = None) -> list[tuple[Any, Any]]:
    """``(cell, queries)`` pairs sorted by expected duration, longest first (stable).

    A cell's possible first-use set-up counts here: starting it early costs little when the
    set-up is cached, and when it is not, a cell that long must not start last.
    """
    costs = costs or Costs(budget)

    def order(w: tuple[Any, Any]) -> float:
        return -(costs.cell(w[0], len(w[1])) + costs.first_use(w[0]))

    return sorted(work, key=order)


def setup_key(method: str) -> str:
    """The first-use set-up a method's cells share (``GeneratorSpec.setup``; "" for none)."""
    key = getattr(generator_spec(method), "setup", "")
    return key if isinstance(key, str) else ""


class SetupGate:
    """Hands out ``(cell, queries)`` work in plan order to the threads that run cells, holding
    back a cell whose set-up key (``setup_key``) a running cell is still preparing.

    The first cell of each key goes ahead; the rest of that key wait until ``fitted(key)``
    (called when that cell has fitted, failed to or ended), and meanwhile a free thread takes
    the next cell of another key.  Without this, a second cell of the key would hold a slot
    doing nothing but wait for the first one's set-up (converting the embedded model: half a
    minute to a minute).
    """

    def __init__(self, work: Sequence[tuple[Any, Any]], key: Callable[[Any], str]) -> None:
        self._todo = [(cell, todo, key(cell)) for cell, todo in work]
        self._cond = threading.Condition()
        self._preparing: set[str] = set()
        self._ready: set[str] = set()
        self._closed = False

    def next(self) -> tuple[Any, Any, str] | None:
        """The next cell this thread may run, as ``(cell, queries, key)``; None when none is left
        (or after ``close``).  Blocks while every remaining cell waits for a set-up."""
        with self._cond:
            while not self._closed and self._todo:
                for i, (_, _, k) in enumerate(self._todo):
                    if not k or k in self._ready:
                        return self._todo.pop(i)
                    if k not in self._preparing:
                        self._preparing.add(k)  # this cell does the set-up
                        return self._todo.pop(i)
                self._cond.wait()
            return None

    def fitted(self, key: str) -> None:
        """The cell preparing ``key`` has fitted (or failed, or ended): release the others."""
        if not key:
            return
        with self._cond:
            self._preparing.discard(key)
            self._ready.add(key)
            self._cond.notify_all()

    def close(self) -> None:
        """Hand out nothing more (an interrupt): waiting threads return."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def estimate(costs: Sequence[float], jobs: int) -> float:
    """Expected wall time of cells with ``costs`` seconds run ``jobs`` at a time."""
    if not costs:
        return 0.0
    return max(sum(costs) / max(1, jobs), max(costs))


def threads_per_cell(jobs: int, n_cells: int, cores: int | None = None) -> int:
    """CPU threads each concurrently running cell may use: the cores divided among them."""
    cores = cores or usable_cores()
    return max(1, cores // max(1, min(jobs, n_cells)))


def worker_env(threads: int, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a worker: ``threads`` for OpenMP/MKL/OpenBLAS and quiet libraries,
    except where the user set a variable explicitly."""
    env = dict(os.environ if environ is None else environ)
    if env.get("OMP_NUM_THREADS", "").isdigit() and int(env["OMP_NUM_THREADS"]) > 0:
        threads = int(env["OMP_NUM_THREADS"])  # the user's explicit choice wins
    for var in THREAD_VARS:
        env.setdefault(var, str(threads))
    env.setdefault("CFBENCH_WORKER_THREADS", str(threads))
    for var, value in QUIET_ENV.items():
        env.setdefault(var, value)
    return env


def quiet_libraries() -> None:
    """Keep library chatter out of the display (this process): no transformers FutureWarnings,
    advisory warnings or "Loading weights" bars, no Hub progress bars."""
    for var, value in QUIET_ENV.items():
        os.environ.setdefault(var, value)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|torch)")
    warnings.filterwarnings("ignore", message=r".*past_key_values.*")
    tf = sys.modules.get("transformers")
    if tf is not None:  # imported already (fork-server preload): the env came too late
        try:
            tf.utils.logging.set_verbosity_error()
            tf.utils.logging.disable_progress_bar()
        except Exception:  # noqa: BLE001 - cosmetic only
            pass
    hub = sys.modules.get("huggingface_hub")
    if hub is not None:
        try:
            hub.utils.disable_progress_bars()
        except Exception:  # noqa: BLE001 - cosmetic only
            pass


def apply_worker_threads() -> int:
    """In a worker: cap BLAS/OpenMP pools and torch at ``$CFBENCH_WORKER_THREADS``.

    Libraries loaded before the environment was set (numpy's OpenBLAS, torch in the fork
    server) are capped through threadpoolctl and ``torch.set_num_threads``; a method that sets
    its own threads later (``$CFBENCH_LLM_THREADS``) still wins.  Returns the count (0: none set).
    """
    try:
        n = int(os.environ.get("CFBENCH_WORKER_THREADS", "0"))
    except ValueError:
        return 0
    if n < 1:
        return 0
    try:

        threadpool_limits(n)
    except Exception:  # noqa: BLE001 - an optimisation only
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            torch.set_num_threads(n)
        except Exception:  # noqa: BLE001
            pass
    return n
