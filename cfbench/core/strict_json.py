"""Strict JSON for everything cfbench writes: ``null`` for NaN/±inf, never a crash on odd data.

``json.dumps`` writes ``NaN``/``Infinity`` tokens that strict parsers (``jq``, browsers) reject,
and raises on circular references, non-string keys or objects it does not know.  ``json_safe``
turns any value into plain JSON data (dict with string keys, list, str, finite float, int, bool,
None) and says what it had to change; ``dumps`` writes the result with ``allow_nan=False``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from cfbench.core.errors import UserError
from cfbench.core.safe_load import MAX_JSON_BYTES, load_json_text, read_limited, reject_constant

#: nesting deeper than this is cut (a plugin's ``extra`` is metadata, not a data store)
MAX_DEPTH = 64
#: integers beyond this many digits cannot even be turned into text by Python; stored as a float
MAX_INT_DIGITS = 300
_INT_LIMIT = 10**MAX_INT_DIGITS


def json_safe(obj: Any, notes: list[str] | None = None) -> Any:
    """``obj`` as strict-JSON data; every lossy change is described in ``notes`` (if given).

    NaN and ±inf become ``None``; numpy scalars and arrays become Python numbers and lists;
    tuples and sets become lists; non-string keys become their ``str``; circular references,
    too-deep nesting and unknown objects become a ``"<…>"`` placeholder string.
    """
    return _safe(obj, notes if notes is not None else [], set(), 0, "")


def _note(notes: list[str], text: str) -> None:
    if len(notes) < 20 and text not in notes:
        notes.append(text)


def _safe(o: Any, notes: list[str], active: set[int], depth: int, where: str) -> Any:
    if o is None or isinstance(o, (bool, str)):
        return o
    if isinstance(o, int):
        if abs(o) >= _INT_LIMIT:
            _note(notes, f"{where or 'value'}: integer too large, stored as null")
            return None
        return int(o)
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, np.generic):
        try:
            return _safe(o.item(), notes, active, depth, where)
        except Exception:  # noqa: BLE001 - an exotic numpy scalar
            return _placeholder(o, notes, where)
    if depth >= MAX_DEPTH:
        _note(notes, f"{where}: nested deeper than {MAX_DEPTH} levels, cut")
        return "<too deep>"
    if isinstance(o, (dict, list, tuple, set, frozenset, np.ndarray)):
        if id(o) in active:
            _note(notes, f"{where or 'value'}: circular reference replaced")
            return "<circular reference>"
        active.add(id(o))
        try:
            if isinstance(o, dict):
                out = {}
                for k, v in list(o.items()):
                    if not isinstance(k, str):
                        _note(notes, f"{where}: non-string key {type(k).__name__} turned into text")
                        k = _key_text(k)
                    out[k] = _safe(v, notes, active, depth + 1, f"{where}.{k}" if where else k)
                return out
            items = o
            if isinstance(o, np.ndarray):
                if o.dtype.kind not in "biuf":
                    return _placeholder(o, notes, where)
                items = o.tolist()
            return [_safe(v, notes, active, depth + 1, where) for v in items]
        finally:
            active.discard(id(o))
    return _placeholder(o, notes, where)


def _key_text(k: Any) -> str:
    try:
        return str(k)[:200]
    except Exception:  # noqa: BLE001 - a key whose __str__ raises
        return f"<{type(k).__name__}>"


def _placeholder(o: Any, notes: list[str], where: str) -> str:
    name = type(o).__name__
    _note(notes, f"{where or 'value'}: {name} is not JSON data, replaced")
    return f"<{name}>"


def dumps(obj: Any, **kw: Any) -> str:
    """Strict JSON text of ``obj`` (``json_safe`` first, then ``allow_nan=False``)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kw)


def loads_strict(text: str) -> Any:
    """Parse ``text`` as standard JSON only (``NaN``/``Infinity`` tokens are an error)."""
    return json.loads(text, parse_constant=reject_constant)


def read_json(path: str | Path, *, strict: bool = True, fix: str = "") -> Any:
    """The JSON file ``path`` (a run folder's or a board's), parsed within the size and nesting
    limits of :mod:`cfbench.core.safe_load`; ``strict`` refuses ``NaN``/``Infinity`` tokens (files
    written before cfbench wrote strict JSON need ``strict=False``).  Anything wrong is one
    ``UserError`` line naming the file, followed by ``fix`` (what to do about it) when given."""
    try:
        return load_json_text(read_limited(path, "the file", MAX_JSON_BYTES), str(path),
                              strict=strict)
    except UserError as exc:
        if not fix:
            raise
        raise UserError(f"{exc}; {fix}") from None
