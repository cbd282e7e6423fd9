"""The plugin manager: loads the ``cfbench`` entry-point group and answers registry questions.

The core calls hooks through this module and never imports a plugin by name.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pluggy

from cfbench import hookspecs
from cfbench.errors import UserError, choices_error
from cfbench.generator import GeneratorSpec

GROUP = "cfbench"


@dataclass
class Registry:
    """What the loaded plugins contribute, plus the plugins that failed to load and why."""

    pm: pluggy.PluginManager
    generators: dict[str, GeneratorSpec] = field(default_factory=dict)
    loaders: dict[str, Any] = field(default_factory=dict)
    task_paths: list[Path] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)

    def generator(self, name: str) -> GeneratorSpec:
        if name not in self.generators:
            raise choices_error("method", name, self.generators)
        return self.generators[name]

    def loader(self, name: str) -> Any:
        if name not in self.loaders:
            raise choices_error("dataset loader", name, self.loaders)
        return self.loaders[name]


def make_plugin_manager(extra_plugins: tuple[Any, ...] = ()) -> tuple[pluggy.PluginManager, dict[str, str]]:
    """A manager with the hookspecs, every ``cfbench`` entry point, and ``extra_plugins``.

    Entry points are loaded with ``load_setuptools_entrypoints``; if one of them fails to import,
    the group is loaded again one entry point at a time so that the broken plugin is recorded
    and every other plugin still loads.
    """
    pm = pluggy.PluginManager("cfbench")
    pm.add_hookspecs(hookspecs)
    broken: dict[str, str] = {}
    try:
        pm.load_setuptools_entrypoints(GROUP)
    except Exception:
        for dist in importlib.metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != GROUP or pm.get_plugin(ep.name) or pm.is_blocked(ep.name):
                    continue
                try:
                    pm.register(ep.load(), name=ep.name)
                except Exception as exc:
                    broken[ep.name] = f"{type(exc).__name__}: {exc}"
    for plugin in extra_plugins:
        pm.register(plugin)
    return pm, broken


def build_registry(extra_plugins: tuple[Any, ...] = ()) -> Registry:
    """Call the registration hooks once and index their answers."""
    pm, broken = make_plugin_manager(extra_plugins)
    reg = Registry(pm=pm, broken=broken)
    for impl in pm.hook.cfbench_generators.get_hookimpls():
        plugin_name = pm.get_name(impl.plugin) or "?"
        try:
            specs = impl.function() or []
        except Exception as exc:
            reg.broken[plugin_name] = f"cfbench_generators failed: {type(exc).__name__}: {exc}"
            continue
        for spec in specs:
            if spec.name in reg.generators:
                other = reg.generators[spec.name].plugin
                raise UserError(
                    f"method {spec.name!r} is registered twice (plugins {other!r} and {plugin_name!r})"
                )
            object.__setattr__(spec, "plugin", plugin_name)
            reg.generators[spec.name] = spec
    for loaders in pm.hook.cfbench_dataset_loaders():
        reg.loaders.update(loaders or {})
    for paths in pm.hook.cfbench_task_paths():
        reg.task_paths.extend(Path(p) for p in paths or [])
    return reg


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry of installed plugins (cached)."""
    return build_registry()
