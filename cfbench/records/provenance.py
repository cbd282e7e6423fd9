"""Provenance: the versions, host and seed that let any result row be reproduced.

Besides the core libraries' versions, a record names the CPU it ran on (``cpu``), the CPU
features that change floating-point results (``cpu_flags``: fused multiply-add, the AVX-512
and AMX bfloat16 paths, ...; only those present) and a hash of every installed distribution
(``environment_sha256``), so two rows whose numbers differ in the last digits can be told
apart by machine or by environment rather than guessed at.  Each is computed once per process.

A record also names the release its method came from (``plugin_distribution``): the plugin's
distribution and version and, for an editable install (PEP 610 ``direct_url.json`` with
``dir_info.editable``), the git commit of the checkout its code was imported from, so a
reviewer can tell which release, or which commit of a work in progress, produced a row.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import socket
import subprocess
import sys
from collections.abc import Iterable
from functools import cache, lru_cache
from pathlib import Path
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


#: CPU features that change what floating-point code computes (another kernel, fused rounding
#: or a bfloat16/fp16 path in oneDNN, OpenBLAS or torch): x86 names, then Arm's
NUMERIC_CPU_FLAGS = (
    "fma", "f16c", "avx", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
    "asimd", "asimdhp", "fphp", "bf16", "i8mm", "sve", "sve2", "sme",
)
#: where Linux describes the CPU
CPUINFO = Path("/proc/cpuinfo")


def parse_cpuinfo(text: str) -> tuple[str | None, list[str]]:
    """The CPU model and its :data:`NUMERIC_CPU_FLAGS` (in that order) from ``/proc/cpuinfo``
    text; the first processor's entry is enough, all cores of a machine being alike."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key not in fields:
            fields[key] = value.strip()
    # x86 says "model name" and "flags"; Arm says "Features" and, on some kernels, "Hardware"
    # or "Model" (the board) instead of a model name
    model = next((fields[k] for k in ("model name", "hardware", "model", "cpu model")
                  if fields.get(k)), None)
    present = set((fields.get("flags") or fields.get("features") or "").split())
    return model, [f for f in NUMERIC_CPU_FLAGS if f in present]


@cache
def cpu() -> tuple[str, tuple[str, ...]]:
    """``(model, numeric flags)`` of this machine's CPU, read once per process: from
    ``/proc/cpuinfo`` where there is one, else ``platform.processor()`` (or the machine type)
    and no flags."""
    try:
        model, flags = parse_cpuinfo(CPUINFO.read_text(errors="replace"))
    except OSError:
        model, flags = None, []
    return model or platform.processor() or platform.machine() or "unknown", tuple(flags)


def canonical_name(name: str) -> str:
    """A distribution's name as PEP 503 compares them (``Scikit_Learn`` → ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_sha256(dists: Iterable[tuple[str, str]]) -> str:
    """SHA-256 of the sorted, de-duplicated ``name==version`` lines of ``dists`` (name, version)
    pairs, names canonical: the same set installed gives the same hash, in any order."""
    lines = sorted({f"{canonical_name(n)}=={v}" for n, v in dists})
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def name_version(dist: importlib.metadata.Distribution) -> tuple[str, str] | None:
    """``(Name, Version)`` from the header of ``dist``'s metadata file, or None without them.

    Reads the header lines only: ``dist.metadata`` parses the whole file as an e-mail message
    (and ``dist.version`` parses it again), three to six times slower over an environment.
    """
    try:
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    except OSError:
        return None
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the header ends at the first blank line
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version"):
            found.setdefault(key, value.strip())
    return (found["Name"], found["Version"]) if len(found) == 2 else None


@cache
def environment_sha256() -> str:
    """:func:`requirements_sha256` of every distribution installed for this interpreter, once
    per process (about 50 ms for 200 distributions)."""
    return requirements_sha256(nv for d in importlib.metadata.distributions()
                               if (nv := name_version(d)) is not None)


@lru_cache(maxsize=1)
def environment() -> dict[str, object]:
    """cfbench, Python and core library versions, the host, its CPU and a hash of the installed
    distributions, computed once per process."""
    model, flags = cpu()
    return {
        "cfbench": cfbench.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu": model,
        "cpu_flags": list(flags),
        "environment_sha256": environment_sha256(),
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
