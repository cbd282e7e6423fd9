"""The runner: every (task, method, variant, seed) cell in its own worker process.

A worker fits the generator once, then answers batches of queries.  The parent enforces a hard
timeout per batch by killing the worker, records a crash as ``error``, validates every output
(wrong shape, NaN, strings, unknown columns become ``invalid_output``), appends each record to
the run store as it arrives and starts a fresh worker for the remaining queries.
"""

from __future__ import annotations

import os
import random
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cfbench.errors import UserError
from cfbench.executor import Executor, LocalExecutor, WorkerHandle, get_executor
from cfbench.forkserver import context
from cfbench.generator import STATUSES, QueryResult
from cfbench.plugins import registry
from cfbench.provenance import environment, module_dists, runtime_provenance
from cfbench.store import RUN_INFO, RunStore, write_json_atomic
from cfbench.task import Task, TaskSpec

DEFAULT_VARIANT = "default"


@dataclass(frozen=True)
class Cell:
    """One unit of work: a method variant on a task with a seed."""

    method: str
    variant: str
    seed: int

    @property
    def label(self) -> str:
        return method_label(self.method, self.variant)


def method_label(method: str, variant: str) -> str:
    return method if variant == DEFAULT_VARIANT else f"{method}:{variant}"


@dataclass
class RunConfig:
    """What ``cfbench run`` was asked to do; validated by ``resolve_methods`` and ``validate``."""

    task: str
    methods: str = "all"
    seeds: tuple[int, ...] = (0,)
    n_queries: int | None = None
    k: int = 1
    timeout: float = 60.0
    fit_timeout: float = 3600.0
    grace: float = 10.0
    jobs: int = 1
    out: Path = Path("out")
    resume: bool = False
    data_dir: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: (scenario, fraction, seed): run on the task with training labels removed (augmentation)
    scarcity: tuple[str, float, int] | None = None
    #: where cells run: ``local`` processes or a ``ray`` cluster (see cfbench.executor)
    executor: str = "local"
    ray_address: str | None = None

    def validate(self) -> None:
        if self.k < 1:
            raise UserError(f"--k must be a positive integer, got {self.k}")
        if self.n_queries is not None and self.n_queries < 1:
            raise UserError(f"--n-queries must be a positive integer, got {self.n_queries}")
        if not self.timeout > 0:
            raise UserError(f"--timeout must be a positive number of seconds, got {self.timeout}")
        if self.jobs < 1:
            raise UserError(f"--jobs must be a positive integer, got {self.jobs}")
        if not self.seeds:
            raise UserError("--seeds must name at least one integer seed")


