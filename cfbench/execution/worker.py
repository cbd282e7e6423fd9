"""The worker side of a cell: fit the generator once, answer batches of queries, and turn
whatever a generator returns into a checked, JSON-ready record (one home for every executor).
"""

from __future__ import annotations

import importlib
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cfbench.core import phase
from cfbench.core.generator import STATUSES, QueryResult
from cfbench.core.model import not_applicable
from cfbench.core.plugins import registry
from cfbench.core.redact import redact_data
from cfbench.core.schema import FeatureSchema
from cfbench.core.strict_json import json_safe
from cfbench.execution import messages, schedule, workerproc
from cfbench.execution.failure import code_roots, describe_exception, format_traceback
from cfbench.execution.forkserver import installed
from cfbench.records.provenance import runtime_provenance
from cfbench.score.metrics import envelope, invalid_values, outside_envelope
from cfbench.tasks.spec import Task


def normalise_result(res: Any, columns: list[str], k: int,
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


def seed_everything(seed: int) -> None:
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
    roots = plugin_roots(method, gen)
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        out = answer_batch(gen, task, seed, msg, bounds, roots)
        try:  # send pickles completely before writing: a failure sends nothing
            conn.send(out)
        except (OSError, EOFError):
            raise
        except Exception as exc:  # noqa: BLE001 - unpicklable or unbounded content
            conn.send(unsendable(msg, out, exc))


def fit_generator(task: Task, method: str, variant: str, seed: int, params: dict
                  ) -> tuple[Any, messages.Fitted | messages.FitError]:
    """``(generator, ("fitted", seconds, provenance))`` or ``(None, ("fit_error", why, traceback))``.

    One home for what every executor's worker does first; whatever ``fit`` raises
    (``SystemExit`` and ``KeyboardInterrupt`` included) is reported, never raised, with the
    plugin's own line in the reason (``failure.where``) and the bounded traceback beside it.
    The method's ``preload`` modules come first, so one that fails is named in the report.
    """
    roots: tuple[str, ...] = ()
    try:
        spec = registry().generator(method)
        roots = plugin_roots(method)
        failed = import_preloads(spec.preload)
        if failed is not None:
            return None, messages.fit_error(redact_data(failed))
        context = task.fit_context(seed, params)
        view = context.model
        why = (not_applicable(spec.needs_of(variant), view.kinds, view.classifier)
               if view is not None else None)
        if why is not None:  # selection skips these; a caller that did not is told, not crashed
            return None, messages.fit_error(f"not applicable: {why}")
        seed_everything(seed)
        t0 = time.perf_counter()
        gen = spec.build(variant, params).fit(context)
        runtime = runtime_provenance(spec, registry().dists.get(spec.plugin))
        return gen, messages.fitted(time.perf_counter() - t0, runtime)
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the parent
        return None, messages.fit_error(redact_data(describe_exception(exc, roots)),
                                        redact_data(format_traceback(exc)))


def plugin_roots(method: str, gen: Any = None) -> tuple[str, ...]:
    """Where ``method``'s own code lives (``failure.code_roots``): its plugin's module, its
    factory's and, once fitted, its generator's class's; ``()`` when that cannot be told."""
    try:
        modules = registry().code_modules(method)
        if gen is not None:
            modules = (*modules, type(gen).__module__)
        return code_roots(modules)
    except Exception:  # noqa: BLE001 - a reason without the plugin's line is still a reason
        return ()


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
            return f"preload module {name!r} failed to import: {describe_exception(exc)}"
    return None


def answer_batch(gen: Any, task: Task, seed: int, msg: tuple,
                 bounds: tuple[np.ndarray, np.ndarray],
                 roots: tuple[str, ...] = ()) -> messages.Results:
    """``("results", first_query_id, outputs, seconds, traceback)`` for one ``("batch", …)``.

    Whatever the generator raises or returns is turned into checked, redacted records of the
    queries concerned; the batch's seed depends only on the cell's seed and the first query.
    What ``generate`` raises is described at its deepest frame inside ``roots`` (the plugin's
    code, see ``plugin_roots``) and its traceback comes back beside the records.
    """
    tb = ""
    _, batch_id, rows, targets, k, budget = messages.Batch._make(msg)
    columns = task.schema.names
    queries = pd.DataFrame(rows, columns=columns)
    seed_everything(seed * 1_000_003 + batch_id)
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
        out = [_error(describe_exception(exc, roots))] * len(rows)
        tb = redact_data(format_traceback(exc))
    return messages.results(batch_id, [redact_data(o) for o in out], elapsed, tb)


def unsendable(msg: tuple, out: tuple, exc: BaseException) -> messages.Results:
    """The results message to send instead of one that could not be pickled."""
    why = _error(f"result could not be sent: {describe_exception(exc)}")
    return messages.results(msg[1], [why] * len(msg[2]), out[3])


def _normalise_safely(res: Any, columns: list[str], k: int,
                      bounds: tuple[np.ndarray, np.ndarray],
                      schema: FeatureSchema | None = None) -> dict[str, Any]:
    try:
        return normalise_result(res, columns, k, bounds, schema)
    except Exception as exc:  # noqa: BLE001 - a result object hostile enough to break the checks
        return _invalid(f"result could not be checked: {describe_exception(exc)}")


def _error(reason: str) -> dict[str, Any]:
    return {"status": "error", "cfs": [], "reason": reason, "raw": None, "extra": {}}
