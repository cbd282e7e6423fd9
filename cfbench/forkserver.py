"""Where worker processes come from: a fork server that has imported the heavy modules once.

Workers never fork the parent itself (it may hold threads, OpenMP pools or a loaded torch);
they fork a clean server process that has imported cfbench, pandas and scikit-learn, plus the
``preload`` modules of the methods in the run.
Starting that server early (:func:`warm`) lets its imports overlap with the parent's own
imports and task load, so the first worker is ready when the parent is.
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

#: modules the fork server imports once, so that a worker starts in milliseconds, not seconds
PRELOAD = ["cfbench.runner", "cfbench.task", "cfbench.plugins", "sklearn.ensemble",
           "sklearn.neural_network", "sklearn.neighbors"]


_extra: list[str] = []


def context() -> Any:
    """``forkserver`` with :data:`PRELOAD` where the platform has it, else ``spawn``."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD + _extra)
        return ctx
    return mp.get_context("spawn")


def warm(modules: list[str] | tuple[str, ...] = ()) -> None:
    """Start the fork server now, also preloading ``modules`` (a no-op where there is none).

    The server imports in the background while the caller goes on; a module that fails to
    import is skipped by the server and imported by the worker as usual.  Only the first call
    per process starts a server, so later ``modules`` are ignored.
    """
    if "forkserver" not in mp.get_all_start_methods():
        return
    _extra.extend(m for m in modules if m not in PRELOAD and m not in _extra)
    context()
    from multiprocessing import forkserver

    forkserver.ensure_running()
