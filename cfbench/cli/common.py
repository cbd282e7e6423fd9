"""What the command modules share: the parser class, the flags of ``run`` and ``augment``, and
the checks, console and displays around a run, so both commands behave alike."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
from rich.console import Console

from cfbench import entry
from cfbench.cli.progress import PhaseStatus, ProgressDisplay
from cfbench.core import machine
from cfbench.core.errors import UserError
from cfbench.core.plugins import registry
from cfbench.execution import config as settings
from cfbench.execution import forkserver, schedule
from cfbench.execution.executor import ENV_VAR, executor_name, get_executor


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each flag's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, []) or "(default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (no usage block) with exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def flag(check: Callable[[Any, str], Any], name: str) -> Callable[[str], Any]:
    """An argparse ``type`` for the flag ``name`` that runs the setting's own validator
    (``cfbench.execution.config``, the one a suite file's key goes through too)."""
    def parse(text: str) -> Any:
        try:
            return check(text, name)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{name}: ")) from None

    parse.__name__ = name
    return parse


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """The flags ``run`` and ``augment`` share: task, methods, seeds, limits, folder, executor."""
    p.add_argument("--task", default=None,
                   help="registered task name, path of a spec file, or all (run: every task whose data is present)")
    p.add_argument("--methods", default=None,
                   help="'all' (default) or comma-separated, e.g. dice,nice:sparsity; with "
                        "--resume: the run's own list")
    p.add_argument("--param", action="append", default=[], dest="params", metavar="M[:V].KEY=VALUE",
                   help="a method parameter, e.g. dice:random.total_cfs=20 (repeatable; "
                        "`cfbench list methods --params` shows them)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=flag(settings.seeds, "--seed"), dest="seeds",
                       default=settings.DEFAULTS["seeds"],
                       help="one seed (default: 0; for augment the repetitions 0-9)")
    seeds.add_argument("--seeds", type=flag(settings.seeds, "--seeds"), dest="seeds",
                       help="seeds: 0,1,2 or 0-4")
    p.add_argument("--budget", type=flag(settings.budget, "--budget"), default=settings.DEFAULTS["budget"],
                   help="search budget in CPU seconds per query, the same for every method "
                        "(anytime methods such as CFNOW search until it runs out; CPU time, so "
                        "a busy machine does not shrink the search)")
    p.add_argument("--timeout", type=flag(settings.timeout, "--timeout"), default=settings.DEFAULTS["timeout"],
                   help="hard safety kill in seconds per query: a worker is killed after "
                        f"max(timeout, {schedule.KILL_BUDGETS:g} x budget) x batch + 10 s")
    p.add_argument("--fit-timeout", type=flag(settings.fit_timeout, "--fit-timeout"),
                   default=settings.DEFAULTS["fit_timeout"], help="seconds for fit")
    p.add_argument("--jobs", type=flag(settings.jobs, "--jobs"), default=machine.usable_cores(),
                   help="cells run in parallel; for augment, repetitions run side by side "
                        "(default: the usable CPU cores, here %(default)s)")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default: a new runs/<task>/<UTC timestamp>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (without --out: the latest run of the task)")
    p.add_argument("--data-dir", default=None, help="dataset folder (e.g. a real AI-READI release)")
    p.add_argument("--quiet", action="store_true", help="no progress display or tables")
    p.add_argument("--executor", default=None, help="where cells run: local (default) or ray; "
                   "default $CFBENCH_EXECUTOR, else local")
    p.add_argument("--ray-address", default=None, help="with --executor ray: the cluster to use "
                   "(host:port); default: start a local Ray cluster")


def executor(args: argparse.Namespace, suite: dict[str, Any] | None = None,
             given: set[str] = frozenset(), source: str = "") -> dict[str, Any]:
    """``--executor`` (else a suite's ``executor``, else $CFBENCH_EXECUTOR, else local) and
    ``--ray-address`` (else the suite's ``ray_address``), checked.  ``source`` names the suite
    file the settings ``suite`` come from."""
    s = suite or {}
    chosen, address = args.executor, args.ray_address
    if "executor" not in given and s.get("executor") is not None:
        chosen = s["executor"]
    suite_address = "ray_address" not in given and s.get("ray_address") is not None
    if suite_address:
        address = s["ray_address"]
    name = executor_name(chosen)
    if name == "local":
        if suite_address:
            raise UserError(f"{source}: ray_address {address!r} needs executor = \"ray\" "
                            f"(in the file, --executor ray or {ENV_VAR}=ray)")
        get_executor(name, address=address)  # refuses a --ray-address
    return {"executor": name, "ray_address": address}


def warm(methods: str | None) -> None:
    """Start the workers' fork server with the chosen methods' preloads, so its imports overlap
    with ours and the task load (names are checked later, with proper errors)."""
    schedule.quiet_libraries()  # before the fork server starts, so it and every worker inherit it
    names = {item.strip().partition("[")[0].partition(":")[0]
             for item in (methods or "all").split(",")}
    modules = [m for name, spec in sorted(registry().generators.items())
               if "all" in names or name in names for m in spec.preload]
    forkserver.warm(modules)


def check_run(cfg: settings.RunConfig, require_methods: bool, marker: str = "run.json") -> entry.Plan:
    """Everything about a run that can be wrong, checked before any work (``entry.prepare``)."""
    return entry.prepare(cfg, require_methods=require_methods, marker=marker)


def load_task(cfg: settings.RunConfig, quiet: bool, checked: entry.Plan
              ) -> tuple[Any, list, dict, Console]:
    """Load the task of a checked config (``check_run``) with a status line, and say where the
    run goes and what it skips: (task, choices, skipped, console)."""
    out = console(quiet)
    task = entry.load_task(checked, status=lambda text: PhaseStatus(out, text, quiet))
    out.print(f"run folder: {cfg.out}" + (" (resumed)" if cfg.resume else ""), markup=False)
    for name, hint in checked.skipped.items():
        out.print(f"skipping {name}: {hint}", style="yellow", markup=False)
    problems = len(registry().broken) + len(registry().conflicts)
    if problems:
        out.print(f"[yellow]{problems} plugin problem(s)[/yellow]: see `cfbench list methods`")
    return task, checked.pairs, checked.skipped, out


def console(quiet: bool) -> Console:
    """The display on stderr; into a file or pipe its lines are written whole, never wrapped."""
    return Console(stderr=True, quiet=quiet, soft_wrap=not sys.stderr.isatty())


def display(out: Console, quiet: bool, indent: str = "", task: Any = None) -> ProgressDisplay:
    """The run's progress display; with ``task``, finished cells show their CFs' validity."""
    validity = None
    if task is not None:

        def validity(cfs: list, targets: list) -> int:
            pred = task.predict(pd.DataFrame(cfs, columns=task.schema.names, dtype=float))
            return int((np.asarray(pred) == np.asarray(targets)).sum())

    return ProgressDisplay(out, quiet=quiet, indent=indent, validity=validity)