def resolve_methods(selection: str, explicit_ok: bool = True) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Parse ``all`` or ``a,b:variant`` into (method, variant) pairs plus skipped methods and why.

    ``all`` skips unavailable methods (reported back); naming an unavailable method is an error.
    """
    reg = registry()
    pairs: list[tuple[str, str]] = []
    skipped: dict[str, str] = {}
    items = [s.strip() for s in selection.split(",") if s.strip()]
    if not items:
        raise UserError("--methods is empty; give 'all' or a comma-separated list of methods")
    for item in items:
        if item == "all":
            for name, spec in sorted(reg.generators.items()):
                ok, hint = spec.status()
                if not ok:
                    skipped[name] = hint
                    continue
                pairs.extend((name, v) for v in spec.variants)
            continue
        name, _, variant = item.partition(":")
        spec = reg.generator(name)
        if variant and variant not in spec.variants:
            raise UserError(
                f"unknown variant {variant!r} of method {name!r}; valid choices: {', '.join(spec.variants)}"
            )
        ok, hint = spec.status()
        if not ok:
            raise UserError(f"method {name!r} is unavailable: {hint}")
        pairs.extend((name, v) for v in ([variant] if variant else spec.variants))
    seen: set[tuple[str, str]] = set()
    unique = [p for p in pairs if not (p in seen or seen.add(p))]
    return unique, skipped


# ----------------------------------------------------------------------------- worker side


def _normalise(res: Any, columns: list[str], k: int) -> dict[str, Any]:
    """Turn whatever a generator returned for one query into a checked, JSON-ready record."""
    if not isinstance(res, QueryResult):
        return _invalid(f"generator returned {type(res).__name__}, expected QueryResult")
    raw = res.raw if isinstance(res.raw, str) else None
    extra = res.extra if isinstance(res.extra, dict) else {}
    if res.status not in STATUSES:
        return _invalid(f"unknown status {res.status!r}; expected one of {', '.join(STATUSES)}", raw)
    if res.status != "ok":
        return {"status": res.status, "cfs": [], "reason": str(res.reason), "raw": raw, "extra": extra}
    cfs = res.cfs
    if cfs is None:
        return _invalid("status ok but no CFs returned", raw)
    try:
        if isinstance(cfs, pd.Series):
            cfs = cfs.to_frame().T
        if isinstance(cfs, pd.DataFrame):
            unknown = [c for c in cfs.columns if c not in columns]
            if unknown:
                return _invalid(f"unknown column {unknown[0]!r} in CFs", raw)
            missing = [c for c in columns if c not in cfs.columns]
            if missing:
                return _invalid(f"CFs miss feature {missing[0]!r}", raw)
            cfs = cfs[columns]
        arr = np.asarray(cfs, dtype=float)
    except (TypeError, ValueError) as exc:
        return _invalid(f"CFs are not numeric: {exc}", raw)
    if arr.ndim == 1 and arr.size == len(columns):
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != len(columns):
        return _invalid(f"CFs have shape {arr.shape}, expected (n, {len(columns)})", raw)
    if not np.isfinite(arr).all():
        return _invalid("CFs contain NaN or infinite values", raw)
    if len(arr) == 0:
        return {"status": "not_found", "cfs": [], "reason": "generator returned no rows", "raw": raw, "extra": extra}
    reason = str(res.reason)
    if len(arr) > k:
        reason = (reason + "; " if reason else "") + f"returned {len(arr)} CFs, kept the first {k}"
        arr = arr[:k]
    return {"status": "ok", "cfs": arr.tolist(), "reason": reason, "raw": raw, "extra": extra}


def _invalid(reason: str, raw: str | None = None) -> dict[str, Any]:
    return {"status": "invalid_output", "cfs": [], "reason": reason, "raw": raw, "extra": {}}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def _worker(conn: Any, task: Task, method: str, variant: str, seed: int, params: dict,
            sys_path: list[str], environ: dict[str, str]) -> None:
    """Worker process: fit once, then answer ``("batch", …)`` messages until ``("stop",)``.

    The parent's loaded task (data, split, fitted classifier) arrives pickled with the process
    arguments, so a worker never re-reads data or retrains.  The parent's ``sys.path`` and
    environment are applied first: a fork-server child would otherwise see the server's.
    """
    sys.path[:] = sys_path
    os.environ.clear()
    os.environ.update(environ)
    registry.cache_clear()
    try:
        spec = registry().generator(method)
        _seed_everything(seed)
        t0 = time.perf_counter()
        gen = spec.factory(variant, **params).fit(task.fit_context(seed, params))
        conn.send(("fitted", time.perf_counter() - t0, runtime_provenance(spec)))
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the parent
        conn.send(("fit_error", _describe(exc)))
        return
    columns = task.schema.names
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        _, batch_id, rows, targets, k, budget = msg
        queries = pd.DataFrame(rows, columns=columns)
        _seed_everything(seed * 1_000_003 + batch_id)
        t0 = time.perf_counter()
        try:
            results = gen.generate(queries, np.asarray(targets, dtype=int), k, budget)
            elapsed = time.perf_counter() - t0
            results = list(results) if results is not None else []
            if len(results) != len(rows):
                out = [_invalid(f"generator returned {len(results)} results for {len(rows)} queries")] * len(rows)
            else:
                out = [_normalise(r, columns, k) for r in results]
        except Exception as exc:
            elapsed = time.perf_counter() - t0
            out = [{"status": "error", "cfs": [], "reason": _describe(exc), "raw": None, "extra": {}}] * len(rows)
        conn.send(("results", batch_id, out, elapsed))


def _describe(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"[:2000]


# ----------------------------------------------------------------------------- parent side


class _Worker:
    """A spawned worker process and the parent's end of its pipe."""

    def __init__(self, task: Task, cell: Cell, cfg: RunConfig) -> None:
        ctx = context()
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker,
            args=(child, task, cell.method, cell.variant, cell.seed, cfg.params, list(sys.path),
                  dict(os.environ)),
            daemon=True,
        )
        self.proc.start()
        child.close()

    def recv(self, timeout: float) -> tuple[str, Any]:
        """Next message, or ("timeout", None) / ("died", exit code)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout", None
            try:
                if self.conn.poll(min(left, 0.5)):
                    return "msg", self.conn.recv()
            except (EOFError, OSError):
                self.proc.join(5)
                return "died", self.proc.exitcode
            if not self.proc.is_alive():
                try:
                    if self.conn.poll(0):
                        return "msg", self.conn.recv()
                except (EOFError, OSError):
                    pass
                return "died", self.proc.exitcode

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(10)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(("stop",))
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(10)
        self.kill()


@dataclass
class Runner:
    """Runs the cells of a config against one task, writing records to the store as they arrive."""

    cfg: RunConfig
    task: Task
    store: RunStore
    on_progress: Callable[[Cell, int], None] | None = None
    executor: Executor = field(default_factory=LocalExecutor)

    def provenance(self, cell: Cell) -> dict[str, Any]:
        spec = registry().generator(cell.method)
        env = environment()
        return {
            **env,
            "libraries": {**env["libraries"], **module_dists(tuple(spec.requires))},
            "plugin": spec.plugin,
            "seed": cell.seed,
            **self.task.provenance(),
        }

    def run_cell(self, cell: Cell, queries: pd.DataFrame) -> None:
        """Answer every query of ``queries`` for ``cell``; never raises for generator faults."""
        spec = registry().generator(cell.method)
        bs = spec.capabilities.batch_size or len(queries)
        batches = [queries.iloc[i : i + bs] for i in range(0, len(queries), bs)]
        prov: dict[str, Any] = {}
        worker: WorkerHandle | None = None
        fit_seconds = float("nan")
        try:
            for batch_no, batch in enumerate(batches):
                if worker is None:
                    worker = self.executor.start(self.task, cell, self.cfg)
                    prov = prov or self.provenance(cell)  # while the worker fits
                    kind, msg = worker.recv(self.cfg.fit_timeout)
                    if kind == "msg" and msg[0] == "fitted":
                        fit_seconds = msg[1]
                        prov = {**prov, **(msg[2] if len(msg) > 2 else {})}  # where it runs
                    else:
                        reason = (
                            f"fit failed: {msg[1]}" if kind == "msg"
                            else f"fit exceeded {self.cfg.fit_timeout:g} s" if kind == "timeout"
                            else f"worker process died during fit ({msg})"
                        )
                        status = "timeout" if kind == "timeout" else "error"
                        worker.kill()
                        worker = None
                        for b in batches[batch_no:]:
                            self._record_all(cell, b, status, reason, prov, float("nan"), fit_seconds)
                        return
                cols = self.task.schema.names
                rows = batch[cols].to_numpy(float).tolist()
                targets = batch["target"].astype(int).tolist()
                first_qid = int(batch["query_id"].iloc[0])
                worker.send(("batch", first_qid, rows, targets, self.cfg.k, self.cfg.timeout))
                limit = self.cfg.timeout * len(batch) + self.cfg.grace
                kind, msg = worker.recv(limit)
                if kind == "msg":
                    _, _, outs, elapsed = msg
                    per_query = elapsed / len(batch)
                    for (_, q), out in zip(batch.iterrows(), outs, strict=True):
                        self._append(cell, q, out, prov, per_query, len(batch), fit_seconds)
                    continue
                if kind == "timeout":
                    reason = f"no answer within the hard timeout of {limit:g} s for {len(batch)} queries"
                    self._record_all(cell, batch, "timeout", reason, prov, limit / len(batch), fit_seconds)
                else:
                    reason = f"worker process died ({msg})"
                    self._record_all(cell, batch, "error", reason, prov, float("nan"), fit_seconds)
                worker.kill()
                worker = None
        finally:
            if worker is not None:
                worker.stop()

    def _record_all(self, cell: Cell, batch: pd.DataFrame, status: str, reason: str, prov: dict,
                    seconds: float, fit_seconds: float) -> None:
        for _, q in batch.iterrows():
            out = {"status": status, "cfs": [], "reason": reason, "raw": None, "extra": {}}
            self._append(cell, q, out, prov, seconds, len(batch), fit_seconds)

    def _append(self, cell: Cell, q: pd.Series, out: dict, prov: dict, seconds: float,
                batch_size: int, fit_seconds: float) -> None:
        src, tgt = int(q["source"]), int(q["target"])
        rec = {
            "task": self.task.name,
            "method": cell.method,
            "variant": cell.variant,
            "seed": cell.seed,
            "query_id": int(q["query_id"]),
            "source": src,
            "target": tgt,
            "direction": f"{src}->{tgt}",
            "k": self.cfg.k,
            "status": out["status"],
            "reason": out["reason"],
            "n_cfs": len(out["cfs"]),
            "cfs": out["cfs"],
            "raw": out["raw"],
            "extra": out["extra"],
            "seconds": seconds,
            "batch_size": batch_size,
            "fit_seconds": fit_seconds,
            "provenance": prov,
        }
        self.store.append(rec)
        if self.on_progress:
            self.on_progress(cell, 1)


def plan(cfg: RunConfig, task: Task, pairs: Sequence[tuple[str, str]], done: set[tuple],
         queries: pd.DataFrame | None = None) -> list[tuple[Cell, pd.DataFrame]]:
    """Cells with the queries each still has to answer (``done`` keys are skipped)."""
    queries = task.queries(cfg.n_queries) if queries is None else queries
    work = []
    for seed in cfg.seeds:
        for method, variant in pairs:
            cell = Cell(method, variant, seed)
            keep = [(method, variant, seed, int(qid)) not in done for qid in queries["query_id"]]
            todo = queries[keep]
            if len(todo):
                work.append((cell, todo))
    return work


def check_resume(cfg: RunConfig, spec: TaskSpec) -> dict[str, Any]:
    """The run's identity; resuming under a different identity would mix incomparable rows."""
    info = {"task": spec.name, "task_hash": spec.hash, "k": cfg.k, "n_queries": cfg.n_queries,
            "data_dir": cfg.data_dir, "scarcity": list(cfg.scarcity) if cfg.scarcity else None}
    path = cfg.out / RUN_INFO
    has_records = (cfg.out / "records.jsonl").exists()
    if has_records and not cfg.resume:
        raise UserError(
            f"--out {cfg.out} already holds a run; pass --resume to continue it or choose another --out"
        )
    if cfg.resume and path.exists():
        import json

        old = json.loads(path.read_text())
        for key in info:
            if old.get(key) != info[key]:
                raise UserError(
                    f"cannot resume {cfg.out}: {key} was {old.get(key)!r}, now {info[key]!r}; "
                    "use the same settings or another --out"
                )
    return info


