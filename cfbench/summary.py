"""Records -> metrics: score every CF with the shared ``Scorer`` and aggregate per direction.

Two scopes are reported for every method and direction:

* ``all``: every query counts and a failure counts as a failure.  Share metrics (validity,
  LOF inliers, yNN, constraint-respecting CFs) are divided by the ``k`` slots of every query, so
  a query without CFs contributes ``k`` zeros; coverage and status counts live here.
* ``found``: only the CFs that were returned.  Distances, sparsity and diversity exist only for
  CFs that exist, so they are reported in this scope alone.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from cfbench.generator import STATUSES
from cfbench.metrics import Scorer, coverage, runtime
from cfbench.runner import record_label
from cfbench.task import Task

SHARE_METRICS = ("valid", "lof_inlier", "ynn")
FOUND_METRICS = ("valid", "l1_mad", "l2_minmax", "cat_mismatch", "n_changed", "share_unchanged",
                 "lof_inlier", "ynn", "changes_immutable", "against_direction", "out_of_bounds",
                 "violates_constraints")


def score_records(task: Task, records: list[dict[str, Any]], scorer: Scorer | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-CF scores, per-query table) for the records of one task."""
    scorer = scorer or Scorer(task.schema).fit(task.X_train, task.y_train)
    names = task.schema.names
    qtab = pd.DataFrame(
        [{k: r[k] for k in ("method", "variant", "seed", "query_id", "source", "target",
                            "direction", "k", "status", "n_cfs", "seconds")} for r in records]
    )
    if qtab.empty:
        return pd.DataFrame(), qtab
    qtab["method_label"] = [record_label(r) for r in records]
    qtab["qidx"] = np.arange(len(qtab))
    X_test = task.X_test[names]
    q_rows, c_rows = [], []
    for i, r in enumerate(records):
        for c in _distinct_cfs(r.get("cfs") or [], len(names), int(r["k"])):
            q_rows.append(i)
            c_rows.append(c)
    qi = np.asarray(q_rows, dtype=int)
    qtab["n_cfs"] = np.bincount(qi, minlength=len(qtab))  # the CFs scored, as coverage counts them
    C = np.asarray(c_rows, float).reshape(len(c_rows), len(names))
    X = X_test.loc[qtab["query_id"].to_numpy()[qi]].to_numpy(float)
    target = qtab["target"].to_numpy()[qi]
    pred = (task.predict(pd.DataFrame(scorer.clip(C), columns=names)) if len(C)
            else np.zeros(0, int))
    cf = scorer.score(X, C, target, pred)
    cf.insert(0, "qidx", qi)
    div = scorer.diversity(C, qi)
    qtab = qtab.merge(div, on="qidx", how="left")
    return cf, qtab


def _distinct_cfs(cfs: list, d: int, k: int) -> list[list[float]]:
    """The record's distinct, finite CFs of ``d`` values, at most ``k`` (the slots of the query).

    The runner already guarantees this for the records it writes; repeating the check here keeps
    a hand-edited or older records file from inflating the all-scope shares (one CF repeated k
    times counts once) or from crashing the scoring.
    """
    out: list[list[float]] = []
    seen: set[tuple] = set()
    for c in cfs:
        try:
            row = [float(v) for v in c]
        except (TypeError, ValueError, OverflowError):
            continue
        key = tuple(row)
        if len(row) != d or key in seen or not all(np.isfinite(row)):
            continue
        seen.add(key)
        out.append(row)
    return out[:k]


def _agg(cf: pd.DataFrame, q: pd.DataFrame, names: list[str], actionable: list[str]) -> dict[str, Any]:
    n_q = len(q)
    slots = int(q["k"].sum())
    status = Counter(q["status"])
    out: dict[str, Any] = {
        "n_queries": n_q,
        "n_cfs": int(len(cf)),
        "status_counts": {s: int(status.get(s, 0)) for s in STATUSES},
    }
    all_scope: dict[str, float] = {"coverage": coverage(q["n_cfs"].to_numpy())}
    for m in SHARE_METRICS:
        all_scope[m] = float(cf[m].sum() / slots) if slots else float("nan")
    all_scope["respects_constraints"] = (
        float((~cf["violates_constraints"]).sum() / slots) if slots else float("nan")
    )
    found: dict[str, float] = {}
    for m in FOUND_METRICS:
        found[m] = float(cf[m].mean()) if len(cf) else float("nan")
    total_changes = cf["n_changed"].sum() if len(cf) else 0
    found["actionable_share"] = (
        float(cf["n_changed_actionable"].sum() / total_changes) if total_changes else float("nan")
    )
    for m in ("diversity", "count_diversity"):
        vals = q[m].dropna() if m in q else pd.Series(dtype=float)
        found[m] = float(vals.mean()) if len(vals) else float("nan")
    rt = runtime(q["seconds"].to_numpy())
    found["seconds_median"], found["seconds_p95"] = rt["median"], rt["p95"]
    out["all"] = all_scope
    out["found"] = found
    out["feature_change"] = {
        n: (float(cf[f"changed::{n}"].mean()) if len(cf) else float("nan")) for n in names
    }
    return out


def summarize(task: Task, records: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """summary.json: method -> direction (``0->1``, ``1->0``, ``all``) -> scopes and metrics."""
    cf, q = score_records(task, records)
    names = task.schema.names
    methods: dict[str, Any] = {}
    if len(q):
        cf = cf.merge(q[["qidx", "method_label", "direction"]], on="qidx", how="left")
        for label, qm in q.groupby("method_label", sort=True):
            cm = cf[cf["method_label"] == label]
            per_dir = {}
            for direction, qd in qm.groupby("direction", sort=True):
                per_dir[direction] = _agg(cm[cm["direction"] == direction], qd, names, task.schema.actionable)
            per_dir["all"] = _agg(cm, qm, names, task.schema.actionable)
            methods[label] = per_dir
    return {
        "task": task.name,
        "task_hash": task.spec.hash,
        "data_source": task.dataset.source,
        "classifier": {"model": task.spec.model, **task.scores},
        "methods": methods,
        **(extra or {}),
    }
