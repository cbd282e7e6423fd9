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

import pandas as pd

from cfbench.errors import UserError
from cfbench.strict_json import dumps

RECORDS = "records.jsonl"
RUN_INFO = "run.json"
LOCK = ".lock"
KEY = ("method", "variant", "seed", "query_id")
#: version of the run folder's formats (records, ``summary.json``, ``scores.parquet``) and of
#: board JSON.  2: ``valid`` scope, ``validity`` (was ``valid``), mismatch-aware L2/LOF, CARLA yNN,
#: ``invalid_value`` violations, record ``flags``, ``scores.parquet``, ``run.json`` ``task_meta``
SCHEMA_VERSION = 2

#: run folders this process holds the lock of: resolved path -> open lock file descriptor
_HELD: dict[Path, int] = {}
#: corrupt lines already reported: (path, line number)
_REPORTED: set[tuple[str, int]] = set()


def record_key(rec: dict[str, Any]) -> tuple:
    """``KEY`` fields plus the cell's parameters (sorted pairs; ``()`` for records without)."""
    params = tuple(sorted((rec.get("params") or {}).items()))
    return (*(rec[k] for k in KEY), params)


def lock_run_dir(out_dir: Path) -> None:
    """Create ``out_dir`` and hold its exclusive lock until this process exits.

    Two processes writing one run folder would do the work twice and interleave their records,
    so a second cfbench process on the same folder is refused with one line naming the holder.
    The lock is ``flock`` on ``OUT/.lock``: the kernel drops it when the holder dies, even by
    ``kill -9``, so a stale lock never blocks ``--resume``.  Re-locking in the same process is a
    no-op.
    """
    out = Path(out_dir)
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
    """The run's ``run.json``, or one clear line when it is missing or not a JSON object."""
    path = Path(out_dir) / RUN_INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} is missing, so the settings of the run in {out_dir} cannot be "
                        "checked; restore it or start a new --out") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a readable JSON file ({exc}); restore it or start a "
                        "new --out") from None
    if not isinstance(info, dict):
        raise UserError(f"{path} is not a JSON object; restore it or start a new --out")
    return info


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
            except (ValueError, TypeError) as exc:
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


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (NaN/inf as ``null``), replacing ``path`` atomically."""
    tmp = Path(f"{path}.tmp{os.getpid()}")
    tmp.write_text(dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)
