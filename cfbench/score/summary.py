"""Records -> per-CF scores -> ``summary.json``, aggregated per method, direction and scope.

Scoring (``score_records``) needs the task (training references and the classifier); it runs
once, when the run finishes, and its rows are kept in ``scores.parquet``.  Everything after it
(``summarize_frames``) reads only the records and the scores, so a summary, board or report can
be rebuilt from the run folder without the task's data.  The scopes (``all``, ``valid``,
``found``) and each metric's aggregation are defined in ``cfbench.score.registry``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cfbench.core.errors import UserError
from cfbench.core.generator import STATUSES
from cfbench.core.strict_json import read_json
from cfbench.records.labels import record_label
from cfbench.records.store import (
    SCHEMA_VERSION,
    SCORE_KEYS,
    SCORES,
    load_records,
    read_run_info,
    read_scores,
    write_json_atomic,
)
from cfbench.score import registry as R
from cfbench.score.metrics import coverage, decide, runtime
from cfbench.score.scorer import Scorer
from cfbench.tasks.spec import Task, resolve_spec

QUERY_FIELDS = ("method", "variant", "seed", "query_id", "source", "target", "direction", "k",
                "status", "n_cfs", "seconds")


def record_id(rec: dict[str, Any]) -> str:
    """A record's key as one string: method, variant, parameters, seed, query id."""
    return json.dumps([rec["method"], rec["variant"], rec.get("params") or {}, rec["seed"],
                       rec["query_id"]], sort_keys=True)


def query_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record (query) with its key, status, time and ``qidx`` (its position)."""
    q = pd.DataFrame([{k: r[k] for k in QUERY_FIELDS} for r in records])
    if q.empty:
        return q
    q["method_label"] = [record_label(r) for r in records]
    q["qidx"] = np.arange(len(q))
    return q


def task_meta(task: Any) -> dict[str, Any]:
    """What a summary says about the task, from the loaded task (kept in ``run.json``)."""
    return {"task": task.name, "task_hash": task.spec.hash, "data_source": task.dataset.source,
            "classifier": {"model": task.spec.model, **task.scores},
            "features": list(task.schema.names)}


def fit_scorer(task: Any) -> Scorer:
    """The task's scorer: training references; yNN's pool is every row of the data set, its
    labels the classifier's decisions (``decisions``)."""
    names = task.schema.names
    pool = pd.concat([task.X_train[names], task.X_test[names]], ignore_index=True)
    labels, _ = decisions(task, pool)
    return Scorer(task.schema).fit(task.X_train, labels[:len(task.X_train)], X_pool=pool,
                                   pool_labels=labels)


def decisions(task: Any, X: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class per row, ``unscorable`` mask): the classifier's decision under the symmetric tie
    rule (``metrics.decide``: -1 on the boundary), and -1 for a row it raises on.

    A user's model may reject values (e.g. scikit-learn's ``OneHotEncoder(handle_unknown=
    "error")`` on a CF's unseen category code); the batch is then retried row by row, so only
    the rows it rejects are lost, never the scoring.
    """
    X = pd.DataFrame(np.asarray(X, float), columns=task.schema.names)
    if len(X) == 0:
        return np.zeros(0, int), np.zeros(0, bool)
    classes = _classes(task)
    try:
        return decide(_proba(task, X), classes), np.zeros(len(X), bool)
    except Exception:  # noqa: BLE001 - a user's model may raise anything; retried per row
        pass
    out, bad = np.full(len(X), -1), np.zeros(len(X), bool)
    for i in range(len(X)):
        try:
            out[i] = decide(_proba(task, X.iloc[[i]]), classes)[0]
        except Exception:  # noqa: BLE001
            bad[i] = True
    return out, bad


def _proba(task: Any, X: pd.DataFrame) -> np.ndarray:
    P = np.asarray(task.predict_proba(X), float)
    if P.ndim != 2 or len(P) != len(X) or not np.isfinite(P).all():
        raise ValueError("predict_proba returned no finite (n, classes) array")
    return P


def _classes(task: Any) -> np.ndarray:
    classes = getattr(task.model, "classes_", None)
    return np.asarray(classes if classes is not None else [0, 1])


def score_records(task: Any, records: list[dict[str, Any]], scorer: Scorer | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-CF scores, per-query table) for the records of one task (loads nothing else).

    Every CF is scored: one the classifier raises on is ``unscorable`` (and invalid), counted
    in the summary, never the end of the scoring."""
    scorer = scorer or fit_scorer(task)
    names = task.schema.names
    qtab = query_table(records)
    if qtab.empty:
        return pd.DataFrame(), qtab
    X_test = task.X_test[names]
    q_rows, c_rows, pos = [], [], []
    for i, r in enumerate(records):
        for j, c in enumerate(_distinct_cfs(r.get("cfs") or [], len(names), int(r["k"]))):
            q_rows.append(i)
            c_rows.append(c)
            pos.append(j)
    qi = np.asarray(q_rows, dtype=int)
    qtab["n_cfs"] = np.bincount(qi, minlength=len(qtab))  # the CFs scored, as coverage counts them
    C = np.asarray(c_rows, float).reshape(len(c_rows), len(names))
    X = X_test.loc[qtab["query_id"].to_numpy()[qi]].to_numpy(float)
    target = qtab["target"].to_numpy()[qi]

    def predict(rows: np.ndarray) -> np.ndarray:
        return decisions(task, scorer.clip(rows))[0]

    pred, unscorable = decisions(task, scorer.clip(C))
    cf = scorer.score(X, C, target, pred, predict=predict, unscorable=unscorable)
    cf.insert(0, "qidx", qi)
    cf.insert(1, "cf_index", np.asarray(pos, dtype=int))
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


