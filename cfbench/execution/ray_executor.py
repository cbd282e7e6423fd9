"""The ``ray`` executor: each cell in its own Ray actor process, on a local or remote cluster.

The task (data, split, fitted classifier) is put in Ray's object store once per run and handed
to every cell's actor as an object reference, so a node receives it once, not once per cell.
The actor fits the generator in its constructor's process and answers batches as method calls;
the driver waits for each answer with the same hard timeout as the local executor and kills a
hung actor (``ray.kill``), so the runner records ``timeout`` and starts a fresh actor for the
rest.  A dead actor or node comes back as ``("died", cause)`` and is recorded as ``error``.
Results come back to the driver, which alone writes the store.

Without an address a private single-node cluster is started on this machine, and torn down
with the driver: a small reaper process, holding a lifeline pipe to the driver, follows the
cluster's process tree and kills all of it when the driver dies, ``kill -9`` included (Ray
alone leaves its agents, and at times the actors, running for a minute).  On a cluster given by
address, Ray itself ends a dead driver's actors (its job ends with the driver's connection).

An actor that lands on the driver's own node applies the driver's ``sys.path``, ``PYTHONPATH``
and ``CFBENCH_*`` settings, so plugins found through ``PYTHONPATH`` work there; on every other
node cfbench and the plugins must be installed, and settings come from the node's environment.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import ray

from cfbench.core.errors import UserError
from cfbench.core.generator import DISTRIBUTION
from cfbench.core.plugins import registry
from cfbench.execution import messages
from cfbench.execution.config import Cell, RunConfig
from cfbench.execution.failure import describe_exception
from cfbench.execution.worker import answer_batch, fit_generator, plugin_roots, unsendable
from cfbench.execution.workerproc import own_group_with_reaper
from cfbench.score.metrics import envelope
from cfbench.tasks.spec import Task

#: (address, num_cpus) of the Ray connection this process made, if any
_connected: dict[str, Any] = {}
#: the reaper of the local cluster this process started: its process and the write end of its
#: lifeline (the only one; each line written names the cluster's first processes)
_reaper: dict[str, Any] = {}

#: follows the process trees of the pids it is sent, one line at a time, on stdin (the driver's
#: lifeline); at EOF (the driver has ended, however) it kills every process it has seen in them
#: that still lives, with the process group each leads (an actor's: what its generator started)
_CLUSTER_REAPER = r"""
import os, select, signal, time
me = os.getpid()

def started(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in "ZX" else fields[19]

def tree(roots):
    out, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in out or pid == me:
            continue
        out.add(pid)
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/children" % (pid, tid)) as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out

def alive(pids):
    return {pid: t for pid, t in ((pid, started(pid)) for pid in pids) if t is not None}

roots, seen, buf = {}, {}, b""
while True:
    if select.select([0], [], [], 0.5)[0]:
        data = os.read(0, 4096)
        if not data:
            break
        *lines, buf = (buf + data).split(b"\n")
        roots.update(alive(int(p) for line in lines for p in line.split()))
    roots = {p: t for p, t in roots.items() if started(p) == t}  # a reused pid is not ours
    seen = {p: t for p, t in seen.items() if started(p) == t}
    seen.update(alive(tree(roots)))
for _ in range(50):
    victims = {p: t for p, t in seen.items() if started(p) == t}
    victims.update(alive(tree(victims)))
    if not victims:
        break
    seen.update(victims)
    for pid in victims:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.1)
"""


def _children() -> set[int]:
    """The pids of this process's children (from ``/proc``; an empty set without it)."""
    out: set[int] = set()
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as fh:
                out.update(int(p) for p in fh.read().split())
    except OSError:
        pass
    return out


def _reap_with_driver(pids: set[int]) -> None:
    """Have the processes ``pids`` (a local cluster's) and all they start killed when this
    process ends, ``kill -9`` included: by a reaper process holding a lifeline pipe to it."""
    if not pids:
        return
    if not _reaper:
        reader, writer = os.pipe()  # the writer is not inherited: only this process holds it
        try:
            proc = subprocess.Popen([sys.executable, "-c", _CLUSTER_REAPER], stdin=reader,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)  # spared by a kill of our group
        finally:
            os.close(reader)
        _reaper.update(proc=proc, lifeline=writer)
    os.write(_reaper["lifeline"], (" ".join(map(str, sorted(pids))) + "\n").encode())


