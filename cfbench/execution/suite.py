"""Experiments as files: ``--param`` values and suite files (tasks × methods × seeds + settings).

A suite file is TOML.  Top-level keys are the settings of every run; ``[[runs]]`` tables (optional)
override them per run; ``[augment]`` adds the label-scarcity augmentation; ``[check]`` holds the
tolerances of ``cfbench leaderboard --check``::

    tasks = ["heart"]                      # or task = "heart"
    methods = ["nearest-neighbour", "dice:random",
               { name = "dice:random", params = { total_cfs = 20 } }]
    seeds = [0, 1, 2]                      # or "0-4"
    n_queries = 20
    k = 1
    budget = 10
    executor = "local"                     # or "ray", with ray_address = "host:port"

    [augment]                              # optional
    methods = ["nearest-neighbour"]        # default: the run's methods
    seeds = [0, 1, 2, 3, 4]                # default: the run's seeds
    max_per_class = 10

Each (run, task) becomes one ``SuiteRun`` with its own folder (``name``, default the task's
name; for a task given by the path of its spec file, the name inside that spec).  Settings are
checked by the same functions as the flags (``cfbench.execution.config``).  Every mistake is one line
naming the file and the key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfbench.core.errors import UserError
from cfbench.core.names import MAX_NAME, NAME_RULE, check_name
from cfbench.core.safe_load import MAX_TOML_BYTES, loads_toml, read_limited
from cfbench.execution import config as checks
from cfbench.execution.config import DEFAULTS
from cfbench.execution.executor import EXECUTORS
from cfbench.execution.select import selection_item
from cfbench.tasks.spec import check_not_reserved, load_spec

#: a setting's check: a type (or types) for the value, or a ``cfbench.execution.config`` validator
Check = type | tuple[type, ...] | Callable[[Any, str], Any]

#: run settings a suite may set, with their checks (those of the flags) and the defaults of
#: ``cfbench run``
SETTINGS: dict[str, tuple[Check, Any]] = {
    "seeds": (checks.seeds, DEFAULTS["seeds"]),
    "n_queries": (checks.n_queries, None),
    "k": (checks.k, DEFAULTS["k"]),
    "budget": (checks.budget, DEFAULTS["budget"]),
    "timeout": (checks.timeout, DEFAULTS["timeout"]),
    "fit_timeout": (checks.fit_timeout, DEFAULTS["fit_timeout"]),
    "jobs": (checks.jobs, None),  # default: the usable CPU cores
    "data_dir": (checks.text, None),
    "executor": (checks.text, None),  # default: $CFBENCH_EXECUTOR, else local
    "ray_address": (checks.text, None),  # with executor = "ray": the cluster (default: a local one)
}
AUGMENT: dict[str, tuple[Check, Any]] = {
    "methods": (list, None),  # default: the run's
    "seeds": (checks.seeds, None),  # default: cfbench.execution.augment.DEFAULT_SEEDS (0-9)
    "scenarios": (list, ["A", "B", "C"]),
    "fraction": ((int, float), 0.5),
    "curve": (list, []),  # more fractions removed, for the scarcity curve
    "max_per_class": (checks.max_per_class, None),
    "timeout": (checks.timeout, None),  # default: the run's
    "budget": (checks.budget, None),  # default: the run's
}
RUN_KEYS = {"task", "tasks", "name", "methods", "augment", *SETTINGS}
TOP_KEYS = RUN_KEYS - {"name"} | {"runs", "check"}
CHECK = {"atol": 0.01, "rtol": 0.05}


# ----------------------------------------------------------------------------- --param


# ----------------------------------------------------------------------------- suite files


@dataclass(frozen=True)
class SuiteRun:
    """One run a suite asks for: a task, its methods (with parameter groups) and settings."""

    name: str
    task: str
    methods: str  # a --methods selection; parameters in label form, dice:random[total_cfs=20]
    settings: dict[str, Any]
    augment: dict[str, Any] | None = None


@dataclass(frozen=True)
class Suite:
    path: Path
    sha256: str
    runs: tuple[SuiteRun, ...]
    check: dict[str, float] = field(default_factory=lambda: dict(CHECK))

    def identity(self) -> dict[str, str]:
        """What run.json and the board record: the file's name and SHA-256."""
        return {"file": self.path.name, "sha256": self.sha256}


def _typed(value: Any, types: type | tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, types):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise UserError(f"{where}: expected {names}, got {value!r}")
    return value


