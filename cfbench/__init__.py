"""cfbench: a benchmark harness for counterfactual-explanation generators on tabular health data.

``cfbench.run(cfbench.RunConfig(task=..., methods=...))`` runs and scores one benchmark run,
``cfbench.augment(config, cfbench.AugmentConfig(...))`` runs the augmentation study and
``cfbench.leaderboard(run_dir)`` reads a run's leaderboard (``cfbench.entry``); they and their
types are imported on first use, so ``import cfbench`` stays light.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from cfbench import _compat

_compat.install()  # the flat module paths of cfbench 0.x, with a DeprecationWarning

try:
    __version__ = version("cfbench-harness")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

#: lazily imported public names -> their module
_LAZY = {"run": "cfbench.entry", "RunResult": "cfbench.entry", "RunConfig": "cfbench.execution.config",
         "augment": "cfbench.entry", "AugmentConfig": "cfbench.execution.augment",
         "leaderboard": "cfbench.entry"}

__all__ = ["__version__", "run", "RunConfig", "RunResult", "augment", "AugmentConfig", "leaderboard"]


def __getattr__(name: str) -> Any:
    """``cfbench.run``, ``cfbench.augment``, ``cfbench.leaderboard`` and their types, imported
    on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cfbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
