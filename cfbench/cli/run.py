"""``cfbench run``: one run of methods on a task, or every run of a suite file (``--config``),
each checked before the first starts, optionally followed by the augmentation study."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from cfbench import entry
from cfbench.cli import common
from cfbench.cli.augment import augment_config, study
from cfbench.core.errors import UserError
from cfbench.core.notices import warn
from cfbench.execution import config as settings
from cfbench.execution import select
from cfbench.execution.suite import load_suite
from cfbench.records import runs
from cfbench.records.store import SCORES
from cfbench.report.board import print_table
from cfbench.tasks.catalogue import status as data_status
from cfbench.tasks.spec import available_specs, load_spec

ALL_TASKS = "all"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cfbench run``."""
    run = subparsers.add_parser("run", help="run methods on a task and score them")
    common.add_run_flags(run)
    run.add_argument("--config", type=Path, default=None, metavar="SUITE.toml",
                     help="a suite file: tasks x methods x seeds and settings (flags given here win)")
    run.add_argument("--n-queries", type=common.flag(settings.n_queries, "--n-queries"), default=None,
                     help="test instances per source class (default: the task's, usually 50)")
    run.add_argument("--k", type=common.flag(settings.k, "--k"), default=settings.DEFAULTS["k"],
                     help="CFs per query")
    augment = run.add_mutually_exclusive_group()
    augment.add_argument("--augment", action="store_true",
                         help="also run the label-scarcity augmentation (scenarios A, B, C) into OUT/augment")
    augment.add_argument("--no-augment", action="store_true",
                         help="with --config: skip the suite file's [augment] table (the runs only)")
    run.add_argument("--wide", action="store_true", help="every column in the result table")
    run.set_defaults(func=cmd_run, _parser=run)


def cmd_run(args: argparse.Namespace) -> int:
    """One run from the flags, or the suite of ``--config``."""
    params = select.group_params(args.params)
    if args.config is not None:
        return _run_suite(args, params)
    if not args.task:
        raise UserError("cfbench run: give --task (or a suite file with --config)")
    if args.task == ALL_TASKS:
        return _run_all(args, params)
    if args.no_augment:  # without a suite file there is no [augment] table to skip
        raise UserError("--no-augment skips a suite file's [augment] table, so it needs --config "
                        "FILE; without --config a run is augmented only when --augment is given")
    where = common.executor(args)
    if where["executor"] == "local":
        common.warm(args.methods)
    cfg = settings.RunConfig(
        task=args.task, methods=args.methods, seeds=tuple(args.seeds), n_queries=args.n_queries,
        k=args.k, timeout=args.timeout, budget=args.budget, fit_timeout=args.fit_timeout,
        jobs=args.jobs, out=args.out, resume=args.resume, data_dir=args.data_dir, params=params,
        **where,
    )
    acfg = augment_config("A,B,C", 0.5, None, None) if args.augment else None
    _run_one(cfg, acfg, None, args.quiet, common.check_run(cfg, True), wide=args.wide)
    return 0


def _run_all(args: argparse.Namespace, params: tuple) -> int:
    """``cfbench run --task all``: every task whose data is on this machine, one folder each.

    Tasks whose data is absent are named with the command that fetches them; a task that fails
    to load costs only its own run (the others still run and keep their results).
    """
    if args.no_augment:
        raise UserError("--no-augment skips a suite file's [augment] table, so it needs --config")
    if args.resume and args.out is None:
        raise UserError("--task all --resume: give the --out folder of the run to continue")
    console = common.console(args.quiet)
    present = []
    for name, path in sorted(available_specs().items()):
        try:
            spec = load_spec(path)
        except UserError as exc:
            warn(f"skipping task {name}: {exc}")
            continue
        ok, where = data_status(spec.loader, spec.loader_options, spec.folder)
        if ok:
            present.append(name)
        else:
            how = (f"`cfbench data fetch {name}`" if spec.loader == "fetched"
                   else f"{where} is missing")
            warn(f"skipping task {name}: its data is not on this machine ({how})")
    if not present:
        raise UserError("cfbench run --task all: no task has its data on this machine")
    base = args.out if args.out is not None else runs.new_run_dir(ALL_TASKS)
    where = common.executor(args)
    plans = []
    for name in present:
        cfg = settings.RunConfig(
            task=name, methods=args.methods, seeds=tuple(args.seeds), n_queries=args.n_queries,
            k=args.k, timeout=args.timeout, budget=args.budget, fit_timeout=args.fit_timeout,
            jobs=args.jobs, out=base / name, resume=args.resume, data_dir=args.data_dir,
            params=params, **where)
        plans.append((cfg, common.check_run(cfg, True)))
    if where["executor"] == "local":
        common.warm(args.methods)
    acfg = augment_config("A,B,C", 0.5, None, None) if args.augment else None
    failed = []
    for cfg, checked in plans:
        try:
            _run_one(cfg, acfg, None, args.quiet, checked, wide=args.wide)
        except UserError as exc:  # this task's data or spec; the other tasks still run
            warn(f"task {cfg.task} failed, the others go on: {exc}")
            failed.append(cfg.task)
    done = len(plans) - len(failed)
    console.print(f"{done} of {len(plans)} task(s) ran into {base}"
                  + (f"; failed: {', '.join(failed)}" if failed else ""), markup=False)
    return 1 if failed else 0