def execute(cfg: RunConfig, task: Task, pairs: Sequence[tuple[str, str]],
            on_plan: Callable[[list[tuple[Cell, pd.DataFrame]]], None] | None = None,
            on_progress: Callable[[Cell, int], None] | None = None,
            queries: pd.DataFrame | None = None) -> RunStore:
    """Run all remaining cells (``cfg.jobs`` at a time) and return the closed store.

    ``queries`` (columns ``query_id``, ``source``, ``target`` and the features) replaces the
    task's test-set queries, e.g. with training rows for augmentation.
    """
    info = check_resume(cfg, task.spec)
    executor = get_executor(cfg.executor, address=cfg.ray_address)
    executor.open(task, cfg)  # first: a cluster out of reach leaves no run folder behind
    store = RunStore(cfg.out)
    try:
        write_json_atomic(cfg.out / RUN_INFO, {**info, "config": _config_dict(cfg)})
        work = plan(cfg, task, pairs, store.done_keys() if cfg.resume else set(), queries)
        if on_plan:
            on_plan(work)
        runner = Runner(cfg, task, store, on_progress, executor)
        if cfg.jobs == 1:
            for cell, todo in work:
                runner.run_cell(cell, todo)
        else:
            with ThreadPoolExecutor(max_workers=cfg.jobs) as pool:
                for f in [pool.submit(runner.run_cell, c, q) for c, q in work]:
                    f.result()
    finally:
        executor.close()
        store.close()
    return store


def _config_dict(cfg: RunConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["out"] = str(cfg.out)
    d["seeds"] = list(cfg.seeds)
    return d
