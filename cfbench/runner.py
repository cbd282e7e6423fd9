"""The runner: every (task, method, variant, seed) cell in its own worker process.

A worker fits the generator once, then answers batches of queries, each query within the
per-query search ``budget`` the method is given.  The parent enforces a hard timeout per batch
(a safety net far above the budget, see ``schedule.hard_limit``) by killing the worker, records
a crash as ``error``, validates every output
(wrong shape, NaN, strings, unknown columns become ``invalid_output``), appends each record to
the run store as it arrives and starts a fresh worker for the remaining queries.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from cfbench import phase, schedule, workerproc
from cfbench.errors import UserError
from cfbench.executor import Executor, LocalExecutor, WorkerHandle, get_executor
from cfbench.forkserver import PRELOAD_WAIT, context, installed, ready
from cfbench.generator import STATUSES, QueryResult, explicit_params
from cfbench.metrics import envelope, invalid_values, outside_envelope
from cfbench.plugins import registry
from cfbench.provenance import environment, module_dists, runtime_provenance
from cfbench.redact import redact_data
from cfbench.schema import FeatureSchema
from cfbench.store import RUN_INFO, SCHEMA_VERSION, RunStore, write_json_atomic
from cfbench.strict_json import json_safe
from cfbench.task import Task, TaskSpec

DEFAULT_VARIANT = "default"

#: a cell's parameters: sorted (key, value) pairs, hashable; ``()`` = the method's defaults
Params = tuple[tuple[str, Any], ...]


def params_key(params: Any) -> Params:
    """The canonical, hashable form of a parameter mapping (or of pairs, or ``None``)."""
    items = params.items() if isinstance(params, dict) else (params or ())
    return tuple(sorted((str(k), v) for k, v in items))


@dataclass(frozen=True)
class Cell:
    """One unit of work: a method variant with its parameters on a task with a seed."""

    method: str
    variant: str
    seed: int
    params: Params = ()

    @property
    def label(self) -> str:
        return method_label(self.method, self.variant, self.params)


class Choice(NamedTuple):
    """A method variant with the parameters it runs with (what ``resolve_methods`` returns)."""

    method: str
    variant: str
    params: Params = ()


def _fmt(v: Any) -> str:
    """A value as written in a label, readable back by ``suite.parse_scalar``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        from cfbench.suite import parse_scalar

        bare = v and all(c.isalnum() or c in "-_./" for c in v) and parse_scalar(v, "") == v
        return v if bare else json.dumps(v)
    return repr(v)


def method_label(method: str, variant: str, params: Any = None) -> str:
    """``method[:variant][key=value,...]``: the one name of a cell's method on tables and boards.

    The default variant is left out; parameters the cell sets are listed, sorted by key.
    """
    base = method if variant == DEFAULT_VARIANT else f"{method}:{variant}"
    items = params_key(params)
    return base + ("[" + ",".join(f"{k}={_fmt(v)}" for k, v in items) + "]" if items else "")


def canonical_params(method: str, variant: str, params: Any) -> Params:
    """A cell's parameters without those equal to the defaults its variant runs with.

    Cells get this form when they are resolved; it also reads back stored records and pairs
    (which may list defaults, written before they were left out) so that their labels and
    ``--resume`` keys agree with new cells.  Parameters of a method that is not installed, or
    that no longer validate, are kept as they are.
    """
    items = params_key(params)
    if not items:
        return ()
    spec = registry().generators.get(method)
    if spec is None:
        return items
    try:
        return params_key(explicit_params(spec, variant, dict(items)))
    except UserError:
        return items


def canonical_key(key: tuple) -> tuple:
    """A ``store.record_key`` with its parameters in ``canonical_params`` form."""
    method, variant, *rest, params = key
    return (method, variant, *rest, canonical_params(method, variant, params))


