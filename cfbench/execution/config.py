"""A run's settings in one place: their defaults, one validator per setting (shared by the flags,
suite files and ``RunConfig``) and the ``RunConfig`` and ``Cell`` they make.

A suite file's ``k = 3`` and ``--k 3`` mean the same, so they are checked by the same function,
with the same limits: each takes the value (command-line text, or a TOML value) and ``where``
(the flag, or the file and key) and returns the checked value, or raises a one-line
``UserError`` naming ``where``, the bad value and what is valid.  The upper limits are far
above any real run; they stop values that would only fail after the work (an ``int`` too large
for numpy, a timeout ``threading`` refuses, a seed range that fills memory).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from cfbench.core.errors import UserError
from cfbench.records.labels import Params, method_label

MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's random_state range
MAX_SEEDS = 10_000  # seeds per run: each one is a full pass over every method
MAX_K = 1_000  # counterfactuals per query
MAX_QUERIES = 1_000_000  # queries per source class
MAX_JOBS = 4_096  # cells in parallel (a Ray cluster may have many cores)
MAX_PER_CLASS = 1_000_000  # augmentation: distinct CFs per depleted class
MAX_SECONDS = 30 * 24 * 3600.0  # budget, timeout, fit_timeout: 30 days

_SEEDS_FORM = "integer seeds like 0, 0,1,2 or 0-4 (in a suite file also [0, 1, 2])"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def _integer(value: Any, where: str, what: str, maximum: int) -> int:
    """``value`` (an int, or its text) in 1..maximum; a bool is not an integer."""
    v = value
    if isinstance(value, str):
        try:
            v = int(value.strip())
        except ValueError:
            v = None
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= maximum:
        raise UserError(f"{where}: expected {what}, got {_shown(value)}; valid: 1 to {maximum}")
    return v


def k(value: Any, where: str = "--k") -> int:
    """Counterfactuals per query."""
    return _integer(value, where, "a positive integer", MAX_K)


def n_queries(value: Any, where: str = "--n-queries") -> int:
    """Queries per source class."""
    return _integer(value, where, "a positive integer", MAX_QUERIES)


def jobs(value: Any, where: str = "--jobs") -> int:
    """Cells run in parallel."""
    return _integer(value, where, "a positive integer", MAX_JOBS)


def max_per_class(value: Any, where: str = "--max-per-class") -> int:
    """Augmentation: the cap on distinct counterfactuals per depleted class."""
    return _integer(value, where, "a positive integer", MAX_PER_CLASS)


def seconds(value: Any, where: str) -> float:
    """A duration (budget, timeout, fit_timeout): a positive, finite number of seconds."""
    v = value
    if isinstance(value, str):
        try:
            v = float(value.strip())
        except ValueError:
            v = None
    if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
            or not 0 < v <= MAX_SECONDS):
        raise UserError(f"{where}: expected a positive number of seconds, got {_shown(value)}; "
                        f"valid: more than 0, at most {MAX_SECONDS:.0f} (30 days)")
    return float(v)


def budget(value: Any, where: str = "--budget") -> float:
    """Search budget in CPU seconds per query."""
    return seconds(value, where)


def timeout(value: Any, where: str = "--timeout") -> float:
    """Hard safety kill in seconds per query."""
    return seconds(value, where)


def fit_timeout(value: Any, where: str = "--fit-timeout") -> float:
    """Seconds for a method's fit."""
    return seconds(value, where)


