"""The ``cfbench`` command line: run, list, leaderboard, plus commands plugins add."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from cfbench.errors import UserError

LIST_WHAT = ("tasks", "methods", "metrics")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (no usage block) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return v


def _seeds(text: str) -> tuple[int, ...]:
    """``0``, ``0,1,2`` or a range ``0-4``."""
    try:
        if "-" in text.strip("-") and "," not in text:
            a, b = text.split("-", 1)
            seeds = tuple(range(int(a), int(b) + 1))
        else:
            seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integer seeds like 0, 0,1,2 or 0-4, got {text!r}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"expected at least one seed, got {text!r}")
    return seeds


def _common_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="registered task name or path of a spec file")
    p.add_argument("--methods", default="all", help="'all' or comma-separated, e.g. dice,nice:sparsity")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=_seeds, dest="seeds", default=(0,), help="one seed")
    seeds.add_argument("--seeds", type=_seeds, dest="seeds", help="seeds: 0,1,2 or 0-4")
    p.add_argument("--timeout", type=_positive_float, default=60.0, help="seconds per query (hard)")
    p.add_argument("--fit-timeout", type=_positive_float, default=3600.0, help="seconds for fit")
    p.add_argument("--jobs", type=_positive_int, default=1, help="cells run in parallel")
    p.add_argument("--out", type=Path, default=Path("out"), help="run folder (default: out)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--data-dir", default=None, help="dataset folder (e.g. a real AI-READI release)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    p.add_argument("--executor", default=None, help="where cells run: local (default) or ray; "
                   "default $CFBENCH_EXECUTOR, else local")
    p.add_argument("--ray-address", default=None, help="with --executor ray: the cluster to use "
                   "(host:port); default: start a local Ray cluster")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cfbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run methods on a task and score them")
    _common_run_flags(run)
    run.add_argument("--n-queries", type=_positive_int, default=None,
                     help="test instances per source class (default: the task's, usually 50)")
    run.add_argument("--k", type=_positive_int, default=1, help="CFs per query")
    run.add_argument("--augment", action="store_true",
                     help="also run the label-scarcity augmentation (scenarios A, B, C) into OUT/augment")
    run.set_defaults(func=cmd_run)

    aug = sub.add_parser("augment", help="label-scarcity augmentation: scenarios A, B, C")
    _common_run_flags(aug)
    aug.add_argument("--scenarios", default="A,B,C", help="comma list of A (positives removed), "
                     "B (negatives), C (both)")
    aug.add_argument("--fraction", type=float, default=0.5, help="share of rows removed (0.5)")
    aug.add_argument("--max-per-class", type=_positive_int, default=None,
                     help="cap on CFs per depleted class (smoke runs)")
    aug.set_defaults(func=cmd_augment, seeds=(0, 1, 2, 3, 4))

    ls = sub.add_parser("list", help="list tasks, methods or metrics")
    ls.add_argument("what", choices=LIST_WHAT)
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_list)

    lb = sub.add_parser("leaderboard", help="show a run's leaderboard, or update/check the committed ones")
    lb.add_argument("run_dir", nargs="?", type=Path, help="the --out folder of a run")
    lb.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    lb.add_argument("--update", action="store_true",
                    help="regenerate leaderboard/<task>.{json,md,svg} from RUN_DIR")
    lb.add_argument("--augment", type=Path, default=None,
                    help="with --update: the --out folder of `cfbench augment` for the same task")
    lb.add_argument("--dir", type=Path, default=Path("leaderboard"), help="leaderboard folder")
    lb.add_argument("--check", action="store_true",
                    help="re-run the smoke configuration and compare with the committed numbers")
    lb.add_argument("--write", action="store_true", help="with --check: store the new smoke numbers")
    lb.add_argument("--validate", action="store_true",
                    help="validate the leaderboard files against leaderboard/schema.json")
    lb.set_defaults(func=cmd_leaderboard)

    from cfbench.plugins import registry

    registry().pm.hook.cfbench_add_commands(subparsers=sub)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    where = _executor(args)
    if where["executor"] == "local":
        _warm(args.methods)
    from cfbench import runner
    from cfbench.store import load_records, write_json_atomic, write_parquet
    from cfbench.summary import summarize

    cfg = runner.RunConfig(
        task=args.task, methods=args.methods, seeds=tuple(args.seeds), n_queries=args.n_queries,
        k=args.k, timeout=args.timeout, fit_timeout=args.fit_timeout, jobs=args.jobs,
        out=args.out, resume=args.resume, data_dir=args.data_dir, **where,
    )
    acfg = _augment_config("A,B,C", 0.5, None, (0, 1, 2, 3, 4)) if args.augment else None
    task, pairs, skipped, console = _prepare(cfg, args.quiet, require_methods=True)
    console.print(
        f"task [bold]{task.name}[/bold]: {task.scores['n_train']} train / {task.scores['n_test']} test rows; "
        f"classifier {task.spec.model} accuracy {task.scores['accuracy']:.3f}, F1 {task.scores['f1']:.3f}"
    )
    progress, on_plan, on_progress = _progress(console, args.quiet)
    with progress:
        runner.execute(cfg, task, pairs, on_plan=on_plan, on_progress=on_progress)
    records = load_records(cfg.out)
    summary = summarize(task, records, {"skipped_methods": skipped, "seeds": list(cfg.seeds),
                                        "k": cfg.k})
    write_json_atomic(cfg.out / "summary.json", summary)
    write_parquet(records, cfg.out / "records.parquet")
    if not args.quiet:
        from cfbench.leaderboard import print_table

        print_table(summary)
    console.print(f"wrote {cfg.out / 'summary.json'} and {cfg.out / 'records.parquet'}")
    if acfg is not None:
        _augment(cfg, acfg, task, pairs, console, args.quiet)
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    where = _executor(args)
    if where["executor"] == "local":
        _warm(args.methods)
    from cfbench import runner

    cfg = runner.RunConfig(
        task=args.task, methods=args.methods, seeds=tuple(args.seeds), timeout=args.timeout,
        fit_timeout=args.fit_timeout, jobs=args.jobs, out=args.out, resume=args.resume,
        data_dir=args.data_dir, **where,
    )
    acfg = _augment_config(args.scenarios, args.fraction, args.max_per_class, tuple(args.seeds))
    task, pairs, _, console = _prepare(cfg, args.quiet, require_methods=False)
    _augment(cfg, acfg, task, pairs, console, args.quiet)
    return 0


def _executor(args: argparse.Namespace) -> dict[str, Any]:
    """``--executor`` (else $CFBENCH_EXECUTOR, else local) and ``--ray-address``, checked."""
    from cfbench.executor import executor_name, get_executor

    name = executor_name(args.executor)
    if name == "local":
        get_executor(name, address=args.ray_address)  # refuses a --ray-address
    return {"executor": name, "ray_address": args.ray_address}


def _warm(methods: str) -> None:
    """Start the workers' fork server with the chosen methods' preloads, so its imports overlap
    with ours and the task load (names are checked later, with proper errors)."""
    from cfbench.forkserver import warm
    from cfbench.plugins import registry

    names = {item.strip().partition(":")[0] for item in methods.split(",")}
    modules = [m for name, spec in sorted(registry().generators.items())
               if "all" in names or name in names for m in spec.preload]
    warm(modules)


def _prepare(cfg: Any, quiet: bool, require_methods: bool) -> tuple[Any, list, dict, Any]:
    """Validate the config, resolve task and methods, load the task: (task, pairs, skipped, console)."""
    from cfbench import runner
    from cfbench.task import Task, resolve_spec

    cfg.validate()
    spec = resolve_spec(cfg.task)
    pairs, skipped = runner.resolve_methods(cfg.methods)
    runner.check_resume(cfg, spec)
    console = _console(quiet)
    for name, hint in skipped.items():
        console.print(f"[yellow]skipping {name}[/yellow]: {hint}")
    if require_methods and not pairs:
        raise UserError("no available method to run; see `cfbench list methods`")
    options = {"data_dir": cfg.data_dir} if cfg.data_dir else None
    with console.status(f"loading task {spec.name} and its classifier"):
        task = Task.load(spec, dataset_options=options)
    return task, pairs, skipped, console


def _augment_config(scenarios: str, fraction: float, max_per_class: int | None,
                    seeds: tuple[int, ...]) -> Any:
    from cfbench import augment

    acfg = augment.AugmentConfig(
        scenarios=tuple(s.strip() for s in scenarios.split(",") if s.strip()), fraction=fraction,
        seeds=seeds, max_per_class=max_per_class)
    acfg.validate()
    return acfg


def _progress(console: Any, quiet: bool, indent: str = "") -> tuple[Any, Any, Any]:
    """A rich progress display with one bar per cell, and the runner callbacks that drive it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, disable=quiet)
    bars: dict[Any, Any] = {}

    def on_plan(work: list) -> None:
        for cell, todo in work:
            bars[cell] = progress.add_task(f"{indent}{cell.label} seed {cell.seed}", total=len(todo))

    def on_progress(cell: Any, n: int) -> None:
        progress.advance(bars[cell], n)

    return progress, on_plan, on_progress


