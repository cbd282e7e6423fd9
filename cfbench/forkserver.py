"""Where worker processes come from: a fork server that has imported the heavy modules once.

Workers never fork the parent itself (it may hold threads, OpenMP pools or a loaded torch);
they fork a clean server process that has imported cfbench, pandas and scikit-learn, plus the
``preload`` modules of the methods in the run.
Starting that server early (:func:`warm`) lets its imports overlap with the parent's own
imports and task load, so the first worker is ready when the parent is.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
from typing import Any

#: modules the fork server imports once, so that a worker starts in milliseconds, not seconds
PRELOAD = ["cfbench.runner", "cfbench.task", "cfbench.plugins", "sklearn.ensemble",
           "sklearn.neural_network", "sklearn.neighbors"]


_extra: list[str] = []
_tracker_lock = threading.Lock()
_tracker_started = False


def quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (once) with its stderr sent to ``/dev/null``.

    Workers are killed on timeout; a semaphore a killed generator held is still unlinked by the
    tracker, but at exit the tracker would print "There appear to be N leaked semaphore
    objects" into cfbench's output.  Only that message is lost, not the clean-up.
    """
    global _tracker_started
    with _tracker_lock:
        if _tracker_started or os.name != "posix":
            return
        _tracker_started = True
        from multiprocessing import resource_tracker

        try:
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - a closed stderr must not stop the run
            pass
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            resource_tracker.ensure_running()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def context() -> Any:
    """``forkserver`` with :data:`PRELOAD` where the platform has it, else ``spawn``."""
    quiet_resource_tracker()
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
