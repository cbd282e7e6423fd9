"""The plugin surface: every cfbench name a plugin may import, and the contract that it is.

A plugin imports from ``cfbench.api`` only (plus ``cfbench.testing`` in its tests); these names
keep working whatever the core's modules are called, whereas any other ``cfbench.*`` import may
move without notice.  ``tests/core/test_api_surface.py`` holds the in-tree plugins to it, and
docs/writing-a-plugin.md ("What a plugin may import") says what each name is.

The names are imported on first use, so ``from cfbench.api import hookimpl`` at a plugin's import
loads only the small modules it needs (the heavy ones, ``Task`` or the metrics, load when asked).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cfbench.core import phase, redact
    from cfbench.core.budget import Deadline, clock, interrupt_after
    from cfbench.core.encoded import Encoded
    from cfbench.core.errors import UserError, choices_error
    from cfbench.core.generator import (
        Capabilities,
        FitContext,
        GeneratorSpec,
        Param,
        QueryResult,
        unknown_param,
    )
    from cfbench.core.hookspecs import hookimpl
    from cfbench.core.locks import file_lock, torch_one_thread
    from cfbench.core.model import FeatureBlock, Linear, ModelMismatch, ModelView, Tree, Trees
    from cfbench.core.notices import warn
    from cfbench.core.plugins import registry
    from cfbench.core.schema import Feature, FeatureSchema
    from cfbench.generators.nearest_neighbour import NearestNeighbour, heom, heom_scales
    from cfbench.score.metrics import changed, mad
    from cfbench.tasks.classifier import cache_dir
    from cfbench.tasks.datasets import Dataset
    from cfbench.tasks.spec import Task, resolve_spec

#: name -> (module, attribute); attribute None: the module itself
_NAMES: dict[str, tuple[str, str | None]] = {
    # registering a generator
    "hookimpl": ("cfbench.core.hookspecs", "hookimpl"),
    "GeneratorSpec": ("cfbench.core.generator", "GeneratorSpec"),
    "Capabilities": ("cfbench.core.generator", "Capabilities"),
    "Param": ("cfbench.core.generator", "Param"),
    "unknown_param": ("cfbench.core.generator", "unknown_param"),
    # fitting and answering queries
    "FitContext": ("cfbench.core.generator", "FitContext"),
    "ModelView": ("cfbench.core.model", "ModelView"),
    "FeatureBlock": ("cfbench.core.model", "FeatureBlock"),
    "Linear": ("cfbench.core.model", "Linear"),
    "Trees": ("cfbench.core.model", "Trees"),
    "Tree": ("cfbench.core.model", "Tree"),
    "ModelMismatch": ("cfbench.core.model", "ModelMismatch"),
    "Encoded": ("cfbench.core.encoded", "Encoded"),
    "QueryResult": ("cfbench.core.generator", "QueryResult"),
    "Feature": ("cfbench.core.schema", "Feature"),
    "FeatureSchema": ("cfbench.core.schema", "FeatureSchema"),
    "Deadline": ("cfbench.core.budget", "Deadline"),
    "interrupt_after": ("cfbench.core.budget", "interrupt_after"),
    "clock": ("cfbench.core.budget", "clock"),
    "phase": ("cfbench.core.phase", None),
    # errors and notices
    "UserError": ("cfbench.core.errors", "UserError"),
    "choices_error": ("cfbench.core.errors", "choices_error"),
    "warn": ("cfbench.core.notices", "warn"),
    "redact": ("cfbench.core.redact", None),
    # one-time set-ups shared by parallel workers, and deterministic torch
    "file_lock": ("cfbench.core.locks", "file_lock"),
    "torch_one_thread": ("cfbench.core.locks", "torch_one_thread"),
    # helpers of the core a plugin may reuse
    "heom": ("cfbench.generators.nearest_neighbour", "heom"),
    "heom_scales": ("cfbench.generators.nearest_neighbour", "heom_scales"),
    "NearestNeighbour": ("cfbench.generators.nearest_neighbour", "NearestNeighbour"),
    "changed": ("cfbench.score.metrics", "changed"),
    "mad": ("cfbench.score.metrics", "mad"),
    "cache_dir": ("cfbench.tasks.classifier", "cache_dir"),
    "registry": ("cfbench.core.plugins", "registry"),
    "Task": ("cfbench.tasks.spec", "Task"),
    "Dataset": ("cfbench.tasks.datasets", "Dataset"),
    "resolve_spec": ("cfbench.tasks.spec", "resolve_spec"),
}

__all__ = ["Capabilities", "Dataset", "Deadline", "Encoded", "Feature", "FeatureBlock", "FeatureSchema",
           "FitContext", "GeneratorSpec", "Linear", "ModelMismatch", "ModelView",
           "NearestNeighbour", "Param", "QueryResult", "Task", "Tree", "Trees", "UserError", "cache_dir",
           "changed", "choices_error", "clock", "file_lock", "heom", "heom_scales", "hookimpl",
           "interrupt_after", "mad", "phase", "redact", "registry", "resolve_spec",
           "torch_one_thread", "unknown_param", "warn"]


def __getattr__(name: str) -> Any:
    """Import a surface name on first use (and keep it, so the next lookup is plain)."""
    try:
        module, attr = _NAMES[name]
    except KeyError:
        raise AttributeError(f"module 'cfbench.api' has no attribute {name!r}; a plugin may "
                             f"import only: {', '.join(__all__)}") from None
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
