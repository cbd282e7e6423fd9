"""The ``cfbench`` command line: run, list, leaderboard, plus commands plugins add."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from cfbench.core.errors import UserError
from cfbench.execution import config as settings

if TYPE_CHECKING:
    from cfbench.entry import Plan

LIST_WHAT = ("tasks", "methods", "metrics")
DESCRIPTION = ("cfbench: run counterfactual-explanation generators on a task, score them and show "
               "the leaderboard. Start with `cfbench run --task ai-readi --methods all`.")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each flag's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, []) or "(default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (no usage block) with exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _flag(check: Callable[[Any, str], Any], flag: str) -> Callable[[str], Any]:
    """An argparse ``type`` for ``flag`` that runs the setting's own validator
    (``cfbench.execution.config``, the one a suite file's key goes through too)."""
    def parse(text: str) -> Any:
        try:
            return check(text, flag)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{flag}: ")) from None

    parse.__name__ = flag
    return parse


def _common_run_flags(p: argparse.ArgumentParser) -> None:
    from cfbench.core import machine
    from cfbench.execution import schedule

    p.add_argument("--task", default=None, help="registered task name or path of a spec file")
    p.add_argument("--methods", default=None,
                   help="'all' (default) or comma-separated, e.g. dice,nice:sparsity; with "
                        "--resume: the run's own list")
    p.add_argument("--param", action="append", default=[], dest="params", metavar="M[:V].KEY=VALUE",
                   help="a method parameter, e.g. dice:random.total_cfs=20 (repeatable; "
                        "`cfbench list methods --params` shows them)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=_flag(settings.seeds, "--seed"), dest="seeds",
                       default=settings.DEFAULTS["seeds"],
                       help="one seed (default: 0; for augment the repetitions 0-9)")
    seeds.add_argument("--seeds", type=_flag(settings.seeds, "--seeds"), dest="seeds",
                       help="seeds: 0,1,2 or 0-4")
    p.add_argument("--budget", type=_flag(settings.budget, "--budget"), default=settings.DEFAULTS["budget"],
                   help="search budget in CPU seconds per query, the same for every method "
                        "(anytime methods such as CFNOW search until it runs out; CPU time, so "
                        "a busy machine does not shrink the search)")
    p.add_argument("--timeout", type=_flag(settings.timeout, "--timeout"), default=settings.DEFAULTS["timeout"],
                   help="hard safety kill in seconds per query: a worker is killed after "
                        f"max(timeout, {schedule.KILL_BUDGETS:g} x budget) x batch + 10 s")
    p.add_argument("--fit-timeout", type=_flag(settings.fit_timeout, "--fit-timeout"),
                   default=settings.DEFAULTS["fit_timeout"], help="seconds for fit")
    p.add_argument("--jobs", type=_flag(settings.jobs, "--jobs"), default=machine.usable_cores(),
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


def build_parser() -> argparse.ArgumentParser:
    from cfbench import __version__

    parser = _Parser(prog="cfbench", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"cfbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run methods on a task and score them")
    _common_run_flags(run)
    run.add_argument("--config", type=Path, default=None, metavar="SUITE.toml",
                     help="a suite file: tasks x methods x seeds and settings (flags given here win)")
    run.add_argument("--n-queries", type=_flag(settings.n_queries, "--n-queries"), default=None,
                     help="test instances per source class (default: the task's, usually 50)")
    run.add_argument("--k", type=_flag(settings.k, "--k"), default=settings.DEFAULTS["k"], help="CFs per query")
    augment = run.add_mutually_exclusive_group()
    augment.add_argument("--augment", action="store_true",
                         help="also run the label-scarcity augmentation (scenarios A, B, C) into OUT/augment")
    augment.add_argument("--no-augment", action="store_true",
                         help="with --config: skip the suite file's [augment] table (the runs only)")
    run.add_argument("--wide", action="store_true", help="every column in the result table")
    run.set_defaults(func=cmd_run, _parser=run)

    aug = sub.add_parser("augment", help="label-scarcity augmentation: scenarios A, B, C")
    _common_run_flags(aug)
    aug.add_argument("--scenarios", default="A,B,C", help="comma list of A (positives removed), "
                     "B (negatives), C (both)")
    aug.add_argument("--fraction", type=float, default=0.5, help="share of rows removed (0.5)")
    aug.add_argument("--max-per-class", type=_flag(settings.max_per_class, "--max-per-class"),
                     default=None,
                     help="cap on distinct CFs per depleted class (quick runs; the budget is still "
                     "filled, from fewer CFs)")
    aug.add_argument("--curve", default="", metavar="FRACTIONS",
                     help="more shares removed for the scarcity curve, e.g. 0.25,0.75,0.9 "
                     "(default: none)")
    aug.set_defaults(func=cmd_augment, seeds=tuple(range(10)))

    ls = sub.add_parser("list", help="list tasks, methods or metrics")
    ls.add_argument("what", choices=LIST_WHAT)
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--params", action="store_true", help="methods: each method's parameters")
    ls.add_argument("--format", choices=("table", "json", "markdown"), default=None,
                    help="output format (--json = --format json)")
    ls.set_defaults(func=cmd_list)

    lb = sub.add_parser("leaderboard", help="show a run's leaderboard, or update/check the committed ones")
    lb.add_argument("run_dir", nargs="?", type=Path,
                    help="a run folder (default: the latest run under ./runs)")
    lb.add_argument("--format", choices=("table", "markdown", "json"), default="table",
                    help="output format")
    lb.add_argument("--wide", action="store_true", help="every column in the table")
    lb.add_argument("--update", action="store_true",
                    help="regenerate leaderboard/<task>.{json,md,svg} from RUN_DIR")
    lb.add_argument("--rescore", action="store_true",
                    help="re-score with the current metrics (loads the task): RUN_DIR's "
                    "scores.parquet and summary.json, or without RUN_DIR every committed board "
                    "in --dir from its committed records")
    lb.add_argument("--augment", type=Path, default=None,
                    help="with --update: the --out folder of `cfbench augment` for the same task")
    lb.add_argument("--dir", type=Path, default=Path("leaderboard"), help="leaderboard folder")
    lb.add_argument("--check", action="store_true",
                    help="re-run the smoke configuration and compare with the committed numbers")
    lb.add_argument("--write", action="store_true", help="with --check: store the new smoke numbers")
    lb.add_argument("--validate", action="store_true",
                    help="validate the leaderboard files against leaderboard/schema.json")
    lb.set_defaults(func=cmd_leaderboard)

    from cfbench.report.html import add_parser as add_report_parser

    add_report_parser(sub)

    from cfbench.tasks.init_spec import add_task_commands

    add_task_commands(sub, _Parser)

    from cfbench.core.plugins import add_commands, registry

    add_commands(registry(), sub)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from cfbench.execution import config
    from cfbench.execution.select import group_params

    params = group_params(args.params)
    if args.config is not None:
        return _run_suite(args, params)
    if not args.task:
        raise UserError("cfbench run: give --task (or a suite file with --config)")
    if args.no_augment:  # without a suite file there is no [augment] table to skip
        raise UserError("--no-augment skips a suite file's [augment] table, so it needs --config "
                        "FILE; without --config a run is augmented only when --augment is given")
    where = _executor(args)
    if where["executor"] == "local":
        _warm(args.methods)
    cfg = config.RunConfig(
        task=args.task, methods=args.methods, seeds=tuple(args.seeds), n_queries=args.n_queries,
        k=args.k, timeout=args.timeout, budget=args.budget, fit_timeout=args.fit_timeout,
        jobs=args.jobs, out=args.out, resume=args.resume, data_dir=args.data_dir, params=params,
        **where,
    )
    acfg = _augment_config("A,B,C", 0.5, None, None) if args.augment else None
    _run_one(cfg, acfg, None, args.quiet, _check_run(cfg, True), wide=args.wide)
    return 0


def _check_run(cfg: Any, require_methods: bool, marker: str = "run.json") -> Plan:
    """Everything about a run that can be wrong, checked before any work (``entry.prepare``)."""
    from cfbench import entry

    return entry.prepare(cfg, require_methods=require_methods, marker=marker)


def _run_suite(args: argparse.Namespace, params: tuple) -> int:
    """``cfbench run --config``: every run of the suite, each checked before the first starts."""
    from dataclasses import replace

    from cfbench.execution import config, select
    from cfbench.execution.suite import load_suite
    from cfbench.records import runs

    suite = load_suite(args.config)
    given = _given_flags(args)
    suite_name = Path(args.config).name.split(".")[0]
    base = args.out if args.out is not None else (
        runs.new_run_dir(suite_name) if len(suite.runs) > 1 else None)
    plans = []
    for srun in suite.runs:
        s = srun.settings
        where = _executor(args, s, given, str(args.config))
        cfg = config.RunConfig(
            task=args.task if "task" in given else srun.task,
            methods=args.methods if "methods" in given else srun.methods,
            seeds=tuple(args.seeds) if "seeds" in given else tuple(s.get("seeds", (0,))),
            n_queries=args.n_queries if "n_queries" in given else s.get("n_queries"),
            k=args.k if "k" in given else s.get("k", 1),
            timeout=args.timeout if "timeout" in given else float(s.get("timeout", args.timeout)),
            budget=args.budget if "budget" in given else float(s.get("budget", args.budget)),
            fit_timeout=(args.fit_timeout if "fit_timeout" in given
                         else float(s.get("fit_timeout", settings.DEFAULTS["fit_timeout"]))),
            jobs=args.jobs if "jobs" in given or s.get("jobs") is None else s["jobs"],
            out=args.out if len(suite.runs) == 1 else (base or runs.new_run_dir(suite_name)) / srun.name,
            resume=args.resume,
            data_dir=args.data_dir if "data_dir" in given else s.get("data_dir"),
            params=params, suite=suite.identity(), **where,
        )
        a = None if args.no_augment else srun.augment
        acfg, aug_cfg = None, None
        if a is not None:
            acfg = _augment_config(",".join(a["scenarios"]), float(a["fraction"]),
                                   a["max_per_class"], a["seeds"], a["curve"],
                                   f"{args.config}: augment.curve")
            aug_cfg = replace(cfg, methods=a["methods"] if "methods" not in given else cfg.methods,
                              timeout=float(a["timeout"]) if a["timeout"] and "timeout" not in given
                              else cfg.timeout,
                              budget=float(a["budget"]) if a["budget"] and "budget" not in given
                              else cfg.budget)
        elif args.augment:
            acfg = _augment_config("A,B,C", 0.5, None, None)
        checked = _check_run(cfg, True)
        if aug_cfg is not None:
            select.resolve_methods(aug_cfg.methods, params=aug_cfg.params)
        plans.append((cfg, acfg, aug_cfg, checked))
    if len({str(p[0].out) for p in plans}) < len(plans):
        raise UserError(f"{args.config}: two runs would share the folder {base}; "
                        "remove --task or give the runs distinct names")
    local = [p[0].methods for p in plans if p[0].executor == "local"]
    if local:
        _warm(",".join(local))
    for cfg, acfg, aug_cfg, checked in plans:
        _run_one(cfg, acfg, aug_cfg, args.quiet, checked, wide=args.wide)
    return 0


def _given_flags(args: argparse.Namespace) -> set[str]:
    """The ``run`` flags given on the command line (they override a suite file's settings)."""
    parser = args._parser
    saved = [(a, a.default) for a in parser._actions]
    for a, _ in saved:
        a.default = argparse.SUPPRESS
    try:
        ns, _ = parser.parse_known_args(args._argv)
    finally:
        for a, d in saved:
            a.default = d
    return set(vars(ns))


def _run_one(cfg: Any, acfg: Any, aug_cfg: Any, quiet: bool, checked: Plan,
             wide: bool = False) -> None:
    """One run (and its augmentation, when asked): load, execute, summarise, print."""
    from cfbench import entry
    from cfbench.execution import select
    from cfbench.records.store import SCORES

    task, pairs, skipped, console = _prepare(cfg, quiet, checked)
    console.print(
        f"task [bold]{task.name}[/bold]: {task.scores['n_train']} train / {task.scores['n_test']} test rows; "
        f"classifier {task.spec.model} accuracy {task.scores['accuracy']:.3f}, F1 {task.scores['f1']:.3f}"
    )
    _check_query_count(task, cfg.n_queries, console)
    with _display(console, quiet, task=task) as display:
        result = entry.execute(checked, task, observer=display)
    if not quiet:
        from cfbench.report.board import print_table

        print_table(result.summary, wide=wide)
    console.print(f"wrote {cfg.out / 'summary.json'}, {cfg.out / SCORES} and "
                  f"{cfg.out / 'records.parquet'}")
    if acfg is not None:
        if aug_cfg is not None:
            cfg = aug_cfg
            pairs, _ = select.resolve_methods(cfg.methods, params=cfg.params)
        _augment(cfg, acfg, task, pairs, console, quiet)


def cmd_augment(args: argparse.Namespace) -> int:
    from cfbench.execution import config
    from cfbench.execution.select import group_params

    if not args.task:
        raise UserError("cfbench augment: give --task")
    where = _executor(args)
    cfg = config.RunConfig(
        task=args.task, methods=args.methods, seeds=tuple(args.seeds), timeout=args.timeout,
        budget=args.budget, fit_timeout=args.fit_timeout, jobs=args.jobs, out=args.out,
        resume=args.resume, data_dir=args.data_dir, params=group_params(args.params),
        **where,
    )
    acfg = _augment_config(args.scenarios, args.fraction, args.max_per_class, tuple(args.seeds),
                           args.curve, "--curve")
    checked = _check_run(cfg, require_methods=False, marker="augment")
    if where["executor"] == "local":
        _warm(args.methods)
    task, pairs, _, console = _prepare(cfg, args.quiet, checked)
    _augment(cfg, acfg, task, pairs, console, args.quiet)
    return 0


def _executor(args: argparse.Namespace, settings: dict[str, Any] | None = None,
              given: set[str] = frozenset(), source: str = "") -> dict[str, Any]:
    """``--executor`` (else a suite's ``executor``, else $CFBENCH_EXECUTOR, else local) and
    ``--ray-address`` (else the suite's ``ray_address``), checked.  ``source`` names the suite
    file the settings come from."""
    from cfbench.execution.executor import ENV_VAR, executor_name, get_executor

    s = settings or {}
    flag, address = args.executor, args.ray_address
    if "executor" not in given and s.get("executor") is not None:
        flag = s["executor"]
    suite_address = "ray_address" not in given and s.get("ray_address") is not None
    if suite_address:
        address = s["ray_address"]
    name = executor_name(flag)
    if name == "local":
        if suite_address:
            raise UserError(f"{source}: ray_address {address!r} needs executor = \"ray\" "
                            f"(in the file, --executor ray or {ENV_VAR}=ray)")
        get_executor(name, address=address)  # refuses a --ray-address
    return {"executor": name, "ray_address": address}


def _warm(methods: str | None) -> None:
    """Start the workers' fork server with the chosen methods' preloads, so its imports overlap
    with ours and the task load (names are checked later, with proper errors)."""
    from cfbench.core.plugins import registry
    from cfbench.execution.forkserver import warm
    from cfbench.execution.schedule import quiet_libraries

    quiet_libraries()  # before the fork server starts, so it and every worker inherit it
    names = {item.strip().partition("[")[0].partition(":")[0]
             for item in (methods or "all").split(",")}
    modules = [m for name, spec in sorted(registry().generators.items())
               if "all" in names or name in names for m in spec.preload]
    warm(modules)


def _prepare(cfg: Any, quiet: bool, checked: Plan) -> tuple[Any, list, dict, Any]:
    """Load the task of a checked config (``_check_run``): (task, choices, skipped, console)."""
    from cfbench import entry
    from cfbench.cli.progress import PhaseStatus
    from cfbench.core.plugins import registry

    console = _console(quiet)
    task = entry.load_task(checked, status=lambda text: PhaseStatus(console, text, quiet))
    console.print(f"run folder: {cfg.out}" + (" (resumed)" if cfg.resume else ""), markup=False)
    for name, hint in checked.skipped.items():
        console.print(f"skipping {name}: {hint}", style="yellow", markup=False)
    problems = len(registry().broken) + len(registry().conflicts)
    if problems:
        console.print(f"[yellow]{problems} plugin problem(s)[/yellow]: see `cfbench list methods`")
    return task, checked.pairs, checked.skipped, console


def _check_query_count(task: Any, n_queries: int | None, console: Any) -> None:
    """Say so when ``--n-queries`` asks for more queries per class than the test split has."""
    if n_queries is None:
        return
    pred = task.predict(task.X_test)
    have = {int(c): int((pred == c).sum()) for c in (0, 1)}
    short = {c: n for c, n in have.items() if n < n_queries}
    if short:
        console.print(
            f"--n-queries {n_queries} is more than the test split has: "
            + ", ".join(f"{n} rows predicted as class {c}" for c, n in short.items())
            + "; running with those", style="yellow", markup=False)


def _augment_config(scenarios: str, fraction: float, max_per_class: int | None,
                    seeds: tuple[int, ...] | None, curve: str | list[Any] = "",
                    where: str = "--curve") -> Any:
    """The augmentation settings, checked (``seeds`` None: the study's default repetitions)."""
    from cfbench.execution import augment

    items = [c.strip() for c in curve.split(",") if c.strip()] if isinstance(curve, str) else curve
    fracs = []
    for c in items:
        try:
            value = float(c)
        except (TypeError, ValueError):
            value = float("nan")
        if isinstance(c, bool) or not 0 < value < 1:
            raise UserError(f"{where}: expected fractions in (0, 1) like 0.25,0.75,0.9, got {c!r}")
        fracs.append(value)
    acfg = augment.AugmentConfig(
        scenarios=tuple(s.strip() for s in scenarios.split(",") if s.strip()), fraction=fraction,
        seeds=tuple(seeds) if seeds else augment.DEFAULT_SEEDS, max_per_class=max_per_class,
        curve=tuple(fracs))
    acfg.validate()
    return acfg


def _display(console: Any, quiet: bool, indent: str = "", task: Any = None) -> Any:
    """The run's progress display; with ``task``, finished cells show their CFs' validity."""
    from cfbench.cli.progress import ProgressDisplay

    validity = None
    if task is not None:
        import numpy as np
        import pandas as pd

        def validity(cfs: list, targets: list) -> int:
            pred = task.predict(pd.DataFrame(cfs, columns=task.schema.names, dtype=float))
            return int((np.asarray(pred) == np.asarray(targets)).sum())

    return ProgressDisplay(console, quiet=quiet, indent=indent, validity=validity)


def _augment(cfg: Any, acfg: Any, task: Any, pairs: Any, console: Any, quiet: bool) -> None:
    from cfbench.execution import augment
    from cfbench.records import labels
    from cfbench.report import augment as augment_report

    display = _display(console, quiet, indent="  ")

    def on_stage(text: str) -> None:
        if not quiet:
            console.print(f"augmentation: {text}", markup=False)

    with display:
        result = augment.run_augmentation(task, cfg, acfg, pairs, on_stage=on_stage,
                                          observer=display)
    doc = augment.save(result, cfg.out, {
        "task": task.name, "task_hash": task.spec.hash, "fraction": acfg.fraction,
        "curve": list(acfg.fractions), "seeds": list(acfg.seeds),
        "scenarios": list(acfg.scenarios), "max_per_class": acfg.max_per_class,
        "methods": cfg.methods, "timeout": cfg.timeout, "budget": cfg.budget,
        "params": labels.canonical_groups(cfg.params)})
    if not quiet:
        print(augment_report.to_markdown(doc["aggregate"], acfg.fraction))
    console.print(f"wrote {cfg.out / 'augment.json'}")


def _console(quiet: bool) -> Any:
    """The display on stderr; into a file or pipe its lines are written whole, never wrapped."""
    from rich.console import Console

    return Console(stderr=True, quiet=quiet, soft_wrap=not sys.stderr.isatty())


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from cfbench.core.plugins import registry

    rows: list[dict[str, Any]]
    if args.what == "tasks":
        from cfbench.tasks.spec import available_specs

        rows = [{"name": n, "path": str(p)} for n, p in sorted(available_specs().items())]
    elif args.what == "methods":
        rows = []
        for name, spec in sorted(registry().generators.items()):
            ok, hint = spec.status()
            caps = spec.capabilities
            off = {v: h for v in spec.variants for good, h in [spec.variant_status(v)]
                   if ok and not good}
            rows.append({
                "name": name, "variants": list(spec.variants), "available": ok, "hint": hint,
                "unavailable_variants": off,
                "plugin": spec.plugin, "extra": spec.extra,
                "capabilities": {"multiple": caps.multiple, "constraints": caps.constraints,
                                 "needs_training_data": caps.needs_training_data,
                                 "stochastic": caps.stochastic},
                "description": spec.description,
                "params": [p.as_dict() for p in spec.params],
            })
        for plugin, why in sorted(registry().broken.items()):
            rows.append({"name": f"(plugin {plugin})", "variants": [], "available": False,
                         "unavailable_variants": {},
                         "hint": f"plugin failed to load: {why}", "plugin": plugin, "extra": None,
                         "capabilities": {}, "description": "", "params": []})
        for why in registry().conflicts:
            rows.append({"name": "(conflict)", "variants": [], "available": False, "hint": why,
                         "unavailable_variants": {}, "plugin": None, "extra": None,
                         "capabilities": {}, "description": "", "params": []})
    else:
        from cfbench.score.registry import REGISTRY

        cards = [m.card() for m in REGISTRY]
        if args.json or args.format == "json":
            rows = cards
        else:
            rows = [{"name": c["name"], "scopes": ", ".join(c["scopes"]),
                     "better": c["better"] or "–", "ranked": c["rank_group"] or "–",
                     "description": c["description"], "formula": c["formula"]} for c in cards]
    fmt = "json" if args.json else (args.format or "table")
    if fmt == "json":
        from cfbench.core.strict_json import dumps

        print(dumps(rows, indent=2))
        return 0
    if args.what == "methods" and (args.params or fmt == "markdown"):
        return _list_params(fmt, args.params)
    if fmt == "markdown":
        raise UserError(f"cfbench list {args.what}: --format markdown is for `list methods --params`")
    from rich.markup import escape

    table = Table(title=args.what)
    if args.what == "methods":
        for col in ("method", "variants", "status", "capabilities"):
            table.add_column(col)
        for r in rows:
            caps = ", ".join(k for k, v in r["capabilities"].items() if v) or "–"
            # escape: an install hint such as cfbench-harness[dice] is not rich markup
            word = "refused" if r["name"] == "(conflict)" else "unavailable"
            status = ("[green]available[/green]" if r["available"]
                      else f"[red]{word}[/red]: {escape(r['hint'])}")
            for v, why in r["unavailable_variants"].items():
                status += f"\n[red]{escape(v)} unavailable[/red]: {escape(why)}"
            table.add_row(escape(r["name"]), escape(", ".join(r["variants"])), status, caps)
    else:
        keys = list(rows[0]) if rows else ["name"]
        for k in keys:
            table.add_column(k)
        for r in rows:  # escape: a formula's [f(c) = t] is not rich markup
            table.add_row(*(escape(str(r[k])) for k in keys))
    Console(width=160).print(table)
    return 0


def _list_params(fmt: str, params: bool) -> int:
    """``cfbench list methods --params``: every method's declared parameters."""
    from rich.console import Console
    from rich.table import Table

    from cfbench.core.generator import params_markdown
    from cfbench.core.plugins import registry

    specs = [s for _, s in sorted(registry().generators.items())]
    if fmt == "markdown":
        print(params_markdown(specs), end="")
        return 0
    table = Table(title="method parameters (--param METHOD[:VARIANT].KEY=VALUE)")
    for col in ("method", "parameter", "type", "default", "valid", "description"):
        table.add_column(col)
    for spec in specs:
        if not spec.params:
            table.add_row(spec.name, "–", "", "", "", "takes no parameters")
        for p in spec.params:
            table.add_row(spec.name, p.name, p.type.__name__, "unset" if p.default is None
                          else str(p.default), p.allowed(), p.description)
    Console(width=160).print(table)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from cfbench.report import board as leaderboard

    if args.check or args.validate:
        from cfbench import smoke

        status = 0
        if args.validate:
            from cfbench.report.check import verify_boards

            errors = smoke.validate_boards(args.dir, args.dir / "schema.json")
            for e in errors:
                print(e)
            print(f"schema: {'ok' if not errors else f'{len(errors)} problems'}")
            tied, warnings = verify_boards(args.dir)
            for w in warnings:
                print(f"warning: {w}")
            for e in tied:
                print(e)
            print(f"boards against their JSON and records: {'ok' if not tied else 'FAILED'}")
            status |= bool(errors) | bool(tied)
        if args.check:
            ok, report = smoke.check(args.dir / smoke.SUITE, args.dir / "smoke", write=args.write)
            print("\n".join(report))
            status |= not ok
        return int(status)
    if args.rescore and args.run_dir is None:
        for p in leaderboard.rebuild_boards(args.dir):
            print(f"wrote {p}")
        return 0
    if args.rescore:
        from cfbench.records.store import load_records, read_run_info
        from cfbench.score.summary import load_run_task, score_run

        task = load_run_task(args.run_dir, read_run_info(args.run_dir))
        score_run(args.run_dir, task, load_records(args.run_dir))
        print(f"wrote {Path(args.run_dir) / 'summary.json'} and "
              f"{Path(args.run_dir) / 'scores.parquet'}", file=sys.stderr)
        if not args.update:
            return 0
    if args.update:
        if args.run_dir is None:
            raise UserError("--update needs the run folder: cfbench leaderboard runs/heart/<time> --update")
        from cfbench.records.store import load_records

        board = leaderboard.build_board(args.run_dir, args.augment)
        for p in leaderboard.write_board(board, args.dir, records=load_records(args.run_dir)):
            print(f"wrote {p}")
        return 0
    run_dir = args.run_dir
    if run_dir is None:
        from cfbench.records.runs import RUNS, latest_run

        run_dir = latest_run(RUNS)
        if run_dir is None:
            raise UserError(f"cfbench leaderboard: no run under {RUNS}/; give the run folder, "
                            "e.g. `cfbench leaderboard runs/heart/20250101T120000Z`")
        print(f"latest run: {run_dir}", file=sys.stderr)
    summary = leaderboard.run_summary(Path(run_dir))
    if args.format == "json":
        from cfbench.core.strict_json import dumps

        print(dumps(summary, indent=2))
    elif args.format == "markdown":
        print(leaderboard.to_markdown(summary))
    else:
        leaderboard.print_table(summary, wide=args.wide)
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: workers are killed, finished records kept."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def _stdout_broken() -> bool:
    """Whether standard output is a pipe whose reader has gone (poll reports an error on it)."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poll.poll(0))
    except (OSError, ValueError, AttributeError):
        return True


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # a plugin printing at import time
            parser = build_parser()
        args = parser.parse_args(argv)
        args._argv = list(sys.argv[1:] if argv is None else argv)[1:]  # after the command name
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"cfbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print("cfbench: interrupted; finished records are kept (re-run with --resume)", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError as exc:
        if not _stdout_broken():  # another pipe broke (a dead worker or server): not a success
            print(f"cfbench: a pipe to a helper process closed unexpectedly ({exc}); finished "
                  "records are kept (re-run with --resume)", file=sys.stderr)
            return 1
        # `cfbench leaderboard | head`: the reader left, nothing is wrong
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