def canonical_groups(groups: Sequence[tuple[str, dict[str, Any]]]) -> list[list[Any]]:
    """``--param`` groups as run.json keeps them: a value equal to the default of every variant
    its target names is left out (and a group left empty), so it does not change a run's
    identity; the groups are otherwise kept as given."""
    reg = registry()
    out: list[list[Any]] = []
    for target, values in groups:
        name, _, variant = target.partition(":")
        spec = reg.generators.get(name)
        kept = dict(values)
        if spec is not None and (not variant or variant in spec.variants):
            try:
                per_variant = [explicit_params(spec, v, values)
                               for v in ([variant] if variant else spec.variants)]
                kept = {k: v for k, v in values.items() if any(k in e for e in per_variant)}
            except UserError:
                pass
        if kept:
            out.append([target, kept])
    return out


def record_label(rec: dict[str, Any]) -> str:
    """``method_label`` of a stored record (records without ``params`` ran with the defaults)."""
    params = canonical_params(rec["method"], rec["variant"], rec.get("params"))
    return method_label(rec["method"], rec["variant"], params)


@dataclass
class RunConfig:
    """What ``cfbench run`` was asked to do; validated by ``resolve_methods`` and ``validate``."""

    task: str
    methods: str = "all"
    seeds: tuple[int, ...] = (0,)
    n_queries: int | None = None
    k: int = 1
    timeout: float = schedule.DEFAULT_TIMEOUT
    budget: float = schedule.DEFAULT_BUDGET
    fit_timeout: float = 3600.0
    grace: float = 10.0
    jobs: int = 1
    out: Path = Path("out")
    resume: bool = False
    data_dir: str | None = None
    #: (target, values) groups from ``--param``; target is ``method`` or ``method:variant``;
    #: merged into every cell they name (see ``resolve_methods``)
    params: tuple[tuple[str, dict[str, Any]], ...] = ()
    #: {"file": name, "sha256": hex} when the run came from a suite file (kept in run.json)
    suite: dict[str, str] | None = None
    #: (scenario, fraction, seed): run on the task with training labels removed (augmentation)
    scarcity: tuple[str, float, int] | None = None
    #: where cells run: ``local`` processes or a ``ray`` cluster (see cfbench.executor)
    executor: str = "local"
    ray_address: str | None = None

    def validate(self) -> None:
        """Every setting checked by its own validator, the one its flag and suite key use."""
        from cfbench import settings

        settings.k(self.k)
        if self.n_queries is not None:
            settings.n_queries(self.n_queries)
        settings.timeout(self.timeout)
        settings.budget(self.budget)
        settings.fit_timeout(self.fit_timeout)
        settings.jobs(self.jobs)
        settings.seeds(list(self.seeds))


def resolve_methods(selection: str, explicit_ok: bool = True,
                    params: Sequence[tuple[str, dict[str, Any]]] = ()
                    ) -> tuple[list[Choice], dict[str, str]]:
    """Parse ``all`` or ``a,b:variant,c[key=value]`` into ``Choice`` s plus skipped methods and why.

    ``all`` skips unavailable methods and variants (reported back), as does a method named
    without a variant for its unavailable variants; naming an unavailable method or variant
    is an error.
    An item's ``[key=value,...]`` are that item's parameters (a method listed twice with different
    parameters runs twice); ``params`` groups (from ``--param``) are merged into every choice
    their target (``method`` or ``method:variant``) names, the variant's values winning.  Every
    choice's parameters are validated against the method's declaration before any work starts.
    """
    from cfbench.suite import split_selection

    reg = registry()
    items: list[tuple[str, str, dict[str, Any]]] = []
    skipped: dict[str, str] = {}
    entries = split_selection(selection)
    if not entries:
        raise UserError("--methods is empty; give 'all' or a comma-separated list of methods")
    for item, item_params in entries:
        if item == "all":
            for name, spec in sorted(reg.generators.items()):
                ok, hint = spec.status()
                if not ok:
                    skipped[name] = hint
                    continue
                items.extend((name, v, item_params)
                             for v in _available_variants(name, spec, spec.variants, skipped))
            continue
        name, _, variant = item.partition(":")
        spec = reg.generator(name)
        if variant and variant not in spec.variants:
            raise UserError(
                f"unknown variant {variant!r} of method {name!r}; valid choices: {', '.join(spec.variants)}"
            )
        ok, hint = spec.variant_status(variant) if variant else spec.status()
        if not ok:
            raise UserError(f"method {item!r} is unavailable: {hint}")
        items.extend((name, v, item_params) for v in
                     _available_variants(name, spec, [variant] if variant else spec.variants, skipped))
    return with_params(items, params, skipped), skipped