def seeds(value: Any, where: str = "--seeds") -> tuple[int, ...]:
    """``3``, ``"0,1,2"``, ``"0-4"`` or a list of ints: at most ``MAX_SEEDS`` seeds in 0..MAX_SEED.

    A range is counted before it is expanded, so ``"0-10000000000"`` costs nothing.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            if "-" in text.strip("-") and "," not in text:
                a, b = (int(x) for x in text.split("-", 1))
                if b - a + 1 > MAX_SEEDS:
                    raise UserError(f"{where}: {_shown(value)} names {b - a + 1} seeds; at most "
                                    f"{MAX_SEEDS} per run")
                items: list[Any] = list(range(a, b + 1))
            else:
                parts = [s for s in text.split(",") if s.strip()]
                if len(parts) > MAX_SEEDS:
                    raise UserError(f"{where}: {len(parts)} seeds given; at most {MAX_SEEDS} per run")
                items = [int(s) for s in parts]
        except ValueError:
            raise UserError(f"{where}: expected {_SEEDS_FORM}, got {_shown(value)}") from None
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    if not items or any(isinstance(s, bool) or not isinstance(s, int) for s in items):
        raise UserError(f"{where}: expected {_SEEDS_FORM}, got {_shown(value)}")
    if len(items) > MAX_SEEDS:
        raise UserError(f"{where}: {len(items)} seeds given; at most {MAX_SEEDS} per run")
    if any(not 0 <= s <= MAX_SEED for s in items):
        raise UserError(f"{where}: seeds must be integers from 0 to {MAX_SEED}, got {_shown(value)}")
    return tuple(items)


def text(value: Any, where: str) -> str:
    """A string setting (data_dir, executor, ray_address)."""
    if not isinstance(value, str):
        raise UserError(f"{where}: expected str, got {_shown(value)}")
    return value


#: the settings of a run, by their suite-file key (flags use ``--`` and dashes)
RUN: dict[str, Callable[[Any, str], Any]] = {
    "seeds": seeds,
    "n_queries": n_queries,
    "k": k,
    "budget": budget,
    "timeout": timeout,
    "fit_timeout": fit_timeout,
    "jobs": jobs,
    "data_dir": text,
    "executor": text,
    "ray_address": text,
}


# ----------------------------------------------------------------------------- defaults

#: the per-query search budget in seconds (``--budget``): what anytime methods may spend.
#: Chosen from the quality-versus-budget curve of benchmarks/bench_budget.py (docs/baselines.md).
DEFAULT_BUDGET = 2.0


#: the hard timeout per query in seconds (``--timeout``): a safety net, not a budget.
DEFAULT_TIMEOUT = 120.0


#: seconds a generator's ``fit`` may take (``--fit-timeout``)
DEFAULT_FIT_TIMEOUT = 3600.0


@dataclass(frozen=True)
class Cell:
    """One unit of work: a method variant with its parameters on a task with a seed."""

    method: str
    variant: str
    seed: int
    params: Params = ()

    @property
    def label(self) -> str:
        return method_label(self.method, self.variant, self.params)


@dataclass
class RunConfig:
    """What ``cfbench run`` was asked to do; validated by ``resolve_methods`` and ``validate``."""

    task: str
    methods: str = "all"
    seeds: tuple[int, ...] = (0,)
    n_queries: int | None = None
    k: int = 1
    timeout: float = DEFAULT_TIMEOUT
    budget: float = DEFAULT_BUDGET
    fit_timeout: float = DEFAULT_FIT_TIMEOUT
    grace: float = 10.0
    jobs: int = 1
    out: Path = Path("out")
    resume: bool = False
    data_dir: str | None = None
    #: (target, values) groups from ``--param``; target is ``method`` or ``method:variant``;
    #: merged into every cell they name (see ``resolve_methods``)
    params: tuple[tuple[str, dict[str, Any]], ...] = ()
    #: {"file": name, "sha256": hex} when the run came from a suite file (kept in run.json)
    suite: dict[str, str] | None = None
    #: (scenario, fraction, seed): run on the task with training labels removed (augmentation)
    scarcity: tuple[str, float, int] | None = None
    #: where cells run: ``local`` processes or a ``ray`` cluster (see cfbench.execution.executor)
    executor: str = "local"
    ray_address: str | None = None

    def validate(self) -> None:
        """Every setting checked by its own validator, the one its flag and suite key use."""
        k(self.k)
        if self.n_queries is not None:
            n_queries(self.n_queries)
        timeout(self.timeout)
        budget(self.budget)
        fit_timeout(self.fit_timeout)
        jobs(self.jobs)
        seeds(list(self.seeds))


#: every setting's default, read off ``RunConfig``: the one place the flags, suite files and the
#: boards' re-run commands take them from
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(RunConfig) if f.default is not MISSING}
