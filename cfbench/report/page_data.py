"""The data of the HTML page, read from files alone: a run folder, or the committed boards.

Kept apart from the rendering (``html.py``) so what the page shows can be loaded, checked and
tested without any HTML; nothing is re-scored and no task data or classifier is loaded.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from cfbench.core.errors import UserError
from cfbench.core.strict_json import read_json
from cfbench.records.labels import record_label
from cfbench.records.store import RUN_INFO, load_records, read_run_info, read_scores
from cfbench.report import augment
from cfbench.report.board import board_from_frames, board_problem, run_summary
from cfbench.report.values import num
from cfbench.score.summary import run_frames
from cfbench.tasks.spec import resolve_spec


def _feature_info(task: str, task_hash: str, n: int) -> tuple[list[dict[str, Any]], str]:
    """Names, kinds and category labels from the task's spec file (a file read, no data load).

    Returns the features and a note when they could not be matched to the run.
    """
    try:
        spec = resolve_spec(task)
    except Exception:  # noqa: BLE001 - no spec here: fall back to positions
        spec = None
    if spec is not None and len(spec.schema) == n:
        feats = [{"name": f.name, "kind": f.kind, "unit": f.unit,
                  "labels": dict(zip(f.categories, f.labels, strict=False))} for f in spec.schema]
        note = "" if spec.hash == task_hash else (
            f"feature names from the current task spec {task!r}, whose hash differs from the run's")
        return feats, note
    return ([{"name": f"feature {i + 1}", "kind": "numeric", "unit": "", "labels": {}}
             for i in range(n)], f"task spec {task!r} not found here: features shown by position")


def load_run(run_dir: Path, augment_dirs: list[Path] | None = None, n_examples: int = 3
             ) -> dict[str, Any]:
    """A board-like dict from a run folder alone, plus example CFs from its records; ranks and
    bootstrap CIs when the folder has ``scores.parquet``."""
    run_dir = Path(run_dir)
    summary = run_summary(run_dir)
    info = read_run_info(run_dir) if (run_dir / RUN_INFO).exists() else {}
    records = load_records(run_dir)  # a corrupt line is skipped with a warning, as everywhere
    board: dict[str, Any] = {
        "task": summary["task"], "task_hash": summary["task_hash"],
        "data_source": summary.get("data_source", ""), "classifier": summary["classifier"],
        "config": info.get("config", {}),
        "provenance": records[0].get("provenance", {}) if records else {},
        "skipped_methods": summary.get("skipped_methods", {}),
        "methods": summary["methods"], "ranks": None, "ci": None, "augmentation": None,
    }
    board["ranks"], board["ci"] = _run_ranks(run_dir)
    augs = []
    for d in augment_dirs or []:
        doc = augment.load(d)
        if doc.get("task") not in (None, board["task"]):
            raise UserError(f"{d}: augmentation of task {doc.get('task')!r}, not {board['task']!r}")
        augs.append({k: doc[k] for k in ("protocol", "fraction", "curve", "seeds", "scenarios",
                                         "max_per_class", "methods", "timeout", "budget",
                                         "aggregate") if k in doc})
    board["augmentations"] = augs
    board["libraries"] = _libraries(records)
    board["examples"], board["examples_note"] = _examples(board, records, n_examples)
    return board


def _run_ranks(run_dir: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(ranks, ci) of a run folder from its ``scores.parquet``; (None, None) without one."""
    if read_scores(run_dir) is None:  # an unreadable file is one line, not "no ranks"
        return None, None
    try:
        cf, q, meta = run_frames(run_dir, load_records(run_dir), rescore=False)
    except UserError:
        return None, None  # scores of an unfinished run: no ranks, as without scores
    b = board_from_frames(cf, q, meta, config={}, provenance={},
                          skipped_methods=read_run_info(run_dir).get("skipped_methods") or {},
                          augmentation=None)
    return b["ranks"], b["ci"]


