"""Where a cell's worker runs: the seam between the runner and an execution engine.

The runner speaks one small protocol to a cell's worker, whatever runs it: the worker fits the
generator once (its first message is ``messages.Fitted`` or ``messages.FitError``), then
answers each ``messages.Batch`` with one ``messages.Results`` (named tuples:
:mod:`cfbench.execution.messages`).  ``recv`` returns
``("msg", message)``, ``("timeout", None)`` or ``("died", cause)``; the runner kills a worker
that times out or dies and starts a fresh one for the remaining queries.  Records are written
by the runner on the driver only, so the store stays a single writer whatever the executor.

``local`` runs workers as processes of this machine (the fork server); ``ray`` runs each cell
in its own Ray actor, on a local or remote Ray cluster (:mod:`cfbench.execution.ray_executor`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cfbench.core.errors import UserError, choices_error
from cfbench.execution import messages, schedule, workerproc
from cfbench.execution.forkserver import PRELOAD_WAIT, context, ready
from cfbench.execution.worker import _worker

if TYPE_CHECKING:
    from cfbench.execution.config import Cell, RunConfig
    from cfbench.tasks.spec import Task

EXECUTORS = ("local", "ray")
ENV_VAR = "CFBENCH_EXECUTOR"


class WorkerHandle(Protocol):
    """The driver's end of one cell's worker."""

    def send(self, msg: tuple) -> None:
        """Send one ``("batch", …)`` message."""

    def recv(self, timeout: float) -> tuple[str, Any]:
        """``("msg", message)``, ``("timeout", None)`` or ``("died", cause)``."""

    def kill(self) -> None:
        """End the worker now (hung or misbehaving)."""

    def stop(self) -> None:
        """End the worker after its last batch."""


class Executor(Protocol):
    """Starts cells' workers; ``open``/``close`` bracket one run (one task)."""

    name: str

    def open(self, task: Task, cfg: RunConfig) -> None: ...

    def start(self, task: Task, cell: Cell, cfg: RunConfig, threads: int = 0,
              on_phase: Callable[[str], None] | None = None,
              on_ready: Callable[[], None] | None = None) -> WorkerHandle:
        """A started worker for ``cell``: ``threads`` CPU threads (0: as configured), long
        phases (model conversion, fine-tuning) reported to ``on_phase`` and a shared set-up
        done (``cfbench.core.phase.ready``) to ``on_ready``, where it can."""

    def close(self) -> None: ...


class _LocalHandle:
    """A :class:`cfbench.execution.orchestrator.LocalWorker` behind the :class:`WorkerHandle` protocol."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker

    def send(self, msg: tuple) -> None:
        self.worker.conn.send(msg)

    def recv(self, timeout: float) -> tuple[str, Any]:
        kind, msg = self.worker.recv(timeout)
        if kind == "died":  # where to look: what the worker printed before it died
            return kind, f"exit code {msg}; its output is in logs/{self.worker.log.name}"
        return kind, msg

    def kill(self) -> None:
        self.worker.kill()

    def stop(self) -> None:
        self.worker.stop()


class LocalExecutor:
    """Each cell in a process of this machine, forked from the workers' fork server."""

    name = "local"

    def open(self, task: Task, cfg: RunConfig) -> None:
        pass

    def start(self, task: Task, cell: Cell, cfg: RunConfig, threads: int = 0,
              on_phase: Callable[[str], None] | None = None,
              on_ready: Callable[[], None] | None = None) -> WorkerHandle:
        return _LocalHandle(LocalWorker(task, cell, cfg, threads, on_phase, on_ready))

    def close(self) -> None:
        pass


