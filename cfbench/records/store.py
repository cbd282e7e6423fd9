"""The run store: an append-only JSONL file that survives ``kill -9``.

Every record is one line, written with a single ``write`` and ``fsync``-ed before the runner
moves on, so a killed run leaves at most one torn final line.  Opening the store drops that
line; ``done_keys`` then tells ``--resume`` what to skip, so no row is lost or duplicated.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cfbench.core.errors import UserError
from cfbench.core.strict_json import dumps, read_json

RECORDS = "records.jsonl"
RUN_INFO = "run.json"
LOCK = ".lock"
KEY = ("method", "variant", "seed", "query_id")
#: version of the run folder's formats (records, ``summary.json``, ``scores.parquet``) and of
#: board JSON.  2: ``valid`` scope, ``validity`` (was ``valid``), mismatch-aware L2/LOF, CARLA yNN,
#: ``invalid_value`` violations, record ``flags``, ``scores.parquet``, ``run.json`` ``task_meta``.
#: 3: ``coverage`` counts valid CFs (``returned`` any), ``heom`` (was ``l2_minmax``), ``sparsity``
#: (was ``share_unchanged``), ``l1_mad_cat``, CARLA's distances, ``redundancy``, ``lof_p95``,
#: ``unscorable``, yNN over every row in CARLA's encoding, symmetric ties; boards: ``identical``,
#: ``ranks.unranked``.  Records of either version resume and are re-scored.
SCHEMA_VERSION = 3

#: run folders this process holds the lock of: resolved path -> open lock file descriptor
_HELD: dict[Path, int] = {}
#: corrupt lines already reported: (path, line number)
_REPORTED: set[tuple[str, int]] = set()


def record_key(rec: dict[str, Any]) -> tuple:
    """``KEY`` fields plus the cell's parameters (sorted pairs; ``()`` for records without)."""
    params = tuple(sorted((rec.get("params") or {}).items()))
    return (*(rec[k] for k in KEY), params)


#: bytes kept free below the file system's path limit for the files cfbench writes in a folder
PATH_ROOM = 256


def _fs_limits(path: Path) -> tuple[int, int]:
    """(longest file or folder name, longest path) in bytes where ``path`` would be created."""
    for p in (path, *path.parents):
        try:
            if p.is_dir():
                return os.pathconf(p, "PC_NAME_MAX"), os.pathconf(p, "PC_PATH_MAX")
        except (OSError, ValueError):
            continue  # a name too long to look up, or no such limit: its parent decides
    return 255, 4096


def check_path_limits(path: Path, flag: str) -> None:
    """One line naming ``path`` (given as ``flag``) and the limit when the file system cannot
    hold it: a file or folder name longer than NAME_MAX bytes, or a path too long to leave
    ``PATH_ROOM`` bytes for the files cfbench writes inside."""
    path = Path(path).absolute()
    name_max, path_max = _fs_limits(path)
    for part in path.parts:
        n = len(os.fsencode(part))
        if n > name_max:
            raise UserError(f"{flag} {path}: the name {part[:20]}... is {n} bytes long; valid: at "
                            f"most {name_max} bytes per file or folder name")
    n, limit = len(os.fsencode(str(path))), path_max - PATH_ROOM
    if n > limit:
        raise UserError(f"{flag} {path}: the path is {n} bytes long; valid: at most {limit} bytes "
                        f"(the file system's {path_max}, less room for the files written inside)")


def lock_run_dir(out_dir: Path) -> None:
    """Create ``out_dir`` and hold its exclusive lock until this process exits.

    Two processes writing one run folder would do the work twice and interleave their records,
    so a second cfbench process on the same folder is refused with one line naming the holder.
    The lock is ``flock`` on ``OUT/.lock``: the kernel drops it when the holder dies, even by
    ``kill -9``, so a stale lock never blocks ``--resume``.  Re-locking in the same process is a
    no-op.
    """
    out = Path(out_dir)
    check_path_limits(out, "--out")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose a folder for the run")
    try:
        out.mkdir(parents=True, exist_ok=True)
        key = out.resolve()
        if key in _HELD:
            return
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write the run folder ({exc.strerror or exc})") from None
    try:
        _flock_or_refuse(fd, out)
    except UserError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = fd