def _libraries(records: list[dict[str, Any]]) -> dict[str, str]:
    """Each library version named in the records' provenance (the first one seen wins)."""
    libs: dict[str, str] = {}
    for r in records:
        for k, v in (r.get("provenance") or {}).get("libraries", {}).items():
            libs.setdefault(str(k), str(v))
    return libs


def _examples(board: dict[str, Any], records: list[dict[str, Any]], n: int
              ) -> tuple[dict[str, Any], str]:
    """Per method: up to ``n`` answered queries (directions alternating) and failure reasons."""
    n_feat = next((len(c) for r in records for c in r.get("cfs") or [] if isinstance(c, list)),
                  len(next(iter(r["query"] for r in records if r.get("query")), [])))
    feats, note = _feature_info(board["task"], board["task_hash"], n_feat) if n_feat else ([], "")
    out: dict[str, Any] = {}
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_method.setdefault(record_label(r), []).append(r)  # the board's label, params included
    for label, recs in sorted(by_method.items()):
        recs = sorted(recs, key=lambda r: (r["seed"], r["direction"], r["query_id"]))
        ok = [r for r in recs if r.get("status") == "ok" and r.get("cfs")]
        picked: list[dict[str, Any]] = []
        per_dir: dict[str, list[dict[str, Any]]] = {}
        for r in ok:
            per_dir.setdefault(r["direction"], []).append(r)
        while len(picked) < n and any(per_dir.values()):
            for d in sorted(per_dir):
                if per_dir[d] and len(picked) < n:
                    picked.append(per_dir[d].pop(0))
        reasons = Counter(f"{r.get('status')}: {r.get('reason') or '(no reason given)'}"
                          for r in recs if r.get("status") != "ok")
        out[label] = {"examples": [_example(r, n_feat) for r in picked],
                      "failures": reasons.most_common(5), "n_failed": sum(reasons.values())}
    board["features"] = feats
    return out, note


def _example(r: dict[str, Any], n_feat: int) -> dict[str, Any]:
    """One record as an example: query and CFs as finite numbers or None (no query if it has
    the wrong length)."""
    q = r.get("query")
    query = [num(v) for v in q] if isinstance(q, list) and len(q) == n_feat else None
    cfs = [[num(v) for v in c] for c in r["cfs"] if isinstance(c, list) and len(c) == n_feat]
    return {"seed": r["seed"], "query_id": r["query_id"], "direction": r["direction"],
            "source": r.get("source"), "target": r.get("target"), "query": query, "cfs": cfs}


def load_boards(board_dir: Path) -> list[dict[str, Any]]:
    """Every committed ``<task>.json`` board of ``board_dir`` (not the schema), with its plots."""
    board_dir = Path(board_dir)
    if not board_dir.is_dir():
        raise UserError(f"--board {board_dir}: not a folder (expected the leaderboard/ folder)")
    boards = []
    for p in sorted(board_dir.glob("*.json"), key=lambda p: p.stem):  # ai-readi before ai-readi-mlp
        if p.name == "schema.json":
            continue
        doc = read_json(p)
        if not isinstance(doc, dict) or "task" not in doc or "methods" not in doc:
            continue  # not a board
        problem = board_problem(doc)
        if problem:
            raise UserError(f"{p}: not a cfbench board ({problem}); check the boards with "
                            f"`cfbench leaderboard --validate --dir {board_dir}`")
        doc["plots"] = [(board_dir / f"{doc['task']}-{kind}.svg", alt) for kind, alt in (
            ("metrics", "metric bars with 95% bootstrap CIs"),
            ("features", "share of each method's CFs changing each feature"))]
        doc["augmentations"] = [doc["augmentation"]] if doc.get("augmentation") else []
        boards.append(doc)
    if not boards:
        raise UserError(f"--board {board_dir}: no <task>.json boards found")
    return boards