def _run_suite(args: argparse.Namespace, params: tuple) -> int:
    """``cfbench run --config``: every run of the suite, each checked before the first starts."""
    suite = load_suite(args.config)
    given = _given_flags(args)
    suite_name = Path(args.config).name.split(".")[0]
    base = args.out if args.out is not None else (
        runs.new_run_dir(suite_name) if len(suite.runs) > 1 else None)
    plans = []
    for srun in suite.runs:
        s = srun.settings
        where = common.executor(args, s, given, str(args.config))
        cfg = settings.RunConfig(
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
            acfg = augment_config(",".join(a["scenarios"]), float(a["fraction"]),
                                  a["max_per_class"], a["seeds"], a["curve"],
                                  f"{args.config}: augment.curve")
            aug_cfg = replace(cfg, methods=a["methods"] if "methods" not in given else cfg.methods,
                              timeout=float(a["timeout"]) if a["timeout"] and "timeout" not in given
                              else cfg.timeout,
                              budget=float(a["budget"]) if a["budget"] and "budget" not in given
                              else cfg.budget)
        elif args.augment:
            acfg = augment_config("A,B,C", 0.5, None, None)
        checked = common.check_run(cfg, True)
        if aug_cfg is not None:
            select.resolve_methods(aug_cfg.methods, params=aug_cfg.params)
        plans.append((cfg, acfg, aug_cfg, checked))
    if len({str(p[0].out) for p in plans}) < len(plans):
        raise UserError(f"{args.config}: two runs would share the folder {base}; "
                        "remove --task or give the runs distinct names")
    local = [p[0].methods for p in plans if p[0].executor == "local"]
    if local:
        common.warm(",".join(local))
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


def _run_one(cfg: settings.RunConfig, acfg: Any, aug_cfg: settings.RunConfig | None, quiet: bool,
             checked: entry.Plan, wide: bool = False) -> None:
    """One run (and its augmentation, when asked): load, execute, summarise, print."""
    task, pairs, skipped, console = common.load_task(cfg, quiet, checked)
    console.print(
        f"task [bold]{task.name}[/bold]: {task.scores['n_train']} train / {task.scores['n_test']} test rows; "
        f"classifier {task.spec.model} accuracy {task.scores['accuracy']:.3f}, F1 {task.scores['f1']:.3f}"
    )
    _check_query_count(task, cfg.n_queries, console)
    with common.display(console, quiet, task=task) as display:
        result = entry.execute(checked, task, observer=display)
    if not quiet:
        print_table(result.summary, wide=wide)
    console.print(f"wrote {cfg.out / 'summary.json'}, {cfg.out / SCORES} and "
                  f"{cfg.out / 'records.parquet'}")
    if acfg is not None:
        plan = checked
        if aug_cfg is not None:  # a suite's [augment] table: its own methods and limits
            pairs, _ = select.resolve_methods(aug_cfg.methods, params=aug_cfg.params)
            pairs = select.applicable(pairs, checked.spec.model, {})
            plan = entry.Plan(aug_cfg, checked.spec, pairs)
        study(plan, acfg, task, console, quiet)


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