def _flock_or_refuse(fd: int, out: Path) -> None:
    """Take the run folder's exclusive lock on ``fd``, or one line naming the holder's pid."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        raise UserError(f"run folder {out} is in use by another cfbench process (pid {holder})"
                        ) from None


def probe_run_dir(out_dir: Path) -> None:
    """The checks of :func:`lock_run_dir` without creating anything: ``out_dir`` is not a file,
    can be written, and no other process holds its lock (so a refused run leaves no folder)."""
    out = Path(out_dir)
    check_path_limits(out, "--out")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose a folder for the run")
    parent = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: cannot write the run folder (no write permission on {parent})")
    lock = out / LOCK
    if out.resolve() in _HELD or not lock.exists():
        return
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write the run folder ({exc.strerror or exc})") from None
    try:
        _flock_or_refuse(fd, out)
    finally:
        os.close(fd)  # closing drops a lock we took just to look


def release_run_dir(out_dir: Path) -> None:
    """Give up this process's lock on ``out_dir`` (for library callers that run several times)."""
    fd = _HELD.pop(Path(out_dir).resolve(), None)
    if fd is not None:
        os.close(fd)


def has_records(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds at least one complete record (an empty file is no run)."""
    path = Path(out_dir) / RECORDS
    try:
        with open(path, "rb") as fh:
            return any(line.strip() and line.endswith(b"\n") for line in fh)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise UserError(f"{path}: cannot read the run's records ({exc.strerror or exc})") from None


def read_run_info(out_dir: Path) -> dict[str, Any]:
    """The run's ``run.json``, or one clear line when it is missing, not JSON (or nested too
    deeply, or too large), or a key that cfbench reads has the wrong structure."""
    path = Path(out_dir) / RUN_INFO
    fix = "restore it or start a new --out"
    if not path.is_file():
        raise UserError(f"{path} is missing, so the settings of the run in {out_dir} cannot be "
                        f"checked; {fix}")
    info = read_json(path, strict=False, fix=fix)
    if not isinstance(info, dict):
        raise UserError(f"{path} is not a JSON object; {fix}")
    problem = run_info_problem(info)
    if problem:
        raise UserError(f"{path}: {problem}; {fix}")
    return info


_NUM = (int, float)
_TEXT_OR_NULL = (str, type(None))
#: the JSON type(s) each key of ``run.json`` that cfbench reads must hold (when present)
RUN_INFO_TYPES: dict[str, Any] = {
    "task": str, "task_hash": str, "k": int, "n_queries": (int, type(None)),
    "data_dir": _TEXT_OR_NULL, "scarcity": (list, type(None)), "schema_version": int,
    "config": dict, "task_meta": dict, "skipped_methods": dict, "params": list, "pairs": list,
}
#: the same for the keys of ``run.json``'s ``config`` and ``task_meta``
CONFIG_TYPES: dict[str, Any] = {
    "task": str, "methods": str, "seeds": list, "k": int, "n_queries": (int, type(None)),
    "timeout": (*_NUM, type(None)), "budget": (*_NUM, type(None)),
    "fit_timeout": (*_NUM, type(None)), "data_dir": _TEXT_OR_NULL, "params": (list, type(None)),
}
TASK_META_TYPES: dict[str, Any] = {
    "task": str, "task_hash": str, "data_source": str, "classifier": dict, "features": list,
}


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false",
            type(None): "null"}.get(type(value), "a number")


def _wrong(key: str, value: Any, want: str) -> str:
    return f"key {key!r} is {_kind(value)}, expected {want}"


def _types_problem(obj: dict[str, Any], types: dict[str, Any], where: str) -> str | None:
    for key, kinds in types.items():
        v = obj.get(key)
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if key in obj and ((isinstance(v, bool) and bool not in kinds) or not isinstance(v, kinds)):
            names = {str: "a string", int: "an integer", float: "a number", list: "a list",
                     dict: "an object", type(None): "null"}
            want = [names[k] for k in kinds if not (k is int and float in kinds)]
            return _wrong(where + key, v, " or ".join(want))
    return None


def _params_problem(params: Any, key: str) -> str | None:
    """A cell's parameters: an object, or a list of [name, value] pairs."""
    if isinstance(params, dict):
        return None
    if not isinstance(params, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in params):
        return _wrong(key, params, "an object or a list of [name, value] pairs")
    return None


