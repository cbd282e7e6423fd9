"""The runner: every (task, method, variant, seed) cell in its own worker process.

A worker fits the generator once, then answers batches of queries, each query within the
per-query search ``budget`` the method is given.  The parent enforces a hard timeout per batch
(a safety net far above the budget, see ``schedule.hard_limit``) by killing the worker, records
a crash as ``error``, validates every output
(wrong shape, NaN, strings, unknown columns become ``invalid_output``), appends each record to
the run store as it arrives and starts a fresh worker for the remaining queries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cfbench.core.errors import UserError
from cfbench.core.plugins import registry
from cfbench.execution import messages, schedule, workerproc
from cfbench.execution.config import Cell, RunConfig
from cfbench.execution.executor import Executor, LocalExecutor, WorkerHandle, get_executor
from cfbench.execution.timings import Timings
from cfbench.execution.timings import key as timing_key
from cfbench.records.labels import Choice, canonical_groups, canonical_key
from cfbench.records.provenance import environment, module_dists, plugin_distribution, with_runtime
from cfbench.records.store import (
    RUN_INFO,
    SCHEMA_VERSION,
    RunStore,
    has_records,
    iter_records,
    lock_run_dir,
    probe_run_dir,
    read_run_info,
    write_json_atomic,
)
from cfbench.score.summary import task_meta
from cfbench.tasks.spec import Task, TaskSpec

# ----------------------------------------------------------------------------- worker side


# ----------------------------------------------------------------------------- parent side

#: at most this many distinct tracebacks are saved in one cell's log by one run
TRACEBACKS_PER_CELL = 5


@dataclass
class Runner:
    """Runs the cells of a config against one task, writing records to the store as they arrive."""

    cfg: RunConfig
    task: Task
    store: RunStore
    on_progress: Callable[[Cell, int], None] | None = None
    #: a ``cfbench.cli.progress.RunObserver`` (start, phase, record, finish of each cell)
    observer: Any = None
    #: CPU threads per worker (0: leave the environment as it is)
    threads: int = 0
    #: where cells' workers run (``cfbench.execution.executor``): local processes or Ray actors
    executor: Executor = field(default_factory=LocalExecutor)
    #: what each complete cell took, kept for the next plan (``cfbench.execution.timings``)
    timings: Timings | None = None
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _live: set = field(default_factory=set, repr=False)
    _live_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _tracebacks: dict[tuple[str, int], set[str]] = field(default_factory=dict, repr=False)

    def abort(self) -> None:
        """Stop all cells now (interrupt, SIGTERM): kill every live worker, record nothing more."""
        self._stopping.set()
        with self._live_lock:
            live = list(self._live)
        for w in live:
            try:
                w.kill()
            except OSError:  # one worker's clean-up failing must not leave the others running
                continue

    def _start(self, cell: Cell, on_ready: Callable[[], None] | None = None,
               phases: list[str] | None = None) -> WorkerHandle:
        """A worker for ``cell``; its last phase is kept in ``phases`` (for a failure's reason)."""
        obs = self.observer

        def on_phase(text: str) -> None:
            if phases is not None:
                phases[:] = [text]
            if obs is not None:
                obs.phase(cell, text)

        w = self.executor.start(self.task, cell, self.cfg, threads=self.threads, on_phase=on_phase,
                                on_ready=on_ready)
        with self._live_lock:
            self._live.add(w)
        return w

    def _end(self, w: WorkerHandle, kill: bool) -> None:
        w.kill() if kill else w.stop()
        with self._live_lock:
            self._live.discard(w)

    def provenance(self, cell: Cell) -> dict[str, Any]:
        """What every record of ``cell`` carries: versions, host, seed, the task's identity and
        the release of the method's plugin (``records.provenance.plugin_distribution``)."""
        reg = registry()
        spec = reg.generator(cell.method)
        env = environment()
        out = {
            **env,
            "libraries": {**env["libraries"], **module_dists(tuple(spec.requires))},
            "plugin": spec.plugin,
            "seed": cell.seed,
            **self.task.provenance(),
        }
        dist = reg.dists.get(spec.plugin)
        if dist is not None:  # the commit of the checkout the plugin was imported from
            source = getattr(reg.pm.get_plugin(spec.plugin), "__file__", None)
            out["plugin_distribution"] = dict(plugin_distribution(dist, source))
        return out

    def log_path(self, cell: Cell) -> Path:
        """The cell's log, ``OUT/logs/<label>-seed<seed>.log``: its worker's output (local
        executor) and the tracebacks of what its generator raised."""
        return Path(self.cfg.out) / "logs" / workerproc.log_name(cell.label, cell.seed)

    def _save_traceback(self, cell: Cell, what: str, text: str) -> None:
        """Append ``text``, the traceback of what ``cell``'s generator raised in ``what``, to
        the cell's log; each distinct one once, at most :data:`TRACEBACKS_PER_CELL` per cell."""
        if not isinstance(text, str) or not text:
            return
        seen = self._tracebacks.setdefault((cell.label, cell.seed), set())
        if text in seen or len(seen) >= TRACEBACKS_PER_CELL:
            return
        seen.add(text)
        workerproc.append_log(self.log_path(cell),
                              f"--- cfbench: {cell.label} seed {cell.seed}: {what} raised ---\n"
                              f"{text.rstrip()}\n")

    def run_cell(self, cell: Cell, queries: pd.DataFrame,
                 on_fitted: Callable[[], None] | None = None) -> None:
        """Answer every query of ``queries`` for ``cell``; never raises for generator faults.
        ``on_fitted`` is called once: when the worker reports its shared set-up ready
        (``phase.ready``) or has fitted (or failed to), else when the cell ends."""
        if self._stopping.is_set():  # aborted before this cell began: it is not started at all
            if on_fitted is not None:
                on_fitted()
            return
        obs = self.observer
        if obs is not None:
            obs.start(cell, len(queries))
        called = False

        def fitted() -> None:
            nonlocal called
            if on_fitted is not None and not called:
                called = True
                on_fitted()

        try:
            self._run_cell(cell, queries, fitted)
        finally:
            fitted()
            if obs is not None:
                obs.finish(cell)

    def _run_cell(self, cell: Cell, queries: pd.DataFrame,
                  on_fitted: Callable[[], None] | None = None) -> None:
        spec = registry().generator(cell.method)
        bs = spec.capabilities.batch_size or len(queries)
        batches = [queries.iloc[i : i + bs] for i in range(0, len(queries), bs)]
        prov: dict[str, Any] = {}
        worker: WorkerHandle | None = None
        fit_seconds = float("nan")
        answered = 0.0  # the workers' own seconds for the batches they answered
        complete = True  # every batch answered by the first worker, fitted once
        try:
            for batch_no, batch in enumerate(batches):
                if self._stopping.is_set():
                    return
                if worker is None:
                    phases: list[str] = []
                    worker = self._start(cell, on_fitted, phases)
                    prov = prov or self.provenance(cell)  # while the worker fits
                    kind, msg = worker.recv(self.cfg.fit_timeout)
                    if on_fitted is not None:
                        on_fitted()  # cells waiting for this one's set-up may start
                    if self._stopping.is_set():
                        return
                    if kind == "msg" and msg[0] == "fitted":
                        done = messages.Fitted._make((*msg, {})[:3])  # provenance may be absent
                        fit_seconds = done.seconds
                        prov = with_runtime(prov, done.provenance)  # where it runs
                    else:
                        during = f" while {phases[-1]}" if phases else ""  # e.g. an import
                        if kind == "msg":
                            failed = messages.read(messages.FitError, msg)
                            self._save_traceback(cell, "fit", failed.traceback)
                        reason = (
                            f"fit failed: {msg[1]}" if kind == "msg"
                            else f"fit exceeded {self.cfg.fit_timeout:g} s{during}"
                            if kind == "timeout"
                            else f"worker process died during fit{during} ({msg})"
                        )
                        status = "timeout" if kind == "timeout" else "error"
                        complete = False
                        self._end(worker, kill=True)
                        worker = None
                        for b in batches[batch_no:]:
                            self._record_all(cell, b, status, reason, prov, float("nan"), fit_seconds)
                        return
                cols = self.task.schema.names
                rows = batch[cols].to_numpy(float).tolist()
                targets = batch["target"].astype(int).tolist()
                first_qid = int(batch["query_id"].iloc[0])
                worker.send(messages.batch(first_qid, rows, targets, self.cfg.k, self.cfg.budget))
                limit = schedule.hard_limit(self.cfg.timeout, self.cfg.budget, len(batch),
                                            self.cfg.grace)
                kind, msg = worker.recv(limit)
                if self._stopping.is_set():
                    return
                if kind == "msg":
                    answer = messages.read(messages.Results, msg)
                    self._save_traceback(cell, f"generate (queries from id {first_qid})",
                                         answer.traceback)
                    per_query = answer.seconds / len(batch)
                    answered += answer.seconds
                    for (_, q), out in zip(batch.iterrows(), answer.outputs, strict=True):
                        self._append(cell, q, out, prov, per_query, len(batch), fit_seconds)
                    continue
                complete = False
                if kind == "timeout":
                    reason = f"no answer within the hard timeout of {limit:g} s for {len(batch)} queries"
                    self._record_all(cell, batch, "timeout", reason, prov, limit / len(batch), fit_seconds)
                else:
                    reason = f"worker process died ({msg})"
                    self._record_all(cell, batch, "error", reason, prov, float("nan"), fit_seconds)
                self._end(worker, kill=True)
                worker = None
        except BaseException:
            if worker is not None:  # interrupted: no waiting for a worker that may hang
                self._end(worker, kill=True)
                worker = None
            raise
        finally:
            if worker is not None:
                self._end(worker, kill=self._stopping.is_set())
        if complete and batches and self.timings is not None and not self._stopping.is_set():
            # a fit as long as half the method's declared one-time set-up (a fine-tune) held it:
            # not what the next run's fit will take
            first_use = schedule.first_use_cost(cell.method, cell.variant)
            fit = fit_seconds if not first_use or fit_seconds < first_use / 2 else None
            self.timings.put(timing_key(self.task.spec.name, cell.method, cell.variant, self.threads,
                                        self.cfg.k, self.cfg.budget),
                             answered / len(queries), fit)

    def _record_all(self, cell: Cell, batch: pd.DataFrame, status: str, reason: str, prov: dict,
                    seconds: float, fit_seconds: float) -> None:
        for _, q in batch.iterrows():
            out = {"status": status, "cfs": [], "reason": reason, "raw": None, "extra": {}}
            self._append(cell, q, out, prov, seconds, len(batch), fit_seconds)

    def _append(self, cell: Cell, q: pd.Series, out: dict, prov: dict, seconds: float,
                batch_size: int, fit_seconds: float) -> None:
        src, tgt = int(q["source"]), int(q["target"])
        rec = {
            "schema_version": SCHEMA_VERSION,
            "task": self.task.name,
            "method": cell.method,
            "variant": cell.variant,
            "params": dict(cell.params),
            "seed": cell.seed,
            "query_id": int(q["query_id"]),
            "source": src,
            "target": tgt,
            "direction": f"{src}->{tgt}",
            "k": self.cfg.k,
            "budget": self.cfg.budget,
            "timeout": self.cfg.timeout,
            "status": out["status"],
            "reason": out["reason"],
            "n_cfs": len(out["cfs"]),
            # the query's own values, so a report can show query -> CF without the task's data
            "query": [None if v != v else float(v) for v in q[self.task.schema.names]],
            "cfs": out["cfs"],
            # values a feature cannot take (category codes, integers): flagged, still scored
            "flags": out.get("flags", []),
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
        if self.observer is not None:
            self.observer.record(cell, rec)


def plan(cfg: RunConfig, task: Task, pairs: Sequence[Choice], done: set[tuple],
         queries: pd.DataFrame | None = None) -> list[tuple[Cell, pd.DataFrame]]:
    """Cells with the queries each still has to answer (``done`` keys are skipped)."""
    queries = task.queries(cfg.n_queries) if queries is None else queries
    work = []
    for seed in cfg.seeds:
        for method, variant, params in (Choice(*p) for p in pairs):
            cell = Cell(method, variant, seed, params)
            keep = [(method, variant, seed, int(qid), params) not in done
                    for qid in queries["query_id"]]
            todo = queries[keep]
            if len(todo):
                work.append((cell, todo))
    return work


def check_resume(cfg: RunConfig, spec: TaskSpec, lock: bool = True) -> dict[str, Any]:
    """The run's identity; resuming under a different identity would mix incomparable rows.

    Also takes the run folder's exclusive lock (held until this process exits), so a second
    cfbench process on the same ``--out`` is refused before it does any work.  Resuming needs
    ``run.json``: without it the k, query count and data of the existing records cannot be
    checked, so a missing or garbled one is refused rather than guessed from the records.  The
    records' own ``k`` and task hash are checked as well (an edited run.json cannot hide them).
    With ``lock=False`` (the CLI's checks before any work) the folder is only probed: nothing
    is created, so a run refused later leaves no folder behind.
    """

    info = {"task": spec.name, "task_hash": spec.hash, "k": cfg.k, "n_queries": cfg.n_queries,
            "data_dir": cfg.data_dir, "scarcity": list(cfg.scarcity) if cfg.scarcity else None,
            "params": canonical_groups(cfg.params)}
    lock_run_dir(cfg.out) if lock else probe_run_dir(cfg.out)
    if not has_records(cfg.out):
        return info  # an empty folder, or one a refused run left without records: start afresh
    if not cfg.resume:
        raise UserError(
            f"--out {cfg.out} already holds a run; pass --resume to continue it or choose another --out"
        )
    old = read_run_info(cfg.out)
    old.setdefault("params", [])  # written before parameters were part of a run's identity
    old["params"] = canonical_groups(old["params"])  # written before defaults were left out
    for key in info:
        if old.get(key) != info[key]:
            raise UserError(
                f"cannot resume {cfg.out}: {key} was {old.get(key)!r}, now {info[key]!r}; "
                "use the same settings or another --out"
            )
    for rec in iter_records(cfg.out / "records.jsonl"):
        seen = {"k": rec.get("k"), "task_hash": (rec.get("provenance") or {}).get("task_hash")}
        for key, value in seen.items():
            if value is not None and value != info[key]:
                raise UserError(
                    f"cannot resume {cfg.out}: its records have {key} {value!r} but run.json and "
                    f"this run say {info[key]!r}; use another --out"
                )
    return info


def execute(cfg: RunConfig, task: Task, pairs: Sequence[Choice],
            on_plan: Callable[[list[tuple[Cell, pd.DataFrame]]], None] | None = None,
            on_progress: Callable[[Cell, int], None] | None = None,
            queries: pd.DataFrame | None = None, observer: Any = None,
            threads: int | None = None,
            on_runner: Callable[[Runner], None] | None = None) -> RunStore:
    """Run all remaining cells (``cfg.jobs`` at a time, longest expected first, the cores
    divided among them) and return the closed store.

    ``queries`` (columns ``query_id``, ``source``, ``target`` and the features) replaces the
    task's test-set queries, e.g. with training rows for augmentation.  ``observer`` (a
    ``cfbench.cli.progress.RunObserver``) hears the plan and each cell's start, phases, records
    and end.  ``threads`` fixes the CPU threads per cell (when several ``execute`` run side by
    side, each with a share of the cores); ``on_runner`` receives the runner before any cell
    starts, so another thread can ``abort()`` it.
    """
    executor = get_executor(cfg.executor, address=cfg.ray_address)
    executor.open(task, cfg)  # first: a cluster out of reach leaves no run folder behind
    try:
        info = check_resume(cfg, task.spec)
    except BaseException:
        executor.close()
        raise
    store = RunStore(cfg.out)
    try:

        write_json_atomic(cfg.out / RUN_INFO, {**info, "schema_version": SCHEMA_VERSION,
                                               "config": _config_dict(cfg),
                                               "pairs": [list(Choice(*p)) for p in pairs],
                                               "task_meta": task_meta(task)})
        done = {canonical_key(k) for k in store.done_keys()} if cfg.resume else set()
        work = plan(cfg, task, pairs, done, queries)
        if threads is None:
            threads = schedule.threads_per_cell(cfg.jobs, len(work))
        timings = Timings.in_cache()
        costs = schedule.Costs(cfg.budget, task.spec.name, threads, cfg.k, timings)
        work = schedule.longest_first(work, cfg.budget, costs)
        if on_plan:
            on_plan(work)
        if observer is not None:
            observer.plan(work, cfg, costs)
        runner = Runner(cfg, task, store, on_progress, observer, threads, executor, timings)
        if on_runner is not None:
            on_runner(runner)
        # cells sharing a first-use set-up (a model conversion) wait until the first one has
        # done it, while other cells use the slot (schedule.SetupGate)
        gate = schedule.SetupGate(work, lambda cell: schedule.setup_key(cell.method))

        def drain() -> None:
            while (item := gate.next()) is not None:
                cell, todo, key = item
                runner.run_cell(cell, todo, on_fitted=lambda key=key: gate.fitted(key))

        pool = ThreadPoolExecutor(max_workers=cfg.jobs) if cfg.jobs > 1 else None
        try:
            if pool is None:
                drain()
            else:
                for f in [pool.submit(drain) for _ in range(min(cfg.jobs, len(work)))]:
                    f.result()
        except BaseException:  # Ctrl-C, SIGTERM: no worker (or what it spawned) lives on
            gate.close()
            runner.abort()
            raise
        finally:
            gate.close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        executor.close()
        store.close()
    return store


def _config_dict(cfg: RunConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["out"] = str(cfg.out)
    d["seeds"] = list(cfg.seeds)
    return d
