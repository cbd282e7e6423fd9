"""Adding methods to a committed board without re-running the others (``cfbench leaderboard
RUN --add``), and carrying a board's augmentation study over to its next ``--update``.

A run is added only when it answered the board's questions: the same task version, data,
fitted classifier, queries, seeds, k, budget and timeouts.  The merged records are re-scored
through the one path every board takes (``board_from_records``), so ranks, Friedman/Nemenyi,
CIs and plots are recomputed over all methods, and ``--validate`` can recompute it again.
The board's ``added`` list names, per added method, the run command and provenance it came from.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from cfbench.core.errors import UserError
from cfbench.core.strict_json import read_json
from cfbench.records.labels import record_label
from cfbench.records.store import load_records, read_run_info
from cfbench.report import augment
from cfbench.report.board import (
    board_from_records,
    canonical_records,
    check_task_name,
    read_records_bytes,
    records_path,
    run_command,
)
from cfbench.tasks.spec import Task, resolve_spec

#: run settings an added run must share with the board (they change what a query asks)
SAME_CONFIG = ("seeds", "k", "n_queries", "budget", "timeout", "fit_timeout", "data_dir",
               "scarcity", "params")
#: provenance fields that pin the task version, its data and the fitted classifier
SAME_PROVENANCE = ("task_hash", "data_fingerprint", "classifier", "model_sha256")
#: augmentation settings an added study must share with the board's
SAME_STUDY = ("protocol", "fraction", "curve", "seeds", "scenarios", "max_per_class", "budget",
              "timeout")
#: the augmentation rows that do not depend on the CF methods (they pin the splits)
BASELINES = ("no-augmentation", "random-oversampling", "smote")


def read_board(board_dir: Path, task: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The committed board of ``task`` in ``board_dir`` and its records (hash checked)."""
    path = Path(board_dir) / f"{check_task_name(task)}.json"
    if not path.is_file():
        raise UserError(f"{path}: no committed board for task {task!r} to add to; make one "
                        "from its suite file with `cfbench leaderboard RUN --update`")
    board = read_json(path)
    if not isinstance(board, dict):
        raise UserError(f"{path}: not a board (a JSON object)")
    rpath = records_path(path.parent, task)
    want = board.get("records_sha256")
    if want is None or not rpath.is_file():
        raise UserError(f"{path}: has no committed records ({rpath.name}), so methods cannot be "
                        "added to it; regenerate it with `cfbench leaderboard RUN --update`")
    blob = rpath.read_bytes()
    if hashlib.sha256(blob).hexdigest() != want:
        raise UserError(f"{rpath}: does not match the board's records_sha256; restore both "
                        "from version control")
    try:
        return board, read_records_bytes(blob)
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"{rpath}: cannot be read ({str(exc)[:160]})") from None