def with_params(items: Sequence[tuple[str, str, dict[str, Any]]],
                groups: Sequence[tuple[str, dict[str, Any]]],
                skipped: dict[str, str] | None = None) -> list[Choice]:
    """(method, variant, item params) with the ``groups`` merged in, validated, de-duplicated.

    A group whose target names no selected method is an error (a typo would otherwise be ignored).
    """
    reg = registry()
    used: set[str] = set()
    out: list[Choice] = []
    for method, variant, own in items:
        merged = dict(own)
        for target in (method, f"{method}:{variant}"):
            for t, values in groups:
                if t == target:
                    merged.update(values)
                    used.add(t)
        # validated; values equal to the variant's defaults left out (they are the same cell)
        choice = Choice(method, variant, params_key(explicit_params(reg.generator(method), variant,
                                                                    merged)))
        if choice not in out:
            out.append(choice)
    for target, _ in groups:
        if target not in used:
            name, _, variant = target.partition(":")
            spec = reg.generator(name)  # an unknown method: the standard one-line error
            if variant and variant not in spec.variants:
                raise UserError(f"--param {target}: unknown variant {variant!r} of method {name!r}; "
                                f"valid choices: {', '.join(spec.variants)}")
            why = f" (skipped: {skipped[name]})" if skipped and name in skipped else ""
            raise UserError(f"--param {target}: method {target!r} is not among the methods run{why}")
    return out


def _available_variants(name: str, spec: Any, variants: Sequence[str],
                        skipped: dict[str, str]) -> list[str]:
    """The variants whose own requirements are met; the others go to ``skipped`` as
    ``name:variant`` with the install hint."""
    out = []
    for v in variants:
        ok, hint = spec.variant_status(v)
        if ok:
            out.append(v)
        else:
            skipped[f"{name}:{v}"] = hint
    return out


# ----------------------------------------------------------------------------- worker side


