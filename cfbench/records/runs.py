"""Run folders: each run its own ``runs/<task>/<UTC timestamp>`` by default, the latest one
found again (``cfbench leaderboard`` with no argument, ``--resume`` without ``--out``) and the
method list a resumed run keeps.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Any

from cfbench.core.errors import UserError
from cfbench.core.plugins import registry
from cfbench.core.strict_json import read_json
from cfbench.records.labels import Choice, canonical_params
from cfbench.records.store import has_records, read_run_info

#: where runs go when no ``--out`` is given (relative to the working directory)
RUNS = Path("runs")
STAMP = "%Y%m%dT%H%M%SZ"


#: file and folder names cfbench derives from user text stay this short (NAME_MAX is 255 bytes)
MAX_FILE_NAME = 120


def short_name(text: str, limit: int = MAX_FILE_NAME) -> str:
    """``text`` if it fits in ``limit`` characters, else its start and a hash of the whole, so
    that long names (a 5,000-character ``--param`` value) stay distinct and the OS accepts them."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{text[:limit - 17]}-{digest}"


def _safe(name: str) -> str:
    return short_name(re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "task")


def new_run_dir(task: str, root: Path = RUNS, now: dt.datetime | None = None) -> Path:
    """``root/<task>/<UTC timestamp>`` that does not exist yet (``-2``, ``-3`` … on a clash)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    base = Path(root) / _safe(task) / now.strftime(STAMP)
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _runs(root: Path, task: str | None) -> list[Path]:
    root = Path(root)
    tasks = [root / _safe(task)] if task else ([p for p in root.iterdir() if p.is_dir()]
                                              if root.is_dir() else [])
    out = []
    for t in tasks:
        if t.is_dir():
            out += [r for r in t.iterdir() if r.is_dir() and (r / "run.json").is_file()]
    return out


def latest_run(root: Path = RUNS, task: str | None = None) -> Path | None:
    """The newest run folder under ``root`` (of ``task`` if given): by its timestamp name."""
    runs = _runs(root, task)
    if not runs:
        return None
    return max(runs, key=lambda p: (p.name, p.stat().st_mtime))


def pinned_pairs(out: Path, methods: str | None) -> tuple[str, list[Any] | None]:
    """For ``--resume``: ``(methods, pairs)`` of the run in ``out``.

    The (method, variant) list the run started with is kept, so plugins installed since do not
    join it; an explicit ``--methods`` that differs from the run's is refused.  ``pairs`` is
    ``None`` for a run folder written before the list was stored; otherwise ``runner.Choice`` s
    (method, variant and the cell's parameters).
    """

    if not has_records(out) and not (Path(out) / "run.json").is_file():
        return methods or "all", None  # nothing to resume yet: a fresh run in that folder
    info = read_run_info(out)
    old = (info.get("config") or {}).get("methods")
    if methods is not None and old is not None and methods != old:
        raise UserError(
            f"cannot resume {out}: --methods was {old!r}, now {methods!r}; leave --methods out "
            "to resume the same methods, or start a new run"
        )
    pairs = info.get("pairs")
    if pairs is None:
        return old or methods or "all", None
    return old or methods or "all", [
        Choice(p[0], p[1], canonical_params(p[0], p[1], p[2] if len(p) > 2 else ())) for p in pairs]


def earlier_skipped(out: Path) -> dict[str, str]:
    """For ``--resume``: the methods the run skipped when it started, and why (from its
    ``summary.json``), so the resumed run's summary still names them; ``{}`` when unreadable."""
    try:
        summary = read_json(Path(out) / "summary.json", strict=False)
    except UserError:
        return {}
    skipped = summary.get("skipped_methods") if isinstance(summary, dict) else None
    if not isinstance(skipped, dict):
        return {}
    return {str(k): str(v) for k, v in skipped.items() if isinstance(v, str)}


def check_pairs(pairs: list[Any]) -> None:
    """Every pinned (method, variant) is still installed and available, else one clear line."""

    reg = registry()
    for name, variant, *_ in pairs:
        if name not in reg.generators:
            raise UserError(f"cannot resume: method {name!r} of this run is no longer installed")
        ok, hint = reg.generators[name].variant_status(variant)
        if not ok:
            raise UserError(f"cannot resume: {name}:{variant} of this run is unavailable: {hint}")