def connect(address: str | None, num_cpus: int) -> None:
    """Connect to the cluster at ``address``, or start a private local one with ``num_cpus``.

    One connection per process: later runs (augmentation stages) reuse it, as they do a
    connection the caller made with ``ray.init`` itself; asking for another address reconnects.
    Worker output is not forwarded, so the progress display stays clean.
    """
    want = {"address": address, "num_cpus": None if address else num_cpus}
    if ray.is_initialized():
        if _connected in ({}, want):
            return
        ray.shutdown()
    if address not in (None, "auto"):  # auto: the cluster `ray start` left on this machine
        _reachable(address)
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR,
                              "include_dashboard": False}
    try:
        if address is None:
            before = _children()
            ray.init(address="local", num_cpus=num_cpus, **kwargs)
            _reap_with_driver(_children() - before)  # the cluster's processes: it ends with us
        else:
            kwargs.pop("include_dashboard")
            ray.init(address=address, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        auth = ("" if os.environ.get("RAY_AUTH_MODE") else "; if the cluster uses token "
                "authentication, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token)")
        if address is None:
            raise UserError(f"--executor ray: cannot start a local Ray cluster ({first})") from None
        raise UserError(f"--ray-address {address!r}: cannot connect to a Ray cluster ({first})"
                        f"{auth}") from None
    _quiet_worker_errors()
    _connected.clear()
    _connected.update(want)


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse an address nothing listens on at once (Ray itself retries for minutes)."""

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray-address {address!r}: expected host:port, e.g. 10.0.0.5:6379")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UserError(f"--ray-address {address!r}: no Ray cluster answers there ({exc}); "
                        "start one with `ray start --head` or check the address") from None


def _quiet_worker_errors() -> None:
    """Stop Ray printing 'a worker died' notices on stdout; the runner records the cause."""
    try:
        # optional extra `ray`: imported only with the ray executor
        import ray._private.worker as ray_worker

        ray_worker._worker_logs_enabled = False
    except (ImportError, AttributeError):  # pragma: no cover - a Ray without the switch
        pass


def _install_hint(method: str) -> str:
    """How to install ``method``'s plugin, from the driver's knowledge of where it came from."""

    reg = registry()
    spec = reg.generator(method)
    dist = reg.dists.get(spec.plugin) or (DISTRIBUTION if spec.extra else None)
    if dist is None:
        return f"install the plugin {spec.plugin!r} that provides it"
    return f"pip install '{dist}[{spec.extra}]'" if spec.extra else f"pip install {dist}"


@ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)
class CellActor:
    """One cell's worker process: fit once, then answer batches (mirrors ``runner._worker``)."""

    def __init__(self, task: Task, method: str, variant: str, seed: int, params: dict,
                 install_hint: str, env: dict[str, Any] | None) -> None:
        own_group_with_reaper()  # what the cell starts dies with the actor, as a local worker's
        if env is not None and (env["host"], env["node"]) == (
                socket.gethostname(), ray.get_runtime_context().get_node_id()):
            # the driver's own node: its plugins found through PYTHONPATH, its settings
            sys.path[:0] = [p for p in env["sys_path"] if p not in sys.path]
            os.environ.update(env["environ"])
        self.task, self.method, self.variant, self.seed = task, method, variant, seed
        self.params, self.install_hint = params, install_hint
        self.gen: Any = None
        self.roots: tuple[str, ...] = ()

    def fit(self) -> tuple:
        """``messages.Fitted`` or ``messages.FitError``."""

        registry.cache_clear()
        host = socket.gethostname()
        try:
            reg = registry()
        except BaseException as exc:  # noqa: BLE001 - e.g. two plugins claiming one method
            return messages.fit_error(f"plugins failed to load on Ray worker {host}: {describe_exception(exc)}")
        spec = reg.generators.get(self.method)
        if spec is None:
            broken = "".join(f"; plugin {k!r} failed to load there: {v}" for k, v in reg.broken.items())
            return messages.fit_error(f"method {self.method!r} is not installed on Ray worker {host}: "
                                 f"{self.install_hint} there{broken}")
        ok, hint = spec.status()
        if not ok:
            return messages.fit_error(f"method {self.method!r} is unavailable on Ray worker {host}: {hint}")
        self.gen, fitted = fit_generator(self.task, self.method, self.variant, self.seed,
                                         self.params)
        self.bounds = envelope(self.task.X_train[self.task.schema.names].to_numpy(float))
        if self.gen is not None:
            self.roots = plugin_roots(self.method, self.gen)
        return fitted

    def batch(self, msg: tuple) -> tuple:
        """``messages.Results`` for one ``messages.Batch``:
        the local worker's code (``runner.answer_batch``), so both executors record alike."""
        out = answer_batch(self.gen, self.task, self.seed, msg, self.bounds, self.roots)
        try:
            pickle.dumps(out)  # what Ray will do with it: an unpicklable answer costs its batch only
        except Exception as exc:  # noqa: BLE001 - unpicklable or unbounded content
            return unsendable(msg, out, exc)
        return out


class RayHandle:
    """The driver's end of one cell's actor: one call in flight at a time."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.pending = actor.fit.remote()

    def send(self, msg: tuple) -> None:
        self.pending = self.actor.batch.remote(msg)

    def recv(self, timeout: float) -> tuple[str, Any]:
        ready, _ = ray.wait([self.pending], timeout=timeout)
        if not ready:
            return "timeout", None
        try:
            return "msg", ray.get(self.pending)
        except ray.exceptions.RayError as exc:  # actor, worker or node died; call failed
            return "died", _cause(exc)

    def kill(self) -> None:
        try:
            ray.kill(self.actor, no_restart=True)
        except (ValueError, ray.exceptions.RayError):
            pass

    def stop(self) -> None:
        self.kill()


def _cause(exc: BaseException) -> str:
    """One line on why a Ray call failed (the last line of Ray's message names the cause)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    why = lines[-1] if lines else ""
    if "No module named 'cfbench" in str(exc):
        why = "cfbench is not installed on the Ray worker: pip install cfbench-harness"
    return f"{type(exc).__name__}: {why}"[:2000]


class RayExecutor:
    """Cells as Ray actors (``num_cpus=1`` each); ``address=None`` starts a local cluster.

    ``ship_env=False`` keeps the driver's ``sys.path`` and environment from actors on its own
    node too, so they see only what is installed there (as a remote node does).
    """

    name = "ray"

    def __init__(self, address: str | None = None, ship_env: bool = True) -> None:
        self.address = address
        self.ship_env = ship_env
        self.task_ref: Any = None
        self.hints: dict[str, str] = {}

    def open(self, task: Task, cfg: RunConfig) -> None:
        connect(self.address, cfg.jobs)
        self.task_ref = ray.put(task)

    def start(self, task: Task, cell: Cell, cfg: RunConfig, threads: int = 0,
              on_phase: Callable[[str], None] | None = None,
              on_ready: Callable[[], None] | None = None) -> RayHandle:
        """One actor for ``cell`` (``threads``, ``on_phase`` and ``on_ready`` are the local
        executor's: an actor has its ``num_cpus`` and reports no phases; cells waiting for a
        shared set-up start once the preparing cell has fitted)."""
        if cell.method not in self.hints:
            self.hints[cell.method] = _install_hint(cell.method)
        env = ({"host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id(),
                "sys_path": list(sys.path),
                "environ": {k: v for k, v in os.environ.items()
                            if k.startswith("CFBENCH_") or k == "PYTHONPATH"}}
               if self.ship_env else None)
        actor = CellActor.remote(self.task_ref, cell.method, cell.variant, cell.seed, dict(cell.params),
                                 self.hints[cell.method], env)
        return RayHandle(actor)

    def close(self) -> None:
        self.task_ref = None  # the object store frees the task once no actor holds it
