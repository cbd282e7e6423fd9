"""Cell times measured on this machine, kept between runs in ``$CFBENCH_CACHE/timings.json``.

A method's declared cost (``GeneratorSpec.cost``) is one number per variant, measured on one
task and one machine; the same cell on another task or a slower CPU can take twice as long.
After each cell that answered all its queries, the runner stores what it took here (seconds
per query and fit seconds, per task, method, variant, threads, k and budget), and the next
plan uses that instead of the declaration.  The file is a cache: one that is missing, not
strict JSON, or holds values that are not finite numbers >= 0 counts (wholly or for those
entries) as absent, and writing it never stops a run.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cfbench.tasks.classifier import cache_dir

FILE = "timings.json"
#: entries kept at most (the oldest go first): a cache, not a history
MAX_ENTRIES = 2000
#: bytes read at most: a larger file is not ours, or not worth parsing before a plan
MAX_BYTES = 4 * 2**20


def key(task: str, method: str, variant: str, threads: int, k: int, budget: float) -> str:
    """The entry of one cell's timings: what its time depends on besides the machine."""
    return f"{task}|{method}|{variant}|threads={int(threads)}|k={int(k)}|budget={float(budget):g}"


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    v = float(v)
    return v if math.isfinite(v) and v >= 0 else None


class Timings:
    """Measured ``(seconds per query, fit seconds)`` by ``key``; ``path`` None keeps them in memory."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Any]] = self._read() if path is not None else {}

    @classmethod
    def in_cache(cls) -> Timings:
        """The user's timings (``$CFBENCH_CACHE/timings.json``); in memory if that folder cannot be used."""
        try:
            return cls(cache_dir() / FILE)
        except Exception:  # noqa: BLE001 - an unusable cache folder only costs the estimate
            return cls(None)

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:  # type: ignore[arg-type]
                raw = fh.read(MAX_BYTES + 1)
            if len(raw) > MAX_BYTES:
                return {}
            data = json.loads(raw.decode("utf-8"), parse_constant=lambda c: None)
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            return {}
        entries = data.get("cells") if isinstance(data, dict) else None
        out: dict[str, dict[str, Any]] = {}
        if not isinstance(entries, dict):
            return out
        for k, v in entries.items():
            if not isinstance(k, str) or not isinstance(v, dict):
                continue
            spq, fit, when = _number(v.get("s_per_query")), _number(v.get("fit")), _number(v.get("when"))
            if spq is not None and (fit is not None or v.get("fit") is None):
                out[k] = {"s_per_query": spq, "fit": fit, "when": when or 0.0}
        return out

    def get(self, k: str) -> tuple[float, float] | None:
        """``(seconds per query, fit seconds)`` measured for ``k`` (fit 0 if none was kept), or None."""
        with self._lock:
            e = self._data.get(k)
            return None if e is None else (e["s_per_query"], e["fit"] or 0.0)

    def put(self, k: str, s_per_query: float, fit: float | None) -> None:
        """Keep one cell's measurement and write the file.  The fit kept is the fastest seen:
        a first fit may include a one-time set-up (a model conversion) that later runs find
        cached; ``fit`` None (a fit known to hold a one-time set-up) keeps the one before."""
        spq, f = _number(s_per_query), _number(fit)
        if spq is None:
            return
        with self._lock:
            old = self._data.get(k)
            if old is not None and old["fit"] is not None:
                f = old["fit"] if f is None else min(f, old["fit"])
            self._data[k] = {"s_per_query": spq, "fit": f, "when": time.time()}
            if self.path is not None:  # another run may have written since: the newer entry wins
                for other, e in self._read().items():
                    if other not in self._data or e["when"] > self._data[other]["when"]:
                        self._data[other] = e
            if len(self._data) > MAX_ENTRIES:
                for old_key in sorted(self._data, key=lambda x: self._data[x]["when"])[: len(self._data) - MAX_ENTRIES]:
                    del self._data[old_key]
            self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".timings-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"cells": self._data}, fh, allow_nan=False, indent=0, sort_keys=True)
            os.replace(tmp, self.path)
        except (OSError, ValueError):  # a read-only or full cache only costs the next estimate
            try:
                os.unlink(tmp)
            except (OSError, UnboundLocalError):
                pass