def _normalise(res: Any, columns: list[str], k: int,
               bounds: tuple[np.ndarray, np.ndarray] | None = None,
               schema: FeatureSchema | None = None) -> dict[str, Any]:
    """Turn whatever a generator returned for one query into a checked, JSON-ready record.

    CFs must be real numbers (numeric strings, complex numbers and other objects are
    ``invalid_output``), finite and, given ``bounds`` (the features' sane envelope, see
    ``metrics.envelope``), inside them; identical CFs are kept once.  Given ``schema``, a value
    the feature cannot take (not one of its category codes, a fraction of an integer feature)
    is listed in ``flags``: the CF is kept and scored, and counts as a constraint violation.
    ``extra`` is made strict JSON data; anything dropped from it is said in the reason.
    """
    if not isinstance(res, QueryResult):
        return _invalid(f"generator returned {type(res).__name__}, expected QueryResult")
    raw = res.raw if isinstance(res.raw, str) else None
    notes: list[str] = []
    extra = json_safe(res.extra, notes) if isinstance(res.extra, dict) else {}
    try:
        reason = str(res.reason) if res.reason is not None else ""
    except Exception as exc:  # noqa: BLE001 - a reason whose __str__ raises
        return _invalid(f"reason cannot be turned into text: {type(exc).__name__}", raw)
    if notes:
        reason = _join(reason, "extra made JSON-safe: " + "; ".join(notes))
    if not isinstance(res.status, str) or res.status not in STATUSES:
        return _invalid(f"unknown status {res.status!r}; expected one of {', '.join(STATUSES)}", raw)
    if res.status != "ok":
        return {"status": res.status, "cfs": [], "reason": reason, "raw": raw, "extra": extra}
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
            bad = [c for c in columns if cfs[c].dtype.kind not in "biuf"]
            if bad:
                return _invalid(f"CFs are not numeric: column {bad[0]!r} has dtype "
                                f"{cfs[bad[0]].dtype}", raw)
            cfs = cfs.to_numpy()
        arr = _real_array(cfs)
    except (TypeError, ValueError, OverflowError) as exc:
        return _invalid(f"CFs are not numeric: {exc}"[:500], raw)
    if arr.ndim == 1 and arr.size == len(columns):
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != len(columns):
        return _invalid(f"CFs have shape {arr.shape}, expected (n, {len(columns)})", raw)
    if not np.isfinite(arr).all():
        return _invalid("CFs contain NaN or infinite values", raw)
    if len(arr) == 0:
        return {"status": "not_found", "cfs": [], "reason": "generator returned no rows", "raw": raw, "extra": extra}
    if bounds is not None:
        out = outside_envelope(arr, *bounds)
        if out.any():
            i = int(np.argmax(out))
            j = int(np.argmax((arr[i] < bounds[0]) | (arr[i] > bounds[1])))
            return _invalid(
                f"CF value {arr[i, j]:.6g} of {columns[j]!r} is outside the feature's sane "
                f"envelope [{bounds[0][j]:.6g}, {bounds[1][j]:.6g}] (training range widened "
                "by 10^6 ranges each side)", raw)
    _, first = np.unique(arr, axis=0, return_index=True)
    if len(first) < len(arr):
        reason = _join(reason, f"dropped {len(arr) - len(first)} duplicate CFs")
        arr = arr[np.sort(first)]
    if len(arr) > k:
        reason = _join(reason, f"returned {len(arr)} CFs, kept the first {k}")
        arr = arr[:k]
    flags = value_flags(arr, schema) if schema is not None else []
    return {"status": "ok", "cfs": arr.tolist(), "reason": reason, "raw": raw, "extra": extra,
            "flags": flags}


def value_flags(arr: np.ndarray, schema: FeatureSchema) -> list[str]:
    """One line per CF value the feature cannot take (``metrics.invalid_values``)."""
    bad = invalid_values(arr, schema)
    out = []
    for i, j in zip(*np.nonzero(bad), strict=True):
        f = schema.features[j]
        what = (f"not one of its codes ({', '.join(f'{c:g}' for c in f.categories)})"
                if f.categories else "not an integer")
        out.append(f"CF {i}: {f.name} = {arr[i, j]:.6g} is {what}")
    return out


def _join(reason: str, note: str) -> str:
    return (reason + "; " if reason else "") + note


def _real_array(cfs: Any) -> np.ndarray:
    """``cfs`` as a float array, refusing strings, complex numbers and other objects."""
    arr = np.asarray(cfs)
    if arr.dtype.kind == "O":
        for v in arr.ravel():
            if isinstance(v, (complex, np.complexfloating)) or not isinstance(
                    v, (int, float, np.integer, np.floating)):
                raise TypeError(f"value {str(v)[:40]!r} of type {type(v).__name__} is not a real number")
        return arr.astype(float)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"values of dtype {arr.dtype} are not real numbers")
    return arr.astype(float)