def executor_name(flag: str | None) -> str:
    """The executor to use: ``flag``, else ``$CFBENCH_EXECUTOR``, else ``local``; checked."""
    name = flag or os.environ.get(ENV_VAR) or "local"
    if name not in EXECUTORS:
        where = "--executor" if flag else f"${ENV_VAR}"
        raise UserError(f"{where}: unknown executor {name!r}; valid choices: {', '.join(EXECUTORS)}")
    if name == "ray" and importlib.util.find_spec("ray") is None:
        raise UserError("--executor ray needs Ray installed: pip install 'cfbench-harness[ray]'")
    return name


def get_executor(name: str = "local", **opts: Any) -> Executor:
    """An executor by name; ``opts`` go to its constructor (``address`` for ``ray``)."""
    if name == "local":
        if opts.get("address") is not None:
            raise UserError(f"--ray-address {opts['address']!r} needs --executor ray "
                            f"(or {ENV_VAR}=ray)")
        return LocalExecutor()
    if name == "ray":
        executor_name(name)  # is Ray installed?
        # Ray is an optional extra (~240 MB, 0.5 s to import): loaded only when asked for
        from cfbench.execution.ray_executor import RayExecutor

        return RayExecutor(**opts)
    raise choices_error("executor", name, EXECUTORS)


class LocalWorker:
    """A spawned worker process (leading its own process group) and the parent's end of its pipe."""

    def __init__(self, task: Task, cell: Cell, cfg: RunConfig, threads: int = 0,
                 on_phase: Callable[[str], None] | None = None,
                 on_ready: Callable[[], None] | None = None) -> None:
        ctx = context()
        ready(min(cfg.fit_timeout, PRELOAD_WAIT))  # a preload that breaks the server is left out
        self.conn, child = ctx.Pipe()
        self.on_phase = on_phase
        self.on_ready = on_ready
        self._kill_lock = threading.Lock()  # an interrupt and the cell's own thread may both kill
        environ = schedule.worker_env(threads) if threads else dict(os.environ)
        self.log = Path(cfg.out) / "logs" / workerproc.log_name(cell.label, cell.seed)
        self.proc = ctx.Process(
            target=_worker,
            args=(child, task, cell.method, cell.variant, cell.seed, dict(cell.params), list(sys.path),
                  environ, workerproc.lifeline(ctx), str(self.log)),
            daemon=True,
        )
        self.proc.start()
        child.close()

    def recv(self, timeout: float) -> tuple[str, Any]:
        """Next message, or ("timeout", None) / ("died", exit code); phase messages go to
        ``on_phase`` on the way, a set-up's ``("ready",)`` to ``on_ready``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout", None
            try:
                if self.conn.poll(min(left, 0.5)):
                    msg = self.conn.recv()
                    if isinstance(msg, tuple) and msg and msg[0] == "phase":
                        if self.on_phase is not None:
                            self.on_phase(str(msg[1]))
                        continue
                    if isinstance(msg, tuple) and msg and msg[0] == "ready":
                        if self.on_ready is not None:
                            self.on_ready()
                        continue
                    return "msg", msg
            except (EOFError, OSError):
                self.proc.join(5)
                return "died", self.proc.exitcode
            if not self.proc.is_alive():
                try:
                    while self.conn.poll(0):
                        msg = self.conn.recv()
                        if isinstance(msg, tuple) and msg and msg[0] == "phase":
                            if self.on_phase is not None:  # what it was doing when it died
                                self.on_phase(str(msg[1]))
                        elif not (isinstance(msg, tuple) and msg and msg[0] == "ready"):
                            return "msg", msg
                except (EOFError, OSError):
                    pass
                return "died", self.proc.exitcode

    def kill(self) -> None:
        """Kill the worker and every process it started (its process group); safe to call from
        two threads at once (an interrupt's abort and the cell's own clean-up)."""
        with self._kill_lock:
            workerproc.kill_group(self.proc.pid)
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(10)
            workerproc.kill_group(self.proc.pid)  # children started just before the kill
            if not self.conn.closed:
                self.conn.close()
            workerproc.drop_if_empty(self.log)

    def stop(self) -> None:
        try:
            self.conn.send(messages.STOP)
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(10)
        self.kill()


