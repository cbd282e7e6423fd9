"""Old import paths keep working, with a ``DeprecationWarning``: the flat modules of cfbench 0.x
(``cfbench.task``, ``cfbench.runner``, ...) now live in the stage packages.

A module that moved whole is the new module under its old name; one that was split is a module
holding the names of every part it became.  Plugins should import from ``cfbench.api`` instead.

``cfbench.augment`` and ``cfbench.leaderboard`` are not here: those names are now the library
functions (``cfbench.entry``), so the old modules are imported from their new homes only:
``cfbench.execution.augment`` / ``cfbench.report.augment`` and ``cfbench.report.board``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence

#: old module -> the module(s) its names live in now (the first is "the" new home)
MOVED: dict[str, tuple[str, ...]] = {
    "cfbench.errors": ("cfbench.core.errors",),
    "cfbench.schema": ("cfbench.core.schema",),
    "cfbench.generator": ("cfbench.core.generator",),
    "cfbench.hookspecs": ("cfbench.core.hookspecs",),
    "cfbench.plugins": ("cfbench.core.plugins",),
    "cfbench.notices": ("cfbench.core.notices",),
    "cfbench.phase": ("cfbench.core.phase",),
    "cfbench.budget": ("cfbench.core.budget",),
    "cfbench.strict_json": ("cfbench.core.strict_json",),
    "cfbench.safe_load": ("cfbench.core.safe_load",),
    "cfbench.redact": ("cfbench.core.redact",),
    "cfbench.datasets": ("cfbench.tasks.datasets", "cfbench.tasks.loaders"),
    "cfbench.table": ("cfbench.tasks.table",),
    "cfbench.heart": ("cfbench.tasks.heart",),
    "cfbench.classifier": ("cfbench.tasks.classifier",),
    "cfbench.task": ("cfbench.tasks.spec",),
    "cfbench.task_init": ("cfbench.tasks.init_spec",),
    "cfbench.ai_readi": ("cfbench.tasks.ai_readi",),
    "cfbench.ai_readi.commands": ("cfbench.tasks.ai_readi.commands",),
    "cfbench.ai_readi.features": ("cfbench.tasks.ai_readi.features",),
    "cfbench.ai_readi.layout": ("cfbench.tasks.ai_readi.layout",),
    "cfbench.ai_readi.loader": ("cfbench.tasks.ai_readi.loader",),
    "cfbench.ai_readi.report": ("cfbench.tasks.ai_readi.report",),
    "cfbench.ai_readi.synth": ("cfbench.tasks.ai_readi.synth",),
    "cfbench.provenance": ("cfbench.records.provenance",),
    "cfbench.store": ("cfbench.records.store",),
    "cfbench.runs": ("cfbench.records.runs",),
    "cfbench.metric_registry": ("cfbench.score.registry",),
    "cfbench.metrics": ("cfbench.score.metrics", "cfbench.score.scorer"),
    "cfbench.summary": ("cfbench.score.summary", "cfbench.records.store"),
    "cfbench.ranking": ("cfbench.score.ranking",),
    "cfbench.augment_stats": ("cfbench.score.augment_stats",),
    "cfbench.runner": ("cfbench.execution.orchestrator", "cfbench.execution.config",
                       "cfbench.execution.select", "cfbench.execution.worker",
                       "cfbench.execution.executor", "cfbench.records.labels"),
    "cfbench.settings": ("cfbench.execution.config", "cfbench.core.names"),
    "cfbench.executor": ("cfbench.execution.executor",),
    "cfbench.ray_executor": ("cfbench.execution.ray_executor",),
    "cfbench.forkserver": ("cfbench.execution.forkserver",),
    "cfbench.preload_guard": ("cfbench.execution.preload_guard",),
    "cfbench.workerproc": ("cfbench.execution.workerproc",),
    "cfbench.schedule": ("cfbench.execution.schedule", "cfbench.execution.config",
                         "cfbench.core.machine"),
    "cfbench.suite": ("cfbench.execution.suite", "cfbench.execution.select", "cfbench.records.labels"),
    "cfbench.progress": ("cfbench.cli.progress",),
    "cfbench.plots": ("cfbench.report.svg",),
    "cfbench.board_schema": ("cfbench.report.schema",),
    "cfbench.board_check": ("cfbench.report.check",),
}


def merged(name: str, targets: Sequence[str]) -> types.ModuleType:
    """A module named ``name`` holding every public and private name of ``targets`` (the first
    one's names winning), or the single target itself."""
    mods = [importlib.import_module(t) for t in targets]
    if len(mods) == 1:
        return mods[0]
    out = types.ModuleType(name, mods[0].__doc__)
    for mod in reversed(mods):
        out.__dict__.update({k: v for k, v in vars(mod).items() if not k.startswith("__")})
    return out


class _Loader(importlib.abc.Loader):
    def __init__(self, targets: tuple[str, ...]) -> None:
        self.targets = targets

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        warnings.warn(f"{spec.name} moved to {self.targets[0]}; plugins should import from "
                      "cfbench.api (the old path will be removed)", DeprecationWarning, stacklevel=3)
        return merged(spec.name, self.targets)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class MovedModules(importlib.abc.MetaPathFinder):
    """Finds the old flat module names and hands out their new homes."""

    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        targets = MOVED.get(fullname)
        if targets is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Loader(targets),
                                              is_package=fullname == "cfbench.ai_readi")


def install() -> None:
    """Put the finder first on ``sys.meta_path``, once: the path finder would otherwise load
    ``cfbench.ai_readi.loader`` a second time from the moved package's folder."""
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())  # ahead of the path finder: see cfbench.ai_readi.*
