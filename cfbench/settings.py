"""Run settings: one validator per setting, shared by the flags, suite files and ``RunConfig``.

A suite file's ``k = 3`` and ``--k 3`` mean the same, so they are checked by the same function,
with the same limits: each takes the value (command-line text, or a TOML value) and ``where``
(the flag, or the file and key) and returns the checked value, or raises a one-line
``UserError`` naming ``where``, the bad value and what is valid.  The upper limits are far
above any real run; they stop values that would only fail after the work (an ``int`` too large
for numpy, a timeout ``threading`` refuses, a seed range that fills memory).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from cfbench.errors import UserError

MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's random_state range
MAX_SEEDS = 10_000  # seeds per run: each one is a full pass over every method
MAX_K = 1_000  # counterfactuals per query
MAX_QUERIES = 1_000_000  # queries per source class
MAX_JOBS = 4_096  # cells in parallel (a Ray cluster may have many cores)
MAX_PER_CLASS = 1_000_000  # augmentation: distinct CFs per depleted class
MAX_SECONDS = 30 * 24 * 3600.0  # budget, timeout, fit_timeout: 30 days

#: Task names become file names (leaderboard/<name>.json): no path separators, no leading dot
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: ... and folder names (runs/<name>/...), with room in the path for the files inside
MAX_NAME = 100
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


def check_name(name: str, where: str, what: str = "task name") -> str:
    """``name`` if it can name files and folders (``NAME_RULE``, at most ``MAX_NAME``
    characters), else one line naming ``where`` and the rule."""
    if len(name) > MAX_NAME:
        raise UserError(f"{where} {name[:40]!r}... is {len(name)} characters long; valid: a "
                        f"{what} of at most {MAX_NAME} characters")
    if not NAME_RULE.fullmatch(name):
        raise UserError(f"{where} {name!r} is not a valid {what}; expected letters, digits, '.', "
                        f"'_' or '-', starting with a letter or digit (pattern {NAME_RULE.pattern})")
    return name