def run_info_problem(info: dict[str, Any]) -> str | None:
    """What is wrong with the structure of ``run.json`` (its key named), or None."""
    problem = _types_problem(info, RUN_INFO_TYPES, "")
    if problem:
        return problem
    problem = (_types_problem(info.get("config") or {}, CONFIG_TYPES, "config.")
               or _types_problem(info.get("task_meta") or {}, TASK_META_TYPES, "task_meta."))
    if problem:
        return problem
    for i, p in enumerate(info.get("pairs") or []):
        if not (isinstance(p, list) and len(p) in (2, 3) and all(isinstance(x, str) for x in p[:2])):
            return _wrong(f"pairs[{i}]", p, "[method, variant, parameters]")
        problem = _params_problem(p[2], f"pairs[{i}][2]") if len(p) == 3 else None
        if problem:
            return problem
    for where, groups in (("params", info.get("params")),
                          ("config.params", (info.get("config") or {}).get("params"))):
        for i, g in enumerate(groups or []):
            if not (isinstance(g, list) and len(g) == 2 and isinstance(g[0], str)
                    and isinstance(g[1], dict)):
                return _wrong(f"{where}[{i}]", g, "[target, {name: value}]")
    seeds = (info.get("config") or {}).get("seeds") or []
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        return "key 'config.seeds' holds a value that is not an integer"
    meta = info.get("task_meta") or {}
    if not all(isinstance(f, str) for f in meta.get("features") or []):
        return "key 'task_meta.features' holds a value that is not a string"
    if not all(isinstance(v, str) for v in (info.get("skipped_methods") or {}).values()):
        return "key 'skipped_methods' holds a reason that is not a string"
    return None


class RunStore:
    """Append-only store of per-query records under ``out_dir`` (holding the folder's lock)."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = Path(out_dir)
        lock_run_dir(self.dir)
        self.path = self.dir / RECORDS
        self._lock = threading.Lock()
        self._repair()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def _repair(self) -> None:
        """Truncate a torn last line left by a killed writer."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        with open(self.path, "r+b") as fh:
            fh.truncate(cut)

    def append(self, rec: dict[str, Any]) -> None:
        line = dumps(rec) + "\n"  # strict JSON: NaN/inf as null, never raises
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter_records(self.path)

    def done_keys(self) -> set[tuple]:
        return {record_key(r) for r in iter_records(self.path)}


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """Records in file order; a torn last line (no newline) is skipped.

    A corrupt complete line (not a JSON object with the key fields) is skipped and reported
    once on stderr: the other records stay usable, and ``--resume`` re-runs that query since
    its key is not among the done ones.
    """
    if not Path(path).exists():
        return
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                break
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                if not isinstance(rec, dict) or any(k not in rec for k in KEY):
                    raise ValueError("not a record object")
                hash(record_key(rec))
            except (ValueError, TypeError, RecursionError) as exc:
                _report_corrupt(Path(path), lineno, exc)
                continue
            yield rec


def _report_corrupt(path: Path, lineno: int, exc: Exception) -> None:
    if (str(path), lineno) in _REPORTED:
        return
    _REPORTED.add((str(path), lineno))
    print(f"cfbench: warning: {path} line {lineno} is not a valid record ({str(exc)[:80]}); "
          "skipped (--resume runs that query again)", file=sys.stderr)


