"""The plugin surface: every cfbench name a plugin may import, and the contract that it is.

A plugin imports from ``cfbench.api`` only (plus ``cfbench.testing`` in its tests); these names
keep working whatever the core's modules are called, whereas any other ``cfbench.*`` import may
move without notice.  ``tests/test_api_surface.py`` holds the in-tree plugins to it, and
docs/writing-a-plugin.md ("What a plugin may import") says what each name is.

The names are imported on first use, so ``from cfbench.api import hookimpl`` at a plugin's import
loads only the small modules it needs (the heavy ones, ``Task`` or the metrics, load when asked).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cfbench import phase, redact
    from cfbench.budget import Deadline, clock, interrupt_after
    from cfbench.classifier import cache_dir
    from cfbench.datasets import Dataset
    from cfbench.errors import UserError, choices_error
    from cfbench.generator import (
        Capabilities,
        FitContext,
        GeneratorSpec,
        Param,
        QueryResult,
        unknown_param,
    )
    from cfbench.generators.nearest_neighbour import NearestNeighbour, heom, heom_scales
    from cfbench.hookspecs import hookimpl
    from cfbench.metrics import changed, mad
    from cfbench.notices import warn
    from cfbench.plugins import registry
    from cfbench.schema import Feature, FeatureSchema
    from cfbench.task import Task, resolve_spec

#: name -> (module, attribute); attribute None: the module itself
_NAMES: dict[str, tuple[str, str | None]] = {
    # registering a generator
    "hookimpl": ("cfbench.hookspecs", "hookimpl"),
    "GeneratorSpec": ("cfbench.generator", "GeneratorSpec"),
    "Capabilities": ("cfbench.generator", "Capabilities"),
    "Param": ("cfbench.generator", "Param"),
    "unknown_param": ("cfbench.generator", "unknown_param"),
    # fitting and answering queries
    "FitContext": ("cfbench.generator", "FitContext"),
    "QueryResult": ("cfbench.generator", "QueryResult"),
    "Feature": ("cfbench.schema", "Feature"),
    "FeatureSchema": ("cfbench.schema", "FeatureSchema"),
    "Deadline": ("cfbench.budget", "Deadline"),
    "interrupt_after": ("cfbench.budget", "interrupt_after"),
    "clock": ("cfbench.budget", "clock"),
    "phase": ("cfbench.phase", None),
    # errors and notices
    "UserError": ("cfbench.errors", "UserError"),
    "choices_error": ("cfbench.errors", "choices_error"),
    "warn": ("cfbench.notices", "warn"),
    "redact": ("cfbench.redact", None),
    # helpers of the core a plugin may reuse
    "heom": ("cfbench.generators.nearest_neighbour", "heom"),
    "heom_scales": ("cfbench.generators.nearest_neighbour", "heom_scales"),
    "NearestNeighbour": ("cfbench.generators.nearest_neighbour", "NearestNeighbour"),
    "changed": ("cfbench.metrics", "changed"),
    "mad": ("cfbench.metrics", "mad"),
    "cache_dir": ("cfbench.classifier", "cache_dir"),
    "registry": ("cfbench.plugins", "registry"),
    "Task": ("cfbench.task", "Task"),
    "Dataset": ("cfbench.datasets", "Dataset"),
    "resolve_spec": ("cfbench.task", "resolve_spec"),
}

__all__ = ["Capabilities", "Dataset", "Deadline", "Feature", "FeatureSchema", "FitContext",
           "GeneratorSpec", "NearestNeighbour", "Param", "QueryResult", "Task", "UserError", "cache_dir",
           "changed", "choices_error", "clock", "heom", "heom_scales", "hookimpl",
           "interrupt_after", "mad", "phase", "redact", "registry", "resolve_spec",
           "unknown_param", "warn"]


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