def _invalid(reason: str, raw: str | None = None) -> dict[str, Any]:
    return {"status": "invalid_output", "cfs": [], "reason": reason, "raw": raw, "extra": {}}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def _worker(conn: Any, task: Task, method: str, variant: str, seed: int, params: dict,
            sys_path: list[str], environ: dict[str, str], lifeline: Any = None,
            log_path: str | None = None) -> None:
    """Worker process: fit once, then answer ``("batch", …)`` messages until ``("stop",)``.

    The parent's loaded task (data, split, fitted classifier) arrives pickled with the process
    arguments, so a worker never re-reads data or retrains.  The parent's ``sys.path`` and
    environment are applied first: a fork-server child would otherwise see the server's.
    The worker leads its own process group, dies with the run and writes its output to
    ``log_path`` (see ``workerproc``).
    """
    workerproc.setup_worker(lifeline, Path(log_path) if log_path else None)
    sys.path[:] = sys_path
    os.environ.clear()
    os.environ.update(environ)
    schedule.quiet_libraries()
    schedule.apply_worker_threads()
    phase.set_sink(lambda text: conn.send(("phase", text)))
    phase.set_ready_sink(lambda: conn.send(("ready",)))
    registry.cache_clear()
    gen, fitted = fit_generator(task, method, variant, seed, params)
    conn.send(fitted)
    if gen is None:
        return
    bounds = envelope(task.X_train[task.schema.names].to_numpy(float))
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        out = answer_batch(gen, task, seed, msg, bounds)
        try:  # send pickles completely before writing: a failure sends nothing
            conn.send(out)
        except (OSError, EOFError):
            raise
        except Exception as exc:  # noqa: BLE001 - unpicklable or unbounded content
            conn.send(unsendable(msg, out, exc))


def fit_generator(task: Task, method: str, variant: str, seed: int, params: dict
                  ) -> tuple[Any, tuple]:
    """``(generator, ("fitted", seconds, provenance))`` or ``(None, ("fit_error", why))``.

    One home for what every executor's worker does first; whatever ``fit`` raises
    (``SystemExit`` and ``KeyboardInterrupt`` included) is reported, never raised.  The
    method's ``preload`` modules come first, so one that fails is named in the report.
    """
    try:
        spec = registry().generator(method)
        failed = import_preloads(spec.preload)
        if failed is not None:
            return None, ("fit_error", redact_data(failed))
        _seed_everything(seed)
        t0 = time.perf_counter()
        gen = spec.build(variant, params).fit(task.fit_context(seed, params))
        return gen, ("fitted", time.perf_counter() - t0, runtime_provenance(spec))
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the parent
        return None, ("fit_error", redact_data(_describe(exc)))


def import_preloads(modules: Sequence[str]) -> str | None:
    """Import the ``preload`` modules this process lacks (all of them where nothing was
    preloaded; one the fork server left out); ``None``, or why one failed, naming it.

    Each import is announced as a phase first, so a worker that dies or hangs in it is
    recorded with the module's name.  A module that is not installed is left to the method.
    """
    for name in modules:
        if name in sys.modules or not installed(name):
            continue
        phase.say(f"importing preload module {name!r}")
        try:
            importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: reported, not raised
            return f"preload module {name!r} failed to import: {_describe(exc)}"
    return None


def answer_batch(gen: Any, task: Task, seed: int, msg: tuple,
                 bounds: tuple[np.ndarray, np.ndarray]) -> tuple:
    """``("results", first_query_id, outputs, seconds)`` for one ``("batch", …)`` message.

    Whatever the generator raises or returns is turned into checked, redacted records of the
    queries concerned; the batch's seed depends only on the cell's seed and the first query.
    """
    _, batch_id, rows, targets, k, budget = msg
    columns = task.schema.names
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
            out = [_normalise_safely(r, columns, k, bounds, task.schema) for r in results]
    except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt too
        elapsed = time.perf_counter() - t0
        out = [_error(_describe(exc))] * len(rows)
    return ("results", batch_id, [redact_data(o) for o in out], elapsed)