def load_records(out_dir: Path) -> list[dict[str, Any]]:
    """All records of a run, de-duplicated by key (the last write wins)."""
    by_key: dict[tuple, dict[str, Any]] = {}
    for rec in iter_records(Path(out_dir) / RECORDS):
        by_key[record_key(rec)] = rec
    return list(by_key.values())


def write_parquet(records: list[dict[str, Any]], path: Path) -> None:
    """Flat Parquet copy of the records (CFs, params and provenance as JSON strings)."""
    rows = []
    for r in records:
        row = dict(r)
        row["cfs"] = dumps(r.get("cfs"))
        row["provenance"] = dumps(r.get("provenance"), sort_keys=True)
        row["extra"] = dumps(r.get("extra"))
        row["params"] = dumps(r.get("params") or {}, sort_keys=True)
        rows.append(row)
    pd.DataFrame(rows).to_parquet(path, index=False)


#: the text columns of ``scores.parquet`` (its other key columns are integers, every other
#: column a number or true/false)
SCORE_TEXT = ("method", "variant", "params", "method_label", "direction")


def read_scores(run_dir: Path) -> pd.DataFrame | None:
    """The run folder's ``scores.parquet`` (None when it has none), checked; a file that is not
    Parquet, or a column that does not hold what cfbench writes there, is one line naming the
    file and saying how to rebuild it from the records (or to restore it, without records)."""

    run_dir = Path(run_dir)
    path = run_dir / SCORES
    if not path.is_file():
        return None
    fix = (f"rebuild it from the records with `cfbench leaderboard {run_dir} --rescore`"
           if (run_dir / RECORDS).is_file() else "restore it (the folder has no records to "
           "rebuild it from)")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - ArrowInvalid, OSError, ...: any unreadable file
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        detail = detail.split(f"'{path}': ")[-1].split(". ")[0][:160]  # no path twice
        raise UserError(f"{path}: not a readable Parquet file ({detail}); {fix}") from None
    problem = scores_problem(df)
    if problem:
        raise UserError(f"{path}: {problem}; {fix}")
    return df


def scores_problem(df: pd.DataFrame) -> str | None:
    """What in ``df`` is not a ``scores.parquet`` as cfbench writes it (a missing column, a
    column of the wrong type such as lists, unreadable parameters), or None."""

    need = (*SCORE_KEYS, "validity", "diversity", "count_diversity")
    missing = [c for c in need if c not in df.columns]
    if missing:
        return f"column {missing[0]!r} is missing"
    for c in df.columns if len(df) else ():
        col = df[c]
        if c in SCORE_TEXT:
            ok, want = all(isinstance(v, str) for v in col), "text"
        elif c in SCORE_KEYS:
            ok, want = col.dtype.kind in "iu", "integers"
        else:
            ok, want = col.dtype.kind in "biuf", "numbers or true/false"
        if not ok:
            held = ("lists" if any(isinstance(v, (list, tuple, dict, np.ndarray)) for v in col)
                    else f"{col.dtype} values")
            return f"column {str(c)!r} holds {held}, expected {want}"
    for text in set(df["params"]) if len(df) else ():
        try:
            ok = isinstance(json.loads(text), dict)
        except (ValueError, RecursionError):
            ok = False
        if not ok:
            return f"column 'params' holds {text[:40]!r}, expected a JSON object"
    return None


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (NaN/inf as ``null``), replacing ``path`` atomically."""
    tmp = Path(f"{path}.tmp{os.getpid()}")
    tmp.write_text(dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


SCORES = "scores.parquet"


#: the columns of ``scores.parquet`` that identify a CF: its query's record key and position
SCORE_KEYS = ("method", "variant", "params", "method_label", "seed", "query_id", "direction",
              "cf_index")