def _queries(records: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {(r.get("seed"), r.get("query_id"), r.get("source"), r.get("target"))
            for r in records}


def compatibility_problem(board: dict[str, Any], board_records: list[dict[str, Any]],
                          config: dict[str, Any], records: list[dict[str, Any]]) -> str | None:
    """Why a run (``config``, ``records``) did not answer the board's questions, or None."""
    if not records:
        return "the run has no records"
    bcfg = board.get("config") or {}
    for key in SAME_CONFIG:
        mine, theirs = config.get(key), bcfg.get(key)
        if key == "params":
            mine, theirs = mine or [], theirs or []
        if not _same(mine, theirs):
            return (f"{key} is {mine!r} in the run and {theirs!r} on the board; re-run with the "
                    f"board's settings (its command: `{run_command(bcfg, board['task'])}`)")
    bprov = board.get("provenance") or {}
    for r in records:
        prov = r.get("provenance") or {}
        for key in SAME_PROVENANCE:
            if prov.get(key) != bprov.get(key):
                return (f"{key} is {str(prov.get(key))[:16]!r} in the run and "
                        f"{str(bprov.get(key))[:16]!r} on the board (another task version, data "
                        "or classifier)")
    want = _queries(board_records)
    by_label: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_label.setdefault(record_label(r), []).append(r)
    for label, rows in sorted(by_label.items()):
        got = _queries(rows)
        if got != want:
            extra, missing = len(got - want), len(want - got)
            return (f"{label} answered {len(got)} queries, the board's methods {len(want)} "
                    f"({missing} of the board's missing, {extra} not on the board); run the "
                    "board's queries (same seeds and --n-queries)")
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def add_run(board_dir: Path, run_dir: Path, *, augment_dir: Path | None = None,
            replace: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """(new board, its records, what changed) with ``run_dir``'s methods added to the
    committed board of its task (and ``augment_dir``'s study rows added to its augmentation)."""
    info = read_run_info(run_dir)
    config = info.get("config") or {}
    full = load_records(run_dir)
    if not full:
        raise UserError(f"{run_dir}: no records to add (an empty or unstarted run)")
    task_name = check_task_name(full[0].get("task"))
    board, board_records = read_board(board_dir, task_name)
    problem = compatibility_problem(board, board_records, config, full)
    if problem:
        raise UserError(f"cannot add {run_dir} to the {task_name} board: {problem}")
    new_labels = sorted({record_label(r) for r in full})
    on_board = sorted({record_label(r) for r in board_records} & set(new_labels))
    if on_board and not replace:
        raise UserError(f"cannot add {run_dir} to the {task_name} board: {', '.join(on_board)} "
                        "already on it; pass --replace to replace those rows, or run only the "
                        "new methods (--methods)")
    kept = [r for r in board_records if record_label(r) not in set(new_labels)]
    merged = kept + canonical_records(full)
    notes = [f"{'replaced' if label in on_board else 'added'} {label}" for label in new_labels]
    augmentation = board.get("augmentation")
    study = None
    if augment_dir is not None:
        augmentation, study, more = merge_augmentation(augmentation, augment.load(augment_dir),
                                                       replace=replace)
        notes += more
    spec = resolve_spec(task_name)
    if spec.hash != board.get("task_hash"):
        raise UserError(f"the {task_name} board was made with another version of the task (hash "
                        f"{str(board.get('task_hash'))[:12]}, now {spec.hash[:12]}); regenerate "
                        "the board before adding to it")
    data_dir = (board.get("config") or {}).get("data_dir")
    task = Task.load(spec, dataset_options={"data_dir": data_dir} if data_dir else None)
    skipped = {m: why for m, why in (board.get("skipped_methods") or {}).items()
               if m not in set(new_labels)}
    new = board_from_records(task, merged, config=board.get("config", {}),
                             provenance=board.get("provenance", {}), skipped_methods=skipped,
                             augmentation=augmentation)
    entry: dict[str, Any] = {"methods": new_labels, "command": run_command(config, task_name),
                             "provenance": full[0].get("provenance") or {}}
    if study is not None:
        entry["augment_methods"] = study
    added = [dict(e, methods=[m for m in e["methods"] if m not in set(new_labels)])
             for e in board.get("added") or []]
    new["added"] = [e for e in added if e["methods"]] + [entry]
    if board.get("augmentation_kept"):
        new["augmentation_kept"] = board["augmentation_kept"]
    return new, merged, notes


def merge_augmentation(board_aug: dict[str, Any] | None, doc: dict[str, Any], *,
                       replace: bool = False) -> tuple[dict[str, Any], list[str], list[str]]:
    """The board's augmentation study with ``doc``'s CF-method rows added: (study, the added
    methods, notes).  ``doc`` must use the board's protocol and settings, and its baseline rows
    (no augmentation, oversampling, SMOTE; the F1 lost) must equal the board's: they pin the
    splits, so equal baselines show the new rows were measured on the board's repetitions."""
    if not board_aug:
        raise UserError("--augment with --add: the board has no augmentation study to add to")
    if board_aug.get("protocol") != 2 or not isinstance(board_aug.get("aggregate"), dict):
        raise UserError("--augment with --add: the board's study is not protocol 2; re-run it")
    for key in SAME_STUDY:
        if not _same(doc.get(key), board_aug.get(key)):
            raise UserError(f"--augment with --add: the study's {key} is {doc.get(key)!r}, the "
                            f"board's {board_aug.get(key)!r}; run `cfbench augment` with the "
                            "board's settings")
    old, new = board_aug["aggregate"], doc["aggregate"]

    def rows(agg: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
        return {(r["fraction"], r["scenario"], r["method"], r.get("cfs")): r for r in agg["methods"]}

    old_rows, new_rows = rows(old), rows(new)
    for key, row in new_rows.items():
        if key[2] in BASELINES:
            if key not in old_rows or not _close(row["f1"]["mean"], old_rows[key]["f1"]["mean"]):
                raise UserError(f"--augment with --add: the study's {key[2]} F1 at {key[0]:g}, "
                                f"scenario {key[1]} differs from the board's, so its repetitions "
                                "are not the board's (same seeds, fractions and task needed)")
    for d_new, d_old in zip(new["deficit"], old["deficit"], strict=False):
        if not _close(d_new["f1_scarce"]["mean"], d_old["f1_scarce"]["mean"]):
            raise UserError("--augment with --add: the study's F1 under scarcity differs from the "
                            "board's, so its repetitions are not the board's")
    methods = sorted({k[2] for k in new_rows if k[2] not in BASELINES})
    if not methods:
        raise UserError("--augment with --add: the study has no CF method to add")
    clash = sorted(set(methods) & {k[2] for k in old_rows})
    if clash and not replace:
        raise UserError(f"--augment with --add: {', '.join(clash)} already in the board's study; "
                        "pass --replace to replace those rows")
    merged = [r for k, r in old_rows.items() if k[2] not in set(methods)]
    merged += [r for k, r in new_rows.items() if k[2] in set(methods)]
    listed = [m for m in str(board_aug.get("methods") or "").split(",") if m and m not in methods]
    params = [p for p in board_aug.get("params") or [] if p[0] not in set(methods)]
    params += [p for p in doc.get("params") or [] if p[0] in set(methods)]
    study = {**board_aug, "methods": ",".join(listed + methods), "params": params,
             "aggregate": {**old, "methods": merged}}
    return study, methods, [f"added {m} to the augmentation study" for m in methods]


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def keep_augmentation(new: dict[str, Any], board_dir: Path) -> dict[str, Any]:
    """``new`` (a board from ``--update`` without a study) with the augmentation study of the
    committed board it replaces, marked as kept: the study was not re-run with this run."""
    task = check_task_name(new.get("task"))
    path = Path(board_dir) / f"{task}.json"
    if not path.is_file():
        raise UserError(f"--keep-augmentation: {path} does not exist, so there is no study to "
                        "keep; run `cfbench augment` and pass --augment")
    old = read_json(path)
    study = old.get("augmentation") if isinstance(old, dict) else None
    if not study:
        raise UserError(f"--keep-augmentation: {path} has no augmentation study to keep")
    if old.get("task_hash") != new.get("task_hash"):
        raise UserError(f"--keep-augmentation: {path} was made with another version of task "
                        f"{task!r}; its study cannot be kept; run `cfbench augment` again")
    kept = old.get("augmentation_kept") or {
        "records_sha256": old.get("records_sha256"),
        "cfbench": (old.get("provenance") or {}).get("cfbench")}
    return {**new, "augmentation": study, "augmentation_kept": kept}
