"""Hook specifications: the whole contract between the cfbench core and its plugins.

A plugin is any module (or object) with functions named like the specs below, marked with
``cfbench.api.hookimpl``, and registered under the ``cfbench`` entry-point group; the names it
may import are those of ``cfbench.api``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from cfbench.core.generator import GeneratorSpec

hookspec = pluggy.HookspecMarker("cfbench")
hookimpl = pluggy.HookimplMarker("cfbench")


@hookspec
def cfbench_generators() -> list[GeneratorSpec]:
    """Return the generator specs this plugin contributes (name, variants, capabilities, factory)."""


@hookspec
def cfbench_dataset_loaders() -> dict[str, Any]:
    """Return ``{loader_name: callable(**options) -> Dataset}`` for task specs to reference."""


@hookspec
def cfbench_task_paths() -> list[Any]:
    """Return paths of task spec TOML files (or folders of them) this plugin contributes."""


@hookspec
def cfbench_add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add sub-commands to the ``cfbench`` CLI; set ``func`` on the parser via ``set_defaults``."""