# ----------------------------------------------------------------------------- scores.parquet


def scores_table(records: list[dict[str, Any]], cf: pd.DataFrame, q: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``scores.parquet``: one per CF, its query's key (``SCORE_KEYS``), every
    per-CF metric, ``n_changed_actionable``, ``changed::<feature>`` and the query's
    ``diversity``/``count_diversity`` (a per-query value, repeated on each of its CFs)."""
    if cf.empty:
        body = [c for c in cf.columns if c not in ("qidx", "cf_index")] or [
            m.name for m in R.per_cf_metrics()]
        return pd.DataFrame(columns=[*SCORE_KEYS, *body, "diversity", "count_diversity"])
    qi = cf["qidx"].to_numpy()
    keys = pd.DataFrame({
        "method": q["method"].to_numpy()[qi], "variant": q["variant"].to_numpy()[qi],
        "params": [json.dumps(records[i].get("params") or {}, sort_keys=True) for i in qi],
        "method_label": q["method_label"].to_numpy()[qi], "seed": q["seed"].to_numpy()[qi],
        "query_id": q["query_id"].to_numpy()[qi], "direction": q["direction"].to_numpy()[qi],
        "cf_index": cf["cf_index"].to_numpy()})
    per_query = q.set_index("qidx").reindex(qi)
    extra = pd.DataFrame({m: (per_query[m].to_numpy(float) if m in per_query else np.nan)
                          for m in ("diversity", "count_diversity")})
    body = cf.drop(columns=["qidx", "cf_index"]).reset_index(drop=True)
    return pd.concat([keys, body, extra], axis=1)


def write_scores(path: Path, records: list[dict[str, Any]], cf: pd.DataFrame, q: pd.DataFrame
                 ) -> None:
    """Write ``scores.parquet`` atomically."""
    tmp = Path(f"{path}.tmp")
    scores_table(records, cf, q).to_parquet(tmp, index=False)
    tmp.replace(path)


def frames_from_scores(records: list[dict[str, Any]], scores: pd.DataFrame, n_features: int,
                       ids: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-CF scores, per-query table) of ``records`` from ``scores.parquet`` rows, as
    :func:`score_records` gives them; ``ids`` (default: ``record_id`` of each record) matches
    records to score rows.  Raises ``UserError`` when a record's CFs are not all scored."""
    q = query_table(records)
    if q.empty:
        return pd.DataFrame(), q
    ids = ids or [record_id(r) for r in records]
    missing = [m.name for m in R.per_cf_metrics() if m.name not in scores.columns]
    if missing:
        raise UserError(f"{SCORES}: has no {missing[0]!r} column (scored by an older cfbench); "
                        "re-score the run with `cfbench leaderboard RUN --rescore`")
    if scores.empty:
        sid = pd.Series([], dtype=object)
    else:
        sid = pd.Series([json.dumps([m, v, json.loads(p), s, int(i)], sort_keys=True)
                         for m, v, p, s, i in zip(scores["method"], scores["variant"],
                                                  scores["params"], scores["seed"],
                                                  scores["query_id"], strict=True)])
    pos = pd.Series(np.arange(len(ids)), index=ids)
    qidx = sid.map(pos)
    if qidx.isna().any():
        raise UserError(f"{SCORES}: scores a query that is not in the records "
                        f"({sid[qidx.isna()].iloc[0]}); re-score the run")
    cf = scores.drop(columns=[c for c in (*SCORE_KEYS, "diversity", "count_diversity")
                              if c != "cf_index"], errors="ignore")
    cf.insert(0, "qidx", qidx.to_numpy(int))
    cf = cf.sort_values(["qidx", "cf_index"], kind="stable").reset_index(drop=True)
    n = np.bincount(cf["qidx"].to_numpy(int), minlength=len(q))
    want = np.array([len(_distinct_cfs(r.get("cfs") or [], n_features, int(r["k"])))
                     for r in records])
    if (n != want).any():
        i = int(np.flatnonzero(n != want)[0])
        raise UserError(f"{SCORES}: {n[i]} scored CFs for a record with {want[i]} "
                        f"({ids[i]}); the scores are from another version of the records")
    q["n_cfs"] = n
    if len(scores):
        div = scores.assign(qidx=qidx.to_numpy(int)).groupby("qidx")[
            ["diversity", "count_diversity"]].first().dropna(how="all").reset_index()
        q = q.merge(div, on="qidx", how="left")
    return cf, q


# ----------------------------------------------------------------------------- aggregation


def empty_scores(names: list[str]) -> pd.DataFrame:
    """The per-CF score frame of a run without any CF (every column, no rows)."""
    cols = ["qidx", "cf_index", *(m.name for m in R.per_cf_metrics()), "n_changed_actionable",
            *(f"changed::{n}" for n in names)]
    return pd.DataFrame({c: pd.Series(dtype=bool if c == "validity" else float) for c in cols})


def _aggregate(m: R.Metric, scope: str, cf: pd.DataFrame, q: pd.DataFrame, slots: int) -> float:
    """``m`` in ``scope`` from the direction's CFs ``cf`` and queries ``q``."""
    valid = cf["validity"].to_numpy(bool) if len(cf) else np.zeros(0, bool)
    rows = cf[valid] if scope == "valid" else cf
    how = m.aggregation
    if how == "coverage":
        return coverage(q["n_cfs"].to_numpy())
    if how == "valid_coverage":
        n_valid = np.bincount(cf["qidx"].to_numpy(int)[valid], minlength=0) if len(cf) else []
        hit = pd.Series(n_valid, dtype=float).reindex(q["qidx"].to_numpy()).fillna(0)
        return coverage(hit.to_numpy())
    if how in ("median", "p95"):
        return runtime(q["seconds"].to_numpy())["median" if how == "median" else "p95"]
    if how == "query_mean":
        vals = q[m.name].dropna() if m.name in q else pd.Series(dtype=float)
        return float(vals.mean()) if len(vals) else float("nan")
    if how == "pooled_actionable":
        total = rows["n_changed"].sum() if len(rows) else 0
        return float(rows["n_changed_actionable"].sum() / total) if total else float("nan")
    if scope == "all":  # share of the k slots holding a valid CF with the property
        return float(cf[m.name][valid].astype(float).sum() / slots) if slots else float("nan")
    return float(rows[m.name].astype(float).mean()) if len(rows) else float("nan")


def _agg(cf: pd.DataFrame, q: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    slots = int(q["k"].sum())
    status = Counter(q["status"])
    out: dict[str, Any] = {
        "n_queries": len(q),
        "n_cfs": int(len(cf)),
        "n_valid": int(cf["validity"].sum()) if len(cf) else 0,
        "status_counts": {s: int(status.get(s, 0)) for s in STATUSES},
    }
    for scope in R.SCOPES:
        out[scope] = {m.name: _aggregate(m, scope, cf, q, slots) for m in R.in_scope(scope)}
    out["feature_change"] = {
        n: (float(cf[f"changed::{n}"].mean()) if len(cf) else float("nan")) for n in names
    }
    return out


def summarize_frames(cf: pd.DataFrame, q: pd.DataFrame, meta: dict[str, Any],
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """summary.json from the per-CF scores and the per-query table (no task needed):
    method -> direction (``0->1``, ``1->0``, ``all``) -> scopes and metrics."""
    names = list(meta["features"])
    methods: dict[str, Any] = {}
    if len(q):
        if cf.empty:
            cf = empty_scores(names)
        cf = cf.merge(q[["qidx", "method_label", "direction"]], on="qidx", how="left")
        for label, qm in q.groupby("method_label", sort=True):
            cm = cf[cf["method_label"] == label]
            per_dir = {}
            for direction, qd in qm.groupby("direction", sort=True):
                per_dir[direction] = _agg(cm[cm["direction"] == direction], qd, names)
            per_dir["all"] = _agg(cm, qm, names)
            methods[label] = per_dir
    return {
        "schema_version": SCHEMA_VERSION,
        "task": meta["task"],
        "task_hash": meta["task_hash"],
        "data_source": meta["data_source"],
        "classifier": meta["classifier"],
        "methods": methods,
        **(extra or {}),
    }


def summarize(task: Any, records: list[dict[str, Any]], extra: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    """summary.json of ``records``, scoring them with the loaded ``task``."""
    cf, q = score_records(task, records)
    return summarize_frames(cf, q, task_meta(task), extra)


# ----------------------------------------------------------------------------- run folders


def run_frames(run_dir: Path, records: list[dict[str, Any]] | None = None,
               ids: list[str] | None = None, rescore: bool = True
               ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(per-CF scores, per-query table, task meta) of a run folder.

    From ``scores.parquet`` and ``run.json`` alone when the run wrote them (the task is not
    loaded); a folder made by older code, or whose scores do not cover its records (an
    interrupted run), is scored with the task loaded, as before (with ``rescore=False``: a
    ``UserError`` instead).
    """

    run_dir = Path(run_dir)
    records = load_records(run_dir) if records is None else records
    info = read_run_info(run_dir)
    meta = info.get("task_meta")
    path = run_dir / SCORES
    if meta is not None and path.exists():
        try:
            cf, q = frames_from_scores(records, read_scores(run_dir), len(meta["features"]), ids)
            return cf, q, meta
        except UserError:
            if not rescore:
                raise
    elif not rescore:
        raise UserError(f"{run_dir}: no {SCORES} (made by an older cfbench); "
                        f"write it with `cfbench leaderboard {run_dir} --rescore`")
    task = load_run_task(run_dir, info)
    cf, q = score_records(task, records)
    return cf, q, task_meta(task)


def load_run_task(run_dir: Path, info: dict[str, Any]) -> Any:
    """The task of a run folder, loaded (data and classifier), after checking its hash."""

    # the task as given to `cfbench run` (a spec file's path, or a name)
    spec = resolve_spec((info.get("config") or {}).get("task") or info["task"])
    if spec.hash != info.get("task_hash"):
        raise UserError(f"{run_dir}: the run used another version of task {spec.name!r} "
                        f"(hash {str(info.get('task_hash'))[:12]}, now {spec.hash[:12]}) and has "
                        f"no {SCORES}; re-run it")
    data_dir = info.get("data_dir")
    return Task.load(spec, dataset_options={"data_dir": data_dir} if data_dir else None)


def run_extra(info: dict[str, Any]) -> dict[str, Any]:
    """The summary keys that come from the run's settings (``run.json``)."""
    cfg = info.get("config") or {}
    return {"skipped_methods": info.get("skipped_methods") or {}, "seeds": cfg.get("seeds"),
            "k": cfg.get("k"), "budget": cfg.get("budget")}


def old_skipped(run_dir: Path) -> dict[str, str]:
    """The skipped methods of a folder made before ``run.json`` kept them: its summary's."""

    try:
        old = read_json(Path(run_dir) / "summary.json", strict=False)
        return {str(k): str(v) for k, v in (old.get("skipped_methods") or {}).items()}
    except (UserError, AttributeError, TypeError):
        return {}


def summarize_run(run_dir: Path, **extra: Any) -> dict[str, Any]:
    """summary.json of a run folder from its records, ``scores.parquet`` and ``run.json``
    (the task is loaded only when the folder has no usable scores, see ``run_frames``)."""

    info = read_run_info(run_dir)
    if "skipped_methods" not in info:
        info["skipped_methods"] = old_skipped(run_dir)
    cf, q, meta = run_frames(run_dir)
    return summarize_frames(cf, q, meta, {**run_extra(info), **extra})


def score_run(run_dir: Path, task: Any, records: list[dict[str, Any]],
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score ``records`` once with the loaded ``task``; write ``scores.parquet`` and
    ``summary.json`` into ``run_dir`` and the task's meta into ``run.json``; return the summary."""

    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    info["task_meta"] = task_meta(task)
    if extra and "skipped_methods" in extra:
        info["skipped_methods"] = extra["skipped_methods"]
    elif "skipped_methods" not in info:
        info["skipped_methods"] = old_skipped(run_dir)
    write_json_atomic(run_dir / "run.json", info)
    cf, q = score_records(task, records)
    write_scores(run_dir / SCORES, records, cf, q)
    summary = summarize_frames(cf, q, task_meta(task), {**run_extra(info), **(extra or {})})
    write_json_atomic(run_dir / "summary.json", summary)
    return summary
