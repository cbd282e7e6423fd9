"""``cfbench augment``: the label-scarcity augmentation study (scenarios A, B, C) of a task.

``cfbench run --augment`` and a suite's ``[augment]`` table run the same study through
:func:`study`, so its display and output are the same wherever it starts.
"""

from __future__ import annotations

import argparse
from typing import Any

from cfbench import entry
from cfbench.cli import common
from cfbench.core.errors import UserError
from cfbench.execution import augment as scarcity
from cfbench.execution import config as settings
from cfbench.execution.select import group_params
from cfbench.report import augment as augment_report


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cfbench augment``."""
    aug = subparsers.add_parser("augment", help="label-scarcity augmentation: scenarios A, B, C")
    common.add_run_flags(aug)
    aug.add_argument("--scenarios", default="A,B,C", help="comma list of A (positives removed), "
                     "B (negatives), C (both)")
    aug.add_argument("--fraction", type=float, default=0.5, help="share of rows removed (0.5)")
    aug.add_argument("--max-per-class", type=common.flag(settings.max_per_class, "--max-per-class"),
                     default=None,
                     help="cap on distinct CFs per depleted class (quick runs; the budget is still "
                     "filled, from fewer CFs)")
    aug.add_argument("--curve", default="", metavar="FRACTIONS",
                     help="more shares removed for the scarcity curve, e.g. 0.25,0.75,0.9 "
                     "(default: none)")
    aug.set_defaults(func=cmd_augment, seeds=tuple(range(10)))


def cmd_augment(args: argparse.Namespace) -> int:
    """Check everything, start the fork server, load the task, then run and print the study."""
    if not args.task:
        raise UserError("cfbench augment: give --task")
    where = common.executor(args)
    cfg = settings.RunConfig(
        task=args.task, methods=args.methods, seeds=tuple(args.seeds), timeout=args.timeout,
        budget=args.budget, fit_timeout=args.fit_timeout, jobs=args.jobs, out=args.out,
        resume=args.resume, data_dir=args.data_dir, params=group_params(args.params),
        **where,
    )
    acfg = augment_config(args.scenarios, args.fraction, args.max_per_class, tuple(args.seeds),
                          args.curve, "--curve")
    checked = common.check_run(cfg, require_methods=False, marker="augment")
    if where["executor"] == "local":
        common.warm(args.methods)
    task, _, _, console = common.load_task(cfg, args.quiet, checked)
    study(checked, acfg, task, console, args.quiet)
    return 0


def augment_config(scenarios: str, fraction: float, max_per_class: int | None,
                   seeds: tuple[int, ...] | None, curve: str | list[Any] = "",
                   where: str = "--curve") -> scarcity.AugmentConfig:
    """The augmentation settings, checked (``seeds`` None: the study's default repetitions)."""
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
    acfg = scarcity.AugmentConfig(
        scenarios=tuple(s.strip() for s in scenarios.split(",") if s.strip()), fraction=fraction,
        seeds=tuple(seeds) if seeds else scarcity.DEFAULT_SEEDS, max_per_class=max_per_class,
        curve=tuple(fracs))
    acfg.validate()
    return acfg


def study(plan: entry.Plan, acfg: scarcity.AugmentConfig, task: Any, console: Any,
          quiet: bool) -> None:
    """Run the study of a checked plan on its loaded task (``cfbench.augment``) with the
    progress display, then print its table and where ``augment.json`` went."""
    display = common.display(console, quiet, indent="  ")

    def on_stage(text: str) -> None:
        if not quiet:
            console.print(f"augmentation: {text}", markup=False)

    with display:
        doc = entry.augment(plan, acfg, task=task, observer=display, on_stage=on_stage)
    if not quiet:
        print(augment_report.to_markdown(doc["aggregate"], acfg.fraction))
    console.print(f"wrote {plan.config.out / 'augment.json'}")
