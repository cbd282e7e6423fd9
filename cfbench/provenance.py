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
    """Versions of the distributions that provide ``modules`` (those installed)."""
    mapping = importlib.metadata.packages_distributions()
    out: dict[str, str] = {}
    for mod in modules:
        for dist in mapping.get(mod.split(".")[0], []):
            v = dist_version(dist)
            if v:
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