def _augment(cfg: Any, acfg: Any, task: Any, pairs: Any, console: Any, quiet: bool) -> None:
    from cfbench import augment

    progress, on_plan, on_progress = _progress(console, quiet, indent="  ")

    def on_stage(text: str) -> None:
        progress.console.print(f"augmentation: {text}")

    with progress:
        result = augment.run_augmentation(task, cfg, acfg, pairs, on_stage=on_stage,
                                          on_plan=on_plan, on_progress=on_progress)
    doc = augment.save(result, cfg.out, {
        "task": task.name, "task_hash": task.spec.hash, "fraction": acfg.fraction,
        "seeds": list(acfg.seeds), "scenarios": list(acfg.scenarios),
        "max_per_class": acfg.max_per_class, "methods": cfg.methods, "timeout": cfg.timeout})
    if not quiet:
        print(augment.to_markdown(doc["aggregate"]))
    console.print(f"wrote {cfg.out / 'augment.json'}")


def _console(quiet: bool) -> Any:
    from rich.console import Console

    return Console(stderr=True, quiet=quiet)


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from cfbench.plugins import registry

    rows: list[dict[str, Any]]
    if args.what == "tasks":
        from cfbench.task import available_specs

        rows = [{"name": n, "path": str(p)} for n, p in sorted(available_specs().items())]
    elif args.what == "methods":
        rows = []
        for name, spec in sorted(registry().generators.items()):
            ok, hint = spec.status()
            caps = spec.capabilities
            rows.append({
                "name": name, "variants": list(spec.variants), "available": ok, "hint": hint,
                "plugin": spec.plugin, "extra": spec.extra,
                "capabilities": {"multiple": caps.multiple, "constraints": caps.constraints,
                                 "needs_training_data": caps.needs_training_data,
                                 "stochastic": caps.stochastic},
                "description": spec.description,
            })
        for plugin, why in sorted(registry().broken.items()):
            rows.append({"name": f"(plugin {plugin})", "variants": [], "available": False,
                         "hint": f"plugin failed to load: {why}", "plugin": plugin, "extra": None,
                         "capabilities": {}, "description": ""})
    else:
        from cfbench.metrics import METRICS

        rows = [{"name": n, "description": d} for n, d in METRICS.items()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=args.what)
    if args.what == "methods":
        for col in ("method", "variants", "status", "capabilities"):
            table.add_column(col)
        for r in rows:
            caps = ", ".join(k for k, v in r["capabilities"].items() if v) or "–"
            status = "[green]available[/green]" if r["available"] else f"[red]unavailable[/red]: {r['hint']}"
            table.add_row(r["name"], ", ".join(r["variants"]), status, caps)
    else:
        keys = list(rows[0]) if rows else ["name"]
        for k in keys:
            table.add_column(k)
        for r in rows:
            table.add_row(*(str(r[k]) for k in keys))
    Console(width=160).print(table)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from cfbench import leaderboard

    if args.check or args.validate:
        from cfbench import smoke

        status = 0
        if args.validate:
            errors = smoke.validate_boards(args.dir, args.dir / "schema.json")
            for e in errors:
                print(e)
            print(f"schema: {'ok' if not errors else f'{len(errors)} problems'}")
            status |= bool(errors)
        if args.check:
            ok, report = smoke.check(args.dir / "smoke.toml", args.dir / "smoke", write=args.write)
            print("\n".join(report))
            status |= not ok
        return int(status)
    if args.update:
        if args.run_dir is None:
            raise UserError("--update needs the run folder: cfbench leaderboard out/heart --update")
        board = leaderboard.build_board(args.run_dir, args.augment)
        for p in leaderboard.write_board(board, args.dir):
            print(f"wrote {p}")
        return 0
    if args.run_dir is None:
        raise UserError("cfbench leaderboard: give the run folder, e.g. `cfbench leaderboard out/`")
    summary = leaderboard.load_summary(args.run_dir)
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    elif args.format == "markdown":
        print(leaderboard.to_markdown(summary))
    else:
        leaderboard.print_table(summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"cfbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cfbench: interrupted; finished records are kept (re-run with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
