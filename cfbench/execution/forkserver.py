"""Where worker processes come from: a fork server that has imported the heavy modules once.

Workers never fork the parent itself (it may hold threads, OpenMP pools or a loaded torch);
they fork a clean server process that has imported cfbench, pandas and scikit-learn, plus the
``preload`` modules of the methods in the run.
Starting that server early (:func:`warm`) lets its imports overlap with the parent's own
imports and task load, so the first worker is ready when the parent is.

A method's ``preload`` module is a plugin's code running in the one process every worker comes
from, so it is watched (:func:`ready`): one whose import raises, ends the server or does not
return is left out and the server restarted without it.  Only that method pays: its workers
import the module themselves, under its fit timeout, and record what happens.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import threading
import time
from multiprocessing import forkserver, resource_tracker, util
from typing import Any

#: modules the fork server imports once, so that a worker starts in milliseconds, not seconds
PRELOAD = ["cfbench.execution.orchestrator", "cfbench.tasks.spec", "cfbench.core.plugins", "sklearn.ensemble",
           "sklearn.neural_network", "sklearn.neighbors"]
#: imported after :data:`PRELOAD`: imports the methods' modules one by one, reporting each
GUARD = "cfbench.execution.preload_guard"
#: the server's environment names the modules for the guard, and the file it reports to
MODULES_VAR, STATUS_VAR = "CFBENCH_PRELOAD_MODULES", "CFBENCH_PRELOAD_STATUS"
#: the longest wait for one preload module before the server is restarted without it (the
#: method's fit timeout, when shorter, bounds it too)
PRELOAD_WAIT = 120.0


#: the methods' preload modules the server imports (through :data:`GUARD`)
_extra: list[str] = []
#: preload modules left out of the server, with why
_dropped: dict[str, str] = {}
#: the progress file (path, open for reading) of a started server whose preloads :func:`ready`
#: has not yet seen through; the guard removes the path once it has opened the file
_status: tuple[str, Any] | None = None
_server_lock = threading.Lock()
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
        ctx.set_forkserver_preload(PRELOAD + ([GUARD] if _extra else []))
        return ctx
    return mp.get_context("spawn")


def installed(module: str) -> bool:
    """Whether ``module``'s top-level package is installed (found without importing anything)."""
    try:
        return importlib.util.find_spec(module.partition(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def warm(modules: list[str] | tuple[str, ...] = ()) -> None:
    """Start the fork server now, also preloading ``modules`` (a no-op where there is none).

    The server imports in the background while the caller goes on; :func:`ready` (called before
    the first worker starts) leaves out a module that fails there.  Only the first call per
    process starts a server, so later ``modules`` are ignored.
    """
    if "forkserver" not in mp.get_all_start_methods():
        return

    with _server_lock:
        if forkserver._forkserver._forkserver_pid is not None:
            return
        _extra.extend(m for m in modules
                      if m not in PRELOAD and m not in _extra and installed(m))
        _launch()


def ready(timeout: float = PRELOAD_WAIT) -> dict[str, str]:
    """Wait until the fork server has imported the preload modules; returns those left out.

    A module whose import raises, ends the server (``os._exit``, a crash) or makes no progress
    for ``timeout`` seconds is left out (module -> why) and the server restarted without it,
    so it costs only the methods that name it: their workers import it themselves.  Returns at
    once when the server was started without preload modules or has been seen through before.
    """
    global _status
    with _server_lock:
        while _status is not None:
            path, report = _status
            bad, reaped = _watch(report, timeout)
            if bad:
                _dropped.update(bad)
                _extra[:] = [m for m in _extra if m not in bad]
                _forget_server(reaped)
                _launch()
            else:
                _status = None
            report.close()
            _remove(path)
        return dict(_dropped)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _launch() -> None:
    """Start the server; with preload modules, its guard reports to a new progress file."""
    global _status

    context()  # the preload list, the guard included when there are modules
    if not _extra:
        _status = None
        forkserver.ensure_running()
        return
    fd, path = tempfile.mkstemp(prefix="cfbench-preload-", suffix=".txt")
    _status = (path, os.fdopen(fd, encoding="utf-8", errors="replace"))
    atexit.register(_remove, path)  # in case the guard never got to it
    saved = {var: os.environ.get(var) for var in (MODULES_VAR, STATUS_VAR)}
    os.environ.update({MODULES_VAR: ",".join(_extra), STATUS_VAR: path})
    try:  # the server inherits this environment; the guard takes the two variables out
        forkserver.ensure_running()
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _progress(report: Any) -> tuple[str, str | None, dict[str, str], bool]:
    """The guard's report: (text, module being imported, failed modules with why, done)."""
    report.seek(0)
    text = report.read()
    current: str | None = None
    failed: dict[str, str] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition("\t")
        if kind == "start":
            current = rest
        elif kind in ("ok", "fail"):
            current = None
            if kind == "fail":
                name, _, why = rest.partition("\t")
                failed[name] = f"failed to import in the workers' fork server: {why}"
        elif kind == "done":
            return text, None, failed, True
    return text, current, failed, False


def _watch(report: Any, timeout: float) -> tuple[dict[str, str], bool]:
    """Follow the server's preloads to their end: (modules to leave out with why, whether the
    server has ended and been reaped here)."""

    pid = forkserver._forkserver._forkserver_pid
    seen, deadline = None, time.monotonic() + timeout
    while True:
        text, current, failed, done = _progress(report)
        if done:
            return failed, False
        if text != seen:  # progress: each module gets the whole timeout
            seen, deadline = text, time.monotonic() + timeout
        code = _exit_code(pid)
        if code is None and time.monotonic() < deadline:
            time.sleep(0.05)
            continue
        _, current, failed, _ = _progress(report)  # what it wrote before it ended
        why = (f"ended the workers' fork server (exit code {code})" if code is not None
               else f"did not finish importing within {timeout:g} s in the workers' fork server")
        if current is not None:
            failed[current] = why
        elif not failed:  # ended before the first module: none of them is preloaded
            failed = {m: why for m in _extra}
        return failed, code is not None


def _exit_code(pid: int | None) -> int | None:
    """The server's exit code once it has ended (it is reaped then), else ``None``."""
    if pid is None:
        return -1
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return -1
    return os.waitstatus_to_exitcode(status) if done else None


def _forget_server(reaped: bool) -> None:
    """Kill the server (unless it has ended and been reaped) and clear multiprocessing's record
    of it, so that the next start launches a new one."""

    fs = forkserver._forkserver
    with fs._lock:
        pid = fs._forkserver_pid
        if pid is not None and not reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if fs._forkserver_alive_fd is not None:
            with contextlib.suppress(OSError):
                os.close(fs._forkserver_alive_fd)
        address = fs._forkserver_address
        if isinstance(address, str) and not util.is_abstract_socket_namespace(address):
            with contextlib.suppress(OSError):
                os.unlink(address)
        fs._forkserver_address = fs._forkserver_alive_fd = fs._forkserver_pid = None
        if hasattr(fs, "_forkserver_authkey"):  # Python 3.14
            fs._forkserver_authkey = None
