"""Provenance: the versions, host and seed that let any result row be reproduced.

A record also names the release its method came from (``plugin_distribution``): the plugin's
distribution and version and, for an editable install (PEP 610 ``direct_url.json`` with
``dir_info.editable``), the git commit of the checkout its code was imported from, so a
reviewer can tell which release, or which commit of a work in progress, produced a row.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from functools import cache, lru_cache
from urllib.parse import unquote, urlsplit

import cfbench

CORE_DISTS = ("numpy", "pandas", "scikit-learn", "pluggy", "pyarrow")


def dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@cache
def module_dists(modules: tuple[str, ...]) -> dict[str, str]:
    """Versions of the distributions that provide ``modules`` (those installed).

    A distribution named like its top-level module is looked up directly; only the others
    (``sklearn`` → ``scikit-learn``) need the slow scan of every installed distribution.
    """
    out: dict[str, str] = {}
    unknown = []
    for mod in modules:
        top = mod.split(".")[0]
        try:
            dist = importlib.metadata.distribution(top)
        except importlib.metadata.PackageNotFoundError:
            unknown.append(top)
        else:
            out[dist.metadata["Name"]] = dist.version
    if unknown:
        mapping = importlib.metadata.packages_distributions()
        for top in unknown:
            for dist in mapping.get(top, []):
                if v := dist_version(dist):
                    out[dist] = v
    return out


@lru_cache(maxsize=1)
def environment() -> dict[str, object]:
    """cfbench, Python and core library versions plus the host, computed once per process."""
    return {
        "cfbench": cfbench.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "libraries": {d: v for d in CORE_DISTS if (v := dist_version(d))},
    }


#: seconds ``git rev-parse`` may take before the commit is left out
GIT_TIMEOUT = 5.0


@cache
def distribution_release(dist: str) -> dict[str, object]:
    """``{"name", "version"}`` of the installed distribution ``dist`` (``{"name"}`` when it is
    not installed): what a worker reports cheaply."""
    try:
        d = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return {"name": dist}
    return {"name": d.metadata["Name"] or dist, "version": d.version}


@cache
def plugin_distribution(dist: str, source: str | None = None) -> dict[str, object]:
    """:func:`distribution_release` of ``dist`` and, when it is an editable install,
    ``"editable": True`` and the ``"commit"`` of the git checkout at ``source`` (the file or
    folder the plugin's code was imported from; else the install's source folder), if any.

    Computed once per distribution and source in a process: a git call per record, or per
    cell, would slow a run down.
    """
    out = dict(distribution_release(dist))
    try:
        installed = editable_source(importlib.metadata.distribution(dist))
    except importlib.metadata.PackageNotFoundError:
        return out
    if installed is not None:
        out["editable"] = True
        commit = git_commit(source or installed)
        if commit is not None:
            out["commit"] = commit
    return out


def editable_source(dist: importlib.metadata.Distribution) -> str | None:
    """The source folder of an editable install (PEP 610), or None for any other install."""
    try:
        info = json.loads(dist.read_text("direct_url.json") or "null")
        if not (isinstance(info, dict) and isinstance(info.get("dir_info"), dict)
                and info["dir_info"].get("editable") is True):
            return None
        url = urlsplit(str(info.get("url", "")))
    except (OSError, ValueError):
        return None
    return unquote(url.path) if url.scheme == "file" and url.path else None


def git_commit(path: str) -> str | None:
    """``git rev-parse HEAD`` in ``path`` (a file's folder for a file), or None: no git, not a
    checkout, or no answer within :data:`GIT_TIMEOUT` seconds."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    try:
        done = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=GIT_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) in (40, 64) else None


def released(info: dict[str, object]) -> dict[str, object]:
    """A ``plugin_distribution`` cut to its name and version (the release it names)."""
    return {k: info[k] for k in ("name", "version") if k in info}


def runtime_provenance(spec: object, dist: str | None = None) -> dict[str, object]:
    """What a cell's worker reports about itself: versions and host where it runs, its plugin
    and the name and version of the plugin's distribution ``dist`` (the commit of an editable
    install is the driver's to add, once per run: :func:`with_runtime`)."""
    env = environment()
    out = {
        **env,
        "libraries": {**env["libraries"], **module_dists(tuple(spec.requires))},  # type: ignore[attr-defined]
        "plugin": spec.plugin,  # type: ignore[attr-defined]
    }
    if dist is not None:
        out["plugin_distribution"] = distribution_release(dist)
    return out


def with_runtime(prov: dict[str, object], runtime: dict[str, object]) -> dict[str, object]:
    """The driver's provenance of a cell updated with what its worker reported (where it
    runs).  The driver's ``plugin_distribution`` (with the commit) stays when the worker loaded
    the same release; another release (a cluster node's own install) replaces it."""
    out = {**prov, **runtime}
    mine, theirs = prov.get("plugin_distribution"), runtime.get("plugin_distribution")
    if isinstance(mine, dict) and isinstance(theirs, dict) and released(mine) == released(theirs):
        out["plugin_distribution"] = mine
    return out
