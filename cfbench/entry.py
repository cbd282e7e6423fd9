"""The library entry points: one run from a ``RunConfig`` to scored records, as ``cfbench.run``;
the augmentation study of a task, as ``cfbench.augment``; a run folder's leaderboard, as
``cfbench.leaderboard``.

The sequence (check the settings and the run folder, load the task, execute the cells, score,
write ``records.parquet``) lives here once; ``cfbench run``, the smoke check and the budget
benchmark call it.  The three steps are public so a caller with its own display (the CLI) can
print between them: ``prepare`` then ``load_task`` then ``execute``; ``run`` does all three.
``augment`` takes a ``Plan`` from ``prepare`` (and a loaded task) for the same reason.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfbench.core.errors import UserError
from cfbench.execution import augment as scarcity
from cfbench.execution import orchestrator as runner
from cfbench.execution import select
from cfbench.records import labels, runs
from cfbench.records.store import load_records, write_parquet
from cfbench.report.board import build_board, run_summary
from cfbench.score.summary import score_run
from cfbench.tasks.spec import Task, resolve_spec

if TYPE_CHECKING:
    from cfbench.execution.augment import AugmentConfig
    from cfbench.execution.config import RunConfig
    from cfbench.records.labels import Choice
    from cfbench.tasks.spec import Task, TaskSpec

#: ``status(text)``: a context manager shown while a long step (the task load) runs
Status = Callable[[str], contextlib.AbstractContextManager[Any]]


@dataclass
class Plan:
    """A checked run: its config (``out`` and ``methods`` filled in), task spec and methods."""

    config: RunConfig
    spec: TaskSpec
    pairs: list[Choice]
    #: methods (or method:variant) left out, with why
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    """What a run produced: its folder, the loaded task, summary.json's content and the records."""

    out: Path
    task: Task
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    #: methods (or method:variant) left out, with why
    skipped: dict[str, str]
    #: the (method, variant, params) choices that ran
    pairs: list[Choice]
    config: RunConfig
    #: wall-clock seconds of executing the cells (without loading and scoring)
    seconds: float


def prepare(config: RunConfig, *, require_methods: bool = True, marker: str = "run.json") -> Plan:
    """Everything about a run that can be wrong, checked before any work (nothing is created).

    Without ``out`` a run gets a new ``runs/<task>/<UTC timestamp>``; ``resume`` without ``out``
    continues the latest run of the task there (a folder holding ``marker``).  A resumed run
    keeps its method list.  ``config.out`` and ``config.methods`` are filled in place.
    """

    config.validate()
    spec = resolve_spec(config.task)
    if config.out is None:
        if config.resume:
            found = [p for p in runs.RUNS.glob(f"{runs._safe(spec.name)}/*") if (p / marker).exists()]
            if not found:
                raise UserError(f"--resume: no earlier run of task {spec.name!r} under "
                                f"{runs.RUNS}/; give its folder with --out")
            config.out = max(found, key=lambda p: (p.name, p.stat().st_mtime))
        else:
            config.out = runs.new_run_dir(spec.name)
    config.out = Path(config.out)
    pinned = None
    if config.resume:
        config.methods, pinned = runs.pinned_pairs(config.out, config.methods)
    config.methods = config.methods or "all"
    if pinned is not None:
        runs.check_pairs(pinned)
        pairs, skipped = pinned, runs.earlier_skipped(config.out)
    else:
        pairs, skipped = select.resolve_methods(config.methods, params=config.params)
    pairs = select.applicable(pairs, spec.model, skipped)  # e.g. gradients on a forest: skipped
    runner.check_resume(config, spec, lock=False)
    if require_methods and not pairs:
        raise UserError("no available method to run; see `cfbench list methods`")
    return Plan(config, spec, list(pairs), dict(skipped))


def load_task(plan: Plan, *, status: Status | None = None) -> Task:
    """The plan's task and its trained classifier; ``status`` is shown while it loads."""

    cfg = plan.config
    options = {"data_dir": cfg.data_dir} if cfg.data_dir else None
    with (status or _no_status)(f"loading task {plan.spec.name} and its classifier"):
        return Task.load(plan.spec, dataset_options=options)  # a bad data file stops here


