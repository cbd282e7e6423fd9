"""Parse untrusted TOML and JSON with limits: size, nesting depth, and one-line errors.

Suite files, task specs, ``--param`` values, run folders and leaderboard boards all come from
users (or other people's runs).  A parser fed a 200,000-deep ``[[[[...`` raises RecursionError, a
huge file exhausts memory, and dotted keys (``a.b.c...``) build deep tables without recursing at
all, so later code that walks them crashes.  Every such input is a ``UserError`` here instead:
one line naming the input and what would be valid.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from cfbench.core.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: the largest TOML file read (suite files and task specs are a few KiB)
MAX_TOML_BYTES = 1 << 20
#: the largest JSON text parsed (run.json, summaries, boards; records are read line by line)
MAX_JSON_BYTES = 64 << 20
#: tables/arrays nested deeper than this are refused (real inputs nest fewer than 10 levels)
MAX_DEPTH = 100


#: strings (closed or not, so the scan never backtracks) and comments, for ``_deepest_key``
_STRINGS = re.compile(r'"""(?:[^\\]|\\.)*?(?:"""|\\?\Z)|\'\'\'.*?(?:\'\'\'|\Z)'
                      r'|"(?:[^"\\\n]|\\.)*\\?(?:"|\n|\Z)|\'[^\'\n]*(?:\'|\n|\Z)|#[^\n]*', re.S)
#: a dotted key (``a.b."c"`` once strings are ``s``), matched whole from its first part
_DOTTED = re.compile(r"(?<![\w-])[\w-]+(?:[ \t]*\.[ \t]*[\w-]+)*")


def _deepest_key(text: str) -> int:
    """The most parts of any dotted key in TOML ``text`` (linear time, before parsing).

    tomllib takes memory quadratic in a dotted key's length (``a.a.a...`` of 200,000 parts
    exhausts the machine), so long keys must be refused before the parser sees them.
    """
    flat = _STRINGS.sub(lambda m: "" if m.group().startswith("#") else "s", text)
    return max((m.group().count(".") + 1 for m in _DOTTED.finditer(flat)), default=0)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def read_limited(path: str | Path, what: str, limit: int) -> bytes:
    """The bytes of ``path``, refusing files larger than ``limit`` before reading them whole."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise UserError(f"{path}: {what} is larger than {_mib(limit)}; valid: at most "
                        f"{_mib(limit)}")
    return data


def check_depth(value: Any, where: str, limit: int = MAX_DEPTH) -> Any:
    """``value`` unchanged if its dicts/lists nest at most ``limit`` deep (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth >= limit:
            raise UserError(f"{where}: nested deeper than {limit} levels; valid: at most {limit}")
        stack.extend((c, depth + 1) for c in children)
    return value


def loads_toml(data: bytes | str, where: str, what: str) -> dict[str, Any]:
    """Parse TOML text (bytes must be UTF-8) with the size and depth limits; ``where`` starts errors."""
    if len(data) > MAX_TOML_BYTES:
        raise UserError(f"{where}: {what} is larger than {_mib(MAX_TOML_BYTES)}; valid: at most "
                        f"{_mib(MAX_TOML_BYTES)}")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"{where}: not a valid TOML {what} (not UTF-8 text: byte "
                            f"{exc.object[exc.start]:#04x} at offset {exc.start})") from None
    if _deepest_key(data) > MAX_DEPTH:
        raise UserError(f"{where}: not a valid TOML {what} (a dotted key of more than {MAX_DEPTH} "
                        f"parts; valid: at most {MAX_DEPTH})")
    try:
        raw = tomllib.loads(data)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{where}: not a valid TOML {what} ({exc})") from None
    except RecursionError:
        raise UserError(f"{where}: not a valid TOML {what} (nested too deeply; valid: at most "
                        f"{MAX_DEPTH} levels)") from None
    return check_depth(raw, where)


def load_toml(path: str | Path, what: str) -> dict[str, Any]:
    """Read and parse the TOML file ``path`` (``what``: e.g. ``"suite file"``) with limits."""
    return loads_toml(read_limited(path, what, MAX_TOML_BYTES), str(path), what)


def load_json_text(text: str | bytes, what: str, *, strict: bool = True) -> Any:
    """Parse JSON text with size and depth limits; ``what`` names the input in errors.

    ``strict`` refuses the non-standard ``NaN``/``Infinity`` tokens (cfbench never writes them).
    """
    if len(text) > MAX_JSON_BYTES:
        raise UserError(f"{what}: larger than {_mib(MAX_JSON_BYTES)}; valid: JSON of at most "
                        f"{_mib(MAX_JSON_BYTES)}")
    try:
        value = json.loads(text, parse_constant=reject_constant if strict else None)
    except RecursionError:
        raise UserError(f"{what}: not valid JSON (nested too deeply; valid: at most {MAX_DEPTH} "
                        "levels)") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise UserError(f"{what}: not valid JSON ({exc})") from None
    return check_depth(value, what)


def reject_constant(token: str) -> Any:
    """``json.loads``'s ``parse_constant`` for strict JSON: ``NaN``/``Infinity`` are errors."""
    raise ValueError(f"non-standard JSON token {token}")