def unsendable(msg: tuple, out: tuple, exc: BaseException) -> tuple:
    """The results message to send instead of one that could not be pickled."""
    return ("results", msg[1], [_error(f"result could not be sent: {_describe(exc)}")] * len(msg[2]),
            out[3])


def _normalise_safely(res: Any, columns: list[str], k: int,
                      bounds: tuple[np.ndarray, np.ndarray],
                      schema: FeatureSchema | None = None) -> dict[str, Any]:
    try:
        return _normalise(res, columns, k, bounds, schema)
    except Exception as exc:  # noqa: BLE001 - a result object hostile enough to break the checks
        return _invalid(f"result could not be checked: {_describe(exc)}")


def _error(reason: str) -> dict[str, Any]:
    return {"status": "error", "cfs": [], "reason": reason, "raw": None, "extra": {}}


def _describe(exc: BaseException) -> str:
    try:
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
        text = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ raises
        where, text = "", "<unprintable>"
    return f"{type(exc).__name__}: {text}{where}"[:2000]


# ----------------------------------------------------------------------------- parent side


class _Worker:
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
    #: a ``cfbench.progress.RunObserver`` (start, phase, record, finish of each cell)
    observer: Any = None
    #: CPU threads per worker (0: leave the environment as it is)
    threads: int = 0
    #: where cells' workers run (``cfbench.executor``): local processes or Ray actors
    executor: Executor = field(default_factory=LocalExecutor)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _live: set = field(default_factory=set, repr=False)
    _live_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
        spec = registry().generator(cell.method)
        env = environment()
        return {
            **env,
            "libraries": {**env["libraries"], **module_dists(tuple(spec.requires))},
            "plugin": spec.plugin,
            "seed": cell.seed,
            **self.task.provenance(),
        }

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
                        fit_seconds = msg[1]
                        prov = {**prov, **(msg[2] if len(msg) > 2 else {})}  # where it runs
                    else:
                        during = f" while {phases[-1]}" if phases else ""  # e.g. an import
                        reason = (
                            f"fit failed: {msg[1]}" if kind == "msg"
                            else f"fit exceeded {self.cfg.fit_timeout:g} s{during}"
                            if kind == "timeout"
                            else f"worker process died during fit{during} ({msg})"
                        )
                        status = "timeout" if kind == "timeout" else "error"
                        self._end(worker, kill=True)
                        worker = None
                        for b in batches[batch_no:]:
                            self._record_all(cell, b, status, reason, prov, float("nan"), fit_seconds)
                        return
                cols = self.task.schema.names
                rows = batch[cols].to_numpy(float).tolist()
                targets = batch["target"].astype(int).tolist()
                first_qid = int(batch["query_id"].iloc[0])
                worker.send(("batch", first_qid, rows, targets, self.cfg.k, self.cfg.budget))
                limit = schedule.hard_limit(self.cfg.timeout, self.cfg.budget, len(batch),
                                            self.cfg.grace)
                kind, msg = worker.recv(limit)
                if self._stopping.is_set():
                    return
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
    from cfbench.store import has_records, iter_records, lock_run_dir, probe_run_dir, read_run_info

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
    ``cfbench.progress.RunObserver``) hears the plan and each cell's start, phases, records
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
        from cfbench.summary import task_meta

        write_json_atomic(cfg.out / RUN_INFO, {**info, "schema_version": SCHEMA_VERSION,
                                               "config": _config_dict(cfg),
                                               "pairs": [list(Choice(*p)) for p in pairs],
                                               "task_meta": task_meta(task)})
        done = {canonical_key(k) for k in store.done_keys()} if cfg.resume else set()
        work = plan(cfg, task, pairs, done, queries)
        work = schedule.longest_first(work, cfg.budget)
        if on_plan:
            on_plan(work)
        if observer is not None:
            observer.plan(work, cfg)
        if threads is None:
            threads = schedule.threads_per_cell(cfg.jobs, len(work))
        runner = Runner(cfg, task, store, on_progress, observer, threads, executor)
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