def methods_value(value: Any, where: str) -> str:
    """``methods`` entries (names, or tables with name and params) -> a ``--methods`` selection."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: expected a list of methods, e.g. [\"nice\", "
                        "{ name = \"dice:random\", params = { total_cfs = 20 } }]")
    items: list[str] = []
    for i, entry in enumerate(value):
        at = f"{where}[{i}]"
        if isinstance(entry, str):
            name, params = entry, {}
        elif isinstance(entry, dict):
            unknown = sorted(set(entry) - {"name", "params"})
            if unknown:
                raise UserError(f"{at}: unknown key {unknown[0]!r}; valid keys: name, params")
            name = _typed(entry.get("name"), str, f"{at}.name")
            params = _typed(entry.get("params", {}), dict, f"{at}.params")
            for k, v in params.items():
                if isinstance(v, (dict, list)) or not isinstance(v, (str, int, float, bool)):
                    raise UserError(f"{at}.params.{k}: expected a number, true/false or a string, "
                                    f"got {v!r}")
        else:
            raise UserError(f"{at}: expected a method name or {{ name = ..., params = {{...}} }}, "
                            f"got {entry!r}")
        name = name.strip()
        if not name or any(c in name for c in ",[]"):
            raise UserError(f"{at}: expected one method name, got {name!r}")
        item = selection_item(name, params)
        if item not in items:
            items.append(item)
    return ",".join(items)


def _check_executor(settings: dict[str, Any], where: str) -> None:
    """``executor`` and ``ray_address`` checked as ``--executor`` and ``--ray-address`` are."""

    name = settings.get("executor")
    if name is not None and name not in EXECUTORS:
        raise UserError(f"{where} executor: unknown executor {name!r}; valid choices: "
                        f"{', '.join(EXECUTORS)}")
    address = settings.get("ray_address")
    if address is not None and (name == "local" or not address.strip()):
        raise UserError(f"{where} ray_address: {address!r} needs executor = \"ray\" and a "
                        "cluster address (host:port or auto)")


def _settings(table: dict[str, Any], spec: dict[str, tuple[Check, Any]], prefix: str
              ) -> dict[str, Any]:
    """The keys of ``spec`` in ``table``, each checked; errors name ``prefix + key``."""
    out = {}
    for key, (check, _) in spec.items():
        if key in table:
            at = prefix + key
            out[key] = (_typed(table[key], check, at) if isinstance(check, (type, tuple))
                        else check(table[key], at))
    return out


def load_suite(path: Path) -> Suite:
    """Read and validate a suite file; every problem is one line naming the file and key."""
    path = Path(path)
    data = read_limited(path, "the suite file", MAX_TOML_BYTES)
    raw = loads_toml(data, str(path), "suite file")
    return Suite(path, hashlib.sha256(data).hexdigest(), _runs(raw, path), _check(raw, path))


def _check(raw: dict[str, Any], path: Path) -> dict[str, float]:
    table = _typed(raw.get("check", {}), dict, f"{path}: check")
    unknown = sorted(set(table) - set(CHECK))
    if unknown:
        raise UserError(f"{path}: unknown key check.{unknown[0]}; valid keys: {', '.join(CHECK)}")
    return {k: float(_typed(table.get(k, d), (int, float), f"{path}: check.{k}"))
            for k, d in CHECK.items()}


def _runs(raw: dict[str, Any], path: Path) -> tuple[SuiteRun, ...]:
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(TOP_KEYS))}")
    tables = raw.get("runs", [{}])
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise UserError(f"{path}: runs: expected one or more [[runs]] tables")
    runs: list[SuiteRun] = []
    for i, table in enumerate(tables):
        where = f"{path}: runs[{i}]" if "runs" in raw else f"{path}:"
        bad = sorted(set(table) - RUN_KEYS)
        if bad:
            raise UserError(f"{where} unknown key {bad[0]!r}; valid keys: {', '.join(sorted(RUN_KEYS))}")
        merged = {k: v for k, v in raw.items() if k not in ("runs", "check")}
        if "task" in table or "tasks" in table:
            merged.pop("task", None)
            merged.pop("tasks", None)
        aug = {**_typed(raw.get("augment", {}), dict, f"{path}: augment"),
               **_typed(table.get("augment", {}), dict, f"{where} augment")}
        merged.update(table)
        runs.extend(_expand(merged, aug, "augment" in raw or "augment" in table, where))
    folders = [r.name for r in runs]
    dup = sorted({f for f in folders if folders.count(f) > 1})
    if dup:
        raise UserError(f"{path}: two runs write to the folder {dup[0]!r}; give each a distinct name")
    return tuple(runs)


def _expand(table: dict[str, Any], aug: dict[str, Any], has_aug: bool, where: str) -> list[SuiteRun]:
    if "task" in table and "tasks" in table:
        raise UserError(f"{where} give task or tasks, not both")
    tasks = [table["task"]] if "task" in table else table.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) and t for t in tasks):
        raise UserError(f"{where} tasks: expected a task name or a list of task names")
    if "methods" not in table:
        raise UserError(f"{where} methods: missing; list the methods to run, or [\"all\"]")
    methods = methods_value(table["methods"], f"{where} methods")
    settings = _settings(table, SETTINGS, f"{where} ")
    _check_executor(settings, where)
    augment = None
    if has_aug:
        bad = sorted(set(aug) - set(AUGMENT))
        if bad:
            raise UserError(f"{where} unknown key augment.{bad[0]}; valid keys: "
                            f"{', '.join(sorted(AUGMENT))}")
        augment = {k: d for k, (_, d) in AUGMENT.items()}
        augment.update(_settings(aug, AUGMENT, f"{where} augment."))
        augment["methods"] = (methods_value(augment["methods"], f"{where} augment.methods")
                              if augment["methods"] is not None else methods)

    name = table.get("name")
    if name is not None:
        if len(tasks) > 1 or not isinstance(name, str):
            raise UserError(f"{where} name: expected one folder name for a run of one task, "
                            f"got {name!r}")
        check_name(name, f"{where} name", "run folder name")
    return [SuiteRun(name or _folder(task, f"{where} tasks"), task, methods, dict(settings),
                     dict(augment) if augment else None) for task in tasks]


def _folder(task: str, where: str) -> str:
    """The run folder of ``task``: its name, or for the path of a spec file the spec's own
    (checked) name, so that ``../specs/x.toml`` cannot place a run outside ``--out``."""

    if NAME_RULE.fullmatch(task) and not task.endswith(".toml") and len(task) <= MAX_NAME:
        return task
    try:
        spec = load_spec(task)
        check_not_reserved(spec.name, Path(task), f"{task}: name")
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    return spec.name
