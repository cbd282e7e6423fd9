"""How a method is named in records and on boards: ``method[:variant][key=value,...]``, and the
canonical form of a cell's parameters that labels and ``--resume`` keys agree on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from cfbench.core.errors import UserError
from cfbench.core.generator import explicit_params
from cfbench.core.plugins import registry
from cfbench.core.safe_load import loads_toml

DEFAULT_VARIANT = "default"


#: a cell's parameters: sorted (key, value) pairs, hashable; ``()`` = the method's defaults
Params = tuple[tuple[str, Any], ...]


def params_key(params: Any) -> Params:
    """The canonical, hashable form of a parameter mapping (or of pairs, or ``None``)."""
    items = params.items() if isinstance(params, dict) else (params or ())
    return tuple(sorted((str(k), v) for k, v in items))


class Choice(NamedTuple):
    """A method variant with the parameters it runs with (what ``resolve_methods`` returns)."""

    method: str
    variant: str
    params: Params = ()


def fmt_value(v: Any) -> str:
    """A value as written in a label, readable back by ``suite.parse_scalar``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):

        bare = v and all(c.isalnum() or c in "-_./" for c in v) and parse_scalar(v, "") == v
        return v if bare else json.dumps(v)
    return repr(v)


def method_label(method: str, variant: str, params: Any = None) -> str:
    """``method[:variant][key=value,...]``: the one name of a cell's method on tables and boards.

    The default variant is left out; parameters the cell sets are listed, sorted by key.
    """
    base = method if variant == DEFAULT_VARIANT else f"{method}:{variant}"
    items = params_key(params)
    return base + ("[" + ",".join(f"{k}={fmt_value(v)}" for k, v in items) + "]" if items else "")


def canonical_params(method: str, variant: str, params: Any) -> Params:
    """A cell's parameters without those equal to the defaults its variant runs with.

    Cells get this form when they are resolved; it also reads back stored records and pairs
    (which may list defaults, written before they were left out) so that their labels and
    ``--resume`` keys agree with new cells.  Parameters of a method that is not installed, or
    that no longer validate, are kept as they are.
    """
    items = params_key(params)
    if not items:
        return ()
    spec = registry().generators.get(method)
    if spec is None:
        return items
    try:
        return params_key(explicit_params(spec, variant, dict(items)))
    except UserError:
        return items


def canonical_key(key: tuple) -> tuple:
    """A ``store.record_key`` with its parameters in ``canonical_params`` form."""
    method, variant, *rest, params = key
    return (method, variant, *rest, canonical_params(method, variant, params))


def canonical_groups(groups: Sequence[tuple[str, dict[str, Any]]]) -> list[list[Any]]:
    """``--param`` groups as run.json keeps them: a value equal to the default of every variant
    its target names is left out (and a group left empty), so it does not change a run's
    identity; the groups are otherwise kept as given."""
    reg = registry()
    out: list[list[Any]] = []
    for target, values in groups:
        name, _, variant = target.partition(":")
        spec = reg.generators.get(name)
        kept = dict(values)
        if spec is not None and (not variant or variant in spec.variants):
            try:
                per_variant = [explicit_params(spec, v, values)
                               for v in ([variant] if variant else spec.variants)]
                kept = {k: v for k, v in values.items() if any(k in e for e in per_variant)}
            except UserError:
                pass
        if kept:
            out.append([target, kept])
    return out


def record_label(rec: dict[str, Any]) -> str:
    """``method_label`` of a stored record (records without ``params`` ran with the defaults)."""
    params = canonical_params(rec["method"], rec["variant"], rec.get("params"))
    return method_label(rec["method"], rec["variant"], params)


def parse_scalar(raw: str, where: str) -> Any:
    """A TOML scalar (``3``, ``0.5``, ``true``, ``"text"``); a bare word is a string."""
    raw = raw.strip()
    if not raw:
        raise UserError(f"{where}: no value after '='")
    try:
        doc = loads_toml(f"x = {raw}", where, "value")
        value = doc["x"] if len(doc) == 1 else raw  # "1\ny = 2" is text, not two settings
    except UserError:
        value = raw
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where}: {raw!r} is not a finite number")
    if not isinstance(value, (str, int, float, bool)):
        raise UserError(f"{where}: expected a number, true/false or a string, got {raw!r}")
    return value