def execute(plan: Plan, task: Task, *, observer: Any = None) -> RunResult:
    """Run the plan's cells on ``task``, score the records (``summary.json``, ``scores.parquet``)
    and write ``records.parquet``; ``observer`` is a ``cfbench.cli.progress.RunObserver``."""

    cfg = plan.config
    t0 = time.perf_counter()
    runner.execute(cfg, task, plan.pairs, observer=observer)
    seconds = time.perf_counter() - t0
    records = load_records(cfg.out)
    summary = score_run(cfg.out, task, records, {"skipped_methods": plan.skipped,
                                                  "seeds": list(cfg.seeds), "k": cfg.k,
                                                  "budget": cfg.budget})
    write_parquet(records, cfg.out / "records.parquet")
    return RunResult(out=cfg.out, task=task, summary=summary, records=records,
                     skipped=plan.skipped, pairs=plan.pairs, config=cfg, seconds=seconds)


def run(config: RunConfig, *, observer: Any = None, status: Status | None = None,
        task: Task | None = None) -> RunResult:
    """Check, load, execute and score one run, e.g. in a notebook::

        import cfbench
        result = cfbench.run(cfbench.RunConfig(task="heart", methods="nearest-neighbour"))
        result.summary["methods"]

    ``task``, when given, is used instead of loading the config's task again (it must be the
    same task).  Mistakes raise ``cfbench.core.errors.UserError`` before any work starts.
    """
    plan = prepare(config)
    if task is None:
        task = load_task(plan, status=status)
    elif task.spec.hash != plan.spec.hash:
        raise UserError(f"run: the given task {task.name!r} is not the config's task "
                        f"{config.task!r}")
    return execute(plan, task, observer=observer)


def augment(config: RunConfig | Plan, study: AugmentConfig, *, observer: Any = None,
            on_stage: Callable[[str], None] | None = None, status: Status | None = None,
            task: Task | None = None) -> dict[str, Any]:
    """Run the label-scarcity augmentation study (scenarios A, B, C) and write
    ``OUT/augment.json``; returns its document (``rows`` and their ``aggregate``)::

        doc = cfbench.augment(cfbench.RunConfig(task="heart", methods="nearest-neighbour"),
                              cfbench.AugmentConfig(seeds=(0, 1)))

    ``config`` is checked as ``prepare`` does (a run folder holding ``augment`` counts for
    ``resume``; no available method is no error: the references still run), or is a ``Plan``
    already checked.  ``on_stage(text)`` hears each stage start; ``task`` is used instead of
    loading the config's task again (it must be the same task).
    """
    study.validate()
    plan = (config if isinstance(config, Plan)
            else prepare(config, require_methods=False, marker="augment"))
    if task is None:
        task = load_task(plan, status=status)
    elif task.spec.hash != plan.spec.hash:
        raise UserError(f"augment: the given task {task.name!r} is not the config's task "
                        f"{plan.config.task!r}")
    cfg = plan.config
    result = scarcity.run_augmentation(task, cfg, study, plan.pairs, on_stage=on_stage,
                                       observer=observer)
    return scarcity.save(result, cfg.out, {
        "task": task.name, "task_hash": task.spec.hash, "fraction": study.fraction,
        "curve": list(study.fractions), "seeds": list(study.seeds),
        "scenarios": list(study.scenarios), "max_per_class": study.max_per_class,
        "methods": cfg.methods, "timeout": cfg.timeout, "budget": cfg.budget,
        "params": labels.canonical_groups(cfg.params)})


def leaderboard(run_dir: str | Path, *, board: bool = False,
                augment_dir: str | Path | None = None) -> dict[str, Any]:
    """A run folder's leaderboard as a dict, from its files (nothing runs again)::

        summary = cfbench.leaderboard("runs/heart/20250101T120000Z")
        summary["methods"]

    By default its summary (``summary.json``'s form: per method and direction, the metrics and
    ranks; rebuilt from the records when the run is unfinished or older).  With ``board`` the
    machine-readable board that ``cfbench leaderboard --update`` commits, with the study in
    ``augment_dir`` (the ``--out`` folder of ``cfbench augment``) when given.
    """
    if not board:
        if augment_dir is not None:
            raise UserError("leaderboard: augment_dir goes into a board; pass board=True")
        return run_summary(Path(run_dir))
    return build_board(Path(run_dir), None if augment_dir is None else Path(augment_dir))


def _no_status(text: str) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext()
