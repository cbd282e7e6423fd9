"""The plugin manager: loads the ``cfbench`` entry-point group and answers registry questions.

The core calls hooks through this module and never imports a plugin by name.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import os
import re
import types
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pluggy

from cfbench.core import hookspecs
from cfbench.core.errors import choices_error, closest
from cfbench.core.generator import DISTRIBUTION, Capabilities, GeneratorSpec
from cfbench.core.model import KINDS

GROUP = "cfbench"


#: the distribution whose entry points are the built-in plugins; they win every name conflict
BUILTIN_DIST = DISTRIBUTION


@dataclass
class Registry:
    """What the loaded plugins contribute, plus the plugins that failed to load and why.

    ``broken`` maps a plugin to why it contributes nothing (import failed, a hook raised);
    ``conflicts`` lists contributions that were refused while the rest of their plugin still
    loaded (a name another plugin already uses, an invalid method declaration, a hook answer of
    the wrong type, a misspelt hook).
    """

    pm: pluggy.PluginManager
    generators: dict[str, GeneratorSpec] = field(default_factory=dict)
    loaders: dict[str, Any] = field(default_factory=dict)
    task_paths: list[Path] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    builtin: frozenset[str] = frozenset()
    loader_plugin: dict[str, str] = field(default_factory=dict)
    #: the distribution each entry-point plugin came from (for install hints)
    dists: dict[str, str] = field(default_factory=dict)

    def generator(self, name: str) -> GeneratorSpec:
        """The method ``name``; unknown, a one-line error that suggests the closest name or
        names the plugin that failed to load and may have provided it."""
        if name not in self.generators:
            raise choices_error("method", name, self.generators, self._unknown_method(name))
        return self.generators[name]

    def _unknown_method(self, name: str) -> str:
        """What to add to the error of an unknown method: the plugin that failed to load and is
        named like it, else the closest method name, else every plugin that failed to load
        (one of them may provide it)."""
        key = _plugin_key(name)
        plugin = max(sorted(self.broken), key=lambda p: _likeness(key, _plugin_key(p)), default=None)
        method = closest(name, self.generators)
        if plugin is not None and (_plugin_key(plugin) == key or (
                _likeness(key, _plugin_key(plugin)) >= 0.6
                and (method is None or _likeness(key, _plugin_key(plugin)) > _likeness(name, method)))):
            return (f"; plugin {plugin!r} failed to load: {_one_line(self.broken[plugin], 300)} "
                    "(see `cfbench list methods`)")
        if method is not None:
            return f" (did you mean {method!r}?)"
        if self.broken:
            return ("; plugins that failed to load, one may provide it: "
                    + ", ".join(f"{p!r} ({_one_line(self.broken[p], 150)})" for p in sorted(self.broken))
                    + " (see `cfbench list methods`)")
        return ""

    def code_modules(self, method: str) -> tuple[str, ...]:
        """The modules ``method``'s code comes from: its plugin's (the entry point's module)
        and its factory's; what a failure's reason points into (``execution.failure``)."""
        spec = self.generator(method)
        plugin = self.pm.get_plugin(spec.plugin) if spec.plugin else None
        factory = getattr(spec.factory, "func", spec.factory)  # a functools.partial's function
        names = [getattr(plugin, "__name__", None) if isinstance(plugin, types.ModuleType)
                 else type(plugin).__module__ if plugin is not None else None,
                 getattr(factory, "__module__", None)]
        return tuple(n for n in names if isinstance(n, str))

    def loader(self, name: str) -> Any:
        if name not in self.loaders:
            raise choices_error("dataset loader", name, self.loaders)
        return self.loaders[name]

    def plugins(self) -> list[tuple[str, Any]]:
        """(name, plugin) in precedence order: built-in plugins first, then by name."""
        named = [(self.pm.get_name(p) or "?", p) for p in self.pm.get_plugins()]
        return sorted(named, key=lambda np_: (np_[0] not in self.builtin, np_[0]))


def _plugin_key(name: str) -> str:
    """A plugin or method name compared loosely: ``cfbench_growing_spheres`` and
    ``growing-spheres`` are one key."""
    return re.sub(r"^cfbench-", "", name.lower().replace("_", "-"))


def _likeness(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _one_line(text: str, limit: int) -> str:
    """``text`` on one line (whitespace runs made one space), cut to ``limit`` characters."""
    flat = " ".join(text[: limit * 4].split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _entry_points() -> tuple[list[tuple[str, importlib.metadata.EntryPoint]], dict[str, str]]:
    """``(distribution name, entry point)`` of the ``cfbench`` group, built-in ones first."""
    found: list[tuple[str, importlib.metadata.EntryPoint]] = []
    broken: dict[str, str] = {}
    seen: set[tuple[str, str, str]] = set()
    for dist in importlib.metadata.distributions():
        try:
            dist_name = dist.metadata["Name"] or "?"
            eps = [ep for ep in dist.entry_points if ep.group == GROUP]
        except Exception as exc:  # a malformed dist-info must not stop the others
            broken[str(getattr(dist, "_path", "?"))] = f"unreadable distribution: {_describe(exc)}"
            continue
        for ep in eps:
            key = (dist_name, ep.name, ep.value)
            if key not in seen:  # the same distribution found twice on sys.path
                seen.add(key)
                found.append((dist_name, ep))
    found.sort(key=lambda d_ep: (d_ep[0] != BUILTIN_DIST, d_ep[1].name, d_ep[0]))
    return found, broken


def make_plugin_manager(extra_plugins: tuple[Any, ...] = ()
                        ) -> tuple[pluggy.PluginManager, dict[str, str], list[str], dict[str, str]]:
    """A manager with the hookspecs, every ``cfbench`` entry point, and ``extra_plugins``.

    Each entry point is imported on its own, built-in ones first: one that fails to import,
    even with ``SystemExit`` or another ``BaseException``, is recorded in ``broken`` and every
    other plugin still loads (only ``KeyboardInterrupt`` goes through).  An entry point whose
    name is taken already is refused and listed in ``conflicts``.  Returns
    ``(pm, broken, conflicts, {plugin name: the distribution it came from})``.
    """
    pm = pluggy.PluginManager("cfbench")
    pm.add_hookspecs(hookspecs)
    eps, broken = _entry_points()
    conflicts: list[str] = []
    owner: dict[str, str] = {}
    for dist_name, ep in eps:
        if ep.name in owner:
            conflicts.append(f"plugin {ep.name!r} of {dist_name} ignored: the name belongs to "
                             f"{owner[ep.name]}")
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit at import must not exit cfbench
            broken[ep.name] = _describe(exc)
            continue
        owner[ep.name] = dist_name
    for plugin in extra_plugins:
        try:
            pm.register(plugin)
        except Exception as exc:
            broken[str(getattr(plugin, "__name__", plugin))] = _describe(exc)
    conflicts += _unknown_hooks(pm)
    return pm, broken, conflicts, owner


def _unknown_hooks(pm: pluggy.PluginManager) -> list[str]:
    """``pm.check_pending()`` for every plugin, as report lines instead of the first exception."""
    out = []
    for name in sorted(vars(pm.hook)):
        caller = getattr(pm.hook, name)
        if name.startswith("_") or not hasattr(caller, "has_spec") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if not impl.optionalhook:
                out.append(f"plugin {impl.plugin_name!r}: unknown hook {name!r} ignored "
                           f"(hooks are {', '.join(HOOKS)})")
    return out


HOOKS = ("cfbench_generators", "cfbench_dataset_loaders", "cfbench_task_paths",
         "cfbench_add_commands")


def _call_each(reg: Registry, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """``(plugin, answer)`` of each plugin's ``hook`` in precedence order; a plugin whose hook
    raises is marked broken and left out."""
    out = []
    impls = {id(i.plugin): i for i in getattr(reg.pm.hook, hook).get_hookimpls()}
    for name, plugin in reg.plugins():
        impl = impls.get(id(plugin))
        if impl is None or name in reg.broken:
            continue
        if impl.hookwrapper or impl.wrapper:
            reg.conflicts.append(f"plugin {name!r}: {hook} as a hook wrapper is not supported; ignored")
            continue
        try:
            out.append((name, impl.function(**{a: kwargs[a] for a in impl.argnames})))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - one plugin must not take the tool down
            reg.broken[name] = f"{hook} failed: {_describe(exc)}"
    return out


def spec_problem(spec: Any) -> str | None:
    """Why ``spec`` cannot be run (None when it is a usable ``GeneratorSpec``)."""
    if not isinstance(spec, GeneratorSpec):
        return f"expected a GeneratorSpec, got {type(spec).__name__}"
    if not isinstance(spec.name, str) or not spec.name.strip() or ":" in spec.name or "," in spec.name:
        return f"method name {spec.name!r} must be a non-empty string without ':' or ','"
    if not callable(spec.factory):
        return "factory is not callable"
    v = spec.variants
    if (not isinstance(v, (tuple, list)) or not v
            or any(not isinstance(x, str) or not x or ":" in x or "," in x for x in v)):
        return f"variants must be a non-empty list of names, got {v!r}"
    if len(set(v)) != len(v):
        return f"variants {list(v)!r} repeat a name"
    caps = spec.capabilities
    if not isinstance(caps, Capabilities):
        return f"capabilities must be a Capabilities, got {type(caps).__name__}"
    bs = caps.batch_size
    if bs is not None and (isinstance(bs, bool) or not isinstance(bs, int) or bs < 1):
        return f"batch_size must be a positive integer or None (all queries at once), got {bs!r}"
    if not all(isinstance(m, str) for m in (*spec.requires, *spec.preload)):
        return "requires and preload must list module names"
    if not isinstance(spec.variant_needs, dict):
        return f"variant_needs must map variants to sets of kinds, got {spec.variant_needs!r}"
    for needs in (spec.needs, *spec.variant_needs.values()):
        if (not isinstance(needs, (frozenset, set, tuple, list)) or not needs
                or any(n not in KINDS for n in needs)):
            return f"needs must be a non-empty set of {', '.join(KINDS)}, got {needs!r}"
    unknown = [v for v in spec.variant_needs if v not in spec.variants]
    if unknown:
        return f"variant_needs names unknown variant {unknown[0]!r}"
    return None


def build_registry(extra_plugins: tuple[Any, ...] = ()) -> Registry:
    """Call the registration hooks once per plugin and index their answers.

    Nothing one plugin does here can stop the others: a hook that raises or answers the wrong
    type, an invalid method, or a name that an earlier plugin (built-in plugins come first)
    already registered is reported in ``broken`` or ``conflicts`` and skipped.
    """
    pm, broken, conflicts, dists = make_plugin_manager(extra_plugins)
    builtin = frozenset(n for n, d in dists.items() if d == BUILTIN_DIST)
    reg = Registry(pm=pm, broken=broken, conflicts=conflicts, builtin=builtin, dists=dists)
    for plugin_name, specs in _call_each(reg, "cfbench_generators"):
        if specs is None:
            continue
        if not isinstance(specs, (list, tuple)):
            reg.broken[plugin_name] = (f"cfbench_generators returned {type(specs).__name__}, "
                                       "expected a list of GeneratorSpec")
            continue
        for spec in specs:
            problem = spec_problem(spec)
            label = f"method {getattr(spec, 'name', '?')!r} of plugin {plugin_name!r}"
            if problem:
                reg.conflicts.append(f"{label} is broken: {problem}")
            elif spec.name in reg.generators:
                other = reg.generators[spec.name].plugin
                reg.conflicts.append(f"{label} ignored: the name belongs to plugin {other!r}"
                                     + (" (built-in)" if other in builtin else ""))
            else:
                object.__setattr__(spec, "plugin", plugin_name)
                reg.generators[spec.name] = spec
    for plugin_name, loaders in _call_each(reg, "cfbench_dataset_loaders"):
        if loaders is None:
            continue
        if not isinstance(loaders, dict):
            reg.broken[plugin_name] = (f"cfbench_dataset_loaders returned {type(loaders).__name__}, "
                                       "expected a dict of name -> callable")
            continue
        for name, fn in loaders.items():
            label = f"dataset loader {name!r} of plugin {plugin_name!r}"
            if not isinstance(name, str) or not callable(fn):
                reg.conflicts.append(f"{label} is broken: expected a name and a callable")
            elif name in reg.loaders:
                other = reg.loader_plugin[name]
                reg.conflicts.append(f"{label} ignored: the name belongs to plugin {other!r}"
                                     + (" (built-in)" if other in builtin else ""))
            else:
                reg.loaders[name] = fn
                reg.loader_plugin[name] = plugin_name
    for plugin_name, paths in _call_each(reg, "cfbench_task_paths"):
        if paths is None:
            continue
        if isinstance(paths, (str, bytes)) or not isinstance(paths, (list, tuple)):
            reg.broken[plugin_name] = (f"cfbench_task_paths returned {type(paths).__name__}, "
                                       "expected a list of paths")
            continue
        for p in paths:
            if isinstance(p, (str, os.PathLike)):
                reg.task_paths.append(Path(p))
            else:
                reg.conflicts.append(f"task path {p!r} of plugin {plugin_name!r} is not a path; ignored")
    return reg


def add_commands(reg: Registry, subparsers: argparse._SubParsersAction) -> None:
    """Let each plugin add its sub-commands; one that raises or takes an existing command name
    is reported (``cfbench list methods``) and the existing command stays."""
    before = dict(subparsers.choices)
    for plugin_name, _ in _call_each(reg, "cfbench_add_commands", subparsers=subparsers):
        for cmd, parser in list(subparsers.choices.items()):
            if cmd in before and before[cmd] is not parser:
                subparsers.choices[cmd] = before[cmd]
                reg.conflicts.append(f"command {cmd!r} of plugin {plugin_name!r} ignored: "
                                     "the name is taken")
        before = dict(subparsers.choices)


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry of installed plugins (cached)."""
    return build_registry()
