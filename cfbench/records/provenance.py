"""Provenance: the versions, host and seed that let any result row be reproduced."""

from __future__ import annotations

import importlib.metadata
import platform
import socket
import sys
from functools import cache, lru_cache

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


def runtime_provenance(spec: object) -> dict[str, object]:
    """What a cell's worker reports about itself: versions and host where it runs, its plugin."""
    env = environment()
    return {
        **env,
        "libraries": {**env["libraries"], **module_dists(tuple(spec.requires))},  # type: ignore[attr-defined]
        "plugin": spec.plugin,  # type: ignore[attr-defined]
    }
