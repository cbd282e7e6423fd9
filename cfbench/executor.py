"""Where a cell's worker runs: the seam between the runner and an execution engine.

The runner speaks one small protocol to a cell's worker, whatever runs it: the worker fits the
generator once (its first message is ``("fitted", seconds, provenance)`` or
``("fit_error", why)``), then answers each ``("batch", first_query_id, rows, targets, k,
budget)`` with ``("results", first_query_id, outputs, seconds)``.  ``recv`` returns
``("msg", message)``, ``("timeout", None)`` or ``("died", cause)``; the runner kills a worker
that times out or dies and starts a fresh one for the remaining queries.  Records are written
by the runner on the driver only, so the store stays a single writer whatever the executor.

``local`` runs workers as processes of this machine (the fork server); ``ray`` runs each cell
in its own Ray actor, on a local or remote Ray cluster (:mod:`cfbench.ray_executor`).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from cfbench.errors import UserError, choices_error

if TYPE_CHECKING:
    from cfbench.runner import Cell, RunConfig
    from cfbench.task import Task

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
        done (``cfbench.phase.ready``) to ``on_ready``, where it can."""

    def close(self) -> None: ...


class _LocalHandle:
    """A :class:`cfbench.runner._Worker` behind the :class:`WorkerHandle` protocol."""

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
        from cfbench.runner import _Worker

        return _LocalHandle(_Worker(task, cell, cfg, threads, on_phase, on_ready))

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
        from cfbench.ray_executor import RayExecutor

        return RayExecutor(**opts)
    raise choices_error("executor", name, EXECUTORS)
