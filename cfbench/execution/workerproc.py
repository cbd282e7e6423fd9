"""Process hygiene of worker processes: nothing a generator starts outlives its batch or the run.

* Each worker leads its own process group (``os.setsid``), so the parent kills the worker *and
  everything it spawned* with one ``killpg`` (timeout, crash, end of cell, interrupt), and a
  generator that signals its own group cannot hit the run.
* Each worker holds the read end of a *lifeline* pipe whose only write end is held by the run's
  main process.  A watcher thread blocks on it; when the main process dies (even by ``kill -9``)
  the pipe reports EOF and the watcher kills the worker's group.  (``PR_SET_PDEATHSIG`` would
  fire on the death of the worker's parent, which is the fork server, not the run.)  With the
  workers gone, the fork server and the resource tracker exit on their own.
* A worker's stdout and stderr go to a per-cell log file, so a plugin's prints never mix into
  cfbench's own output (``cfbench leaderboard --format json``, progress bars).  The driver adds
  to the same file the traceback of what the cell's generator raised (``append_log``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from cfbench.records.runs import short_name

_lifeline: tuple[Any, Any] | None = None
_lifeline_lock = threading.Lock()


def lifeline(ctx: Any) -> Any:
    """The read end of this process's lifeline pipe, to hand to every worker it starts."""
    global _lifeline
    with _lifeline_lock:
        if _lifeline is None:
            _lifeline = ctx.Pipe(duplex=False)  # (reader, writer); the writer is never written
        return _lifeline[0]


def log_name(label: str, seed: int) -> str:
    """File name of a cell's log: ``logs/<method>_<variant>-seed<seed>.log`` (path-safe; a long
    label, e.g. with a long ``--param`` value, is cut and hashed to fit a file name)."""

    return short_name(re.sub(r"[^A-Za-z0-9._-]", "_", f"{label}-seed{seed}")) + ".log"


def setup_worker(lifeline_reader: Any, log_path: Path | None) -> None:
    """First thing a worker does: own process group, watch the lifeline, output to the log."""
    try:
        os.setsid()
    except OSError:  # already a group leader (or not supported): the kill then targets the pid
        pass
    if lifeline_reader is not None:
        threading.Thread(target=_watch, args=(lifeline_reader,), name="cfbench-lifeline",
                         daemon=True).start()
    if log_path is not None:
        redirect_output(log_path)


def _watch(reader: Any) -> None:
    try:
        reader.poll(None)  # nothing is ever sent: this returns at EOF, when the run has died
    except (OSError, EOFError, ValueError):
        pass
    kill_own_group()


def kill_own_group() -> None:
    """SIGKILL this process and, if it leads its group, every process in the group."""
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def redirect_output(path: Path) -> None:
    """Send file descriptors 1 and 2 (and ``sys.stdout``/``sys.stderr``) to ``path`` (append)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or odd stream must not stop the worker
            pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False)  # noqa: SIM115


#: the reaper of a group whose leader may be killed by someone else (a Ray actor): it outlives
#: the leader as a grandchild (not a child, which Ray kills with the actor), waits for the
#: leader's death and then kills what is left of the group, itself included
_REAPER = """
import os, select, signal, sys, time
pg = int(sys.argv[1])
try:
    fd = os.pidfd_open(pg)
except (AttributeError, OSError):
    fd = None
if os.fork():
    os._exit(0)
if fd is not None:
    select.select([fd], [], [])
else:
    while True:
        try:
            os.kill(pg, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
os.killpg(pg, signal.SIGKILL)
"""


def own_group_with_reaper() -> bool:
    """Lead a new process group, reaped when this process dies however it dies.

    For a worker killed by someone who kills only it (``ray.kill`` kills an actor and its
    direct children): whatever the generator started, at any depth, dies with it.
    """

    try:
        os.setsid()
    except OSError:
        pass
    if not hasattr(os, "killpg") or os.getpgrp() != os.getpid():
        return False
    subprocess.run([sys.executable, "-c", _REAPER, str(os.getpid())], check=False,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return True


def kill_group(pid: int | None) -> None:
    """SIGKILL the process group led by worker ``pid`` (the worker and all it spawned).

    A worker killed before it called ``setsid`` has no group of its own yet; then there is no
    group ``pid`` and nothing happens here (the caller kills the process itself).
    """
    if pid is None or pid <= 0 or not hasattr(os, "killpg"):
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def append_log(log: Path, text: str) -> None:
    """Append ``text`` to a cell's log in one write (the driver's additions, e.g. a traceback
    the worker sent; a worker still writing to the file interleaves whole writes only).  A
    log that cannot be written costs the traceback only, never the run."""
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, text.encode("utf-8", errors="replace"))
        finally:
            os.close(fd)
    except OSError:
        pass


def drop_if_empty(log: Path) -> None:
    """Remove a worker's log (and the logs folder) when nothing was written to it."""
    try:
        if log.stat().st_size == 0:
            log.unlink()
            log.parent.rmdir()  # fails, harmlessly, while other logs are in it
    except OSError:
        pass
