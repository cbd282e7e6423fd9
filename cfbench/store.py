"""The run store: an append-only JSONL file that survives ``kill -9``.

Every record is one line, written with a single ``write`` and ``fsync``-ed before the runner
moves on, so a killed run leaves at most one torn final line.  Opening the store drops that
line; ``done_keys`` then tells ``--resume`` what to skip, so no row is lost or duplicated.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from cfbench.strict_json import dumps

RECORDS = "records.jsonl"
RUN_INFO = "run.json"
KEY = ("method", "variant", "seed", "query_id")


def record_key(rec: dict[str, Any]) -> tuple:
    return tuple(rec[k] for k in KEY)


class RunStore:
    """Append-only store of per-query records under ``out_dir``."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
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
    """Records in file order; a torn last line (no newline) is skipped."""
    if not Path(path).exists():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            yield json.loads(line)


def load_records(out_dir: Path) -> list[dict[str, Any]]:
    """All records of a run, de-duplicated by key (the last write wins)."""
    by_key: dict[tuple, dict[str, Any]] = {}
    for rec in iter_records(Path(out_dir) / RECORDS):
        by_key[record_key(rec)] = rec
    return list(by_key.values())


def write_parquet(records: list[dict[str, Any]], path: Path) -> None:
    """Flat Parquet copy of the records (CFs and provenance as JSON strings)."""
    rows = []
    for r in records:
        row = dict(r)
        row["cfs"] = dumps(r.get("cfs"))
        row["provenance"] = dumps(r.get("provenance"), sort_keys=True)
        row["extra"] = dumps(r.get("extra"))
        rows.append(row)
    pd.DataFrame(rows).to_parquet(path, index=False)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (NaN/inf as ``null``), replacing ``path`` atomically."""
    tmp = Path(f"{path}.tmp{os.getpid()}")
    tmp.write_text(dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)
