"""Method selection: ``all`` or ``a,b:variant,c[key=value]`` and ``--param`` groups resolved to
validated ``Choice`` s, every parameter checked before any work starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cfbench.core.errors import UserError
from cfbench.core.generator import explicit_params
from cfbench.core.model import not_applicable
from cfbench.core.plugins import registry
from cfbench.records.labels import Choice, method_label, params_key, parse_scalar
from cfbench.tasks.classifier import classifier_kinds


def resolve_methods(selection: str, explicit_ok: bool = True,
                    params: Sequence[tuple[str, dict[str, Any]]] = ()
                    ) -> tuple[list[Choice], dict[str, str]]:
    """Parse ``all`` or ``a,b:variant,c[key=value]`` into ``Choice`` s plus skipped methods and why.

    ``all`` skips unavailable methods and variants (reported back), as does a method named
    without a variant for its unavailable variants; naming an unavailable method or variant
    is an error.
    An item's ``[key=value,...]`` are that item's parameters (a method listed twice with different
    parameters runs twice); ``params`` groups (from ``--param``) are merged into every choice
    their target (``method`` or ``method:variant``) names, the variant's values winning.  Every
    choice's parameters are validated against the method's declaration before any work starts.
    """

    reg = registry()
    items: list[tuple[str, str, dict[str, Any]]] = []
    skipped: dict[str, str] = {}
    entries = split_selection(selection)
    if not entries:
        raise UserError("--methods is empty; give 'all' or a comma-separated list of methods")
    for item, item_params in entries:
        if item == "all":
            for name, spec in sorted(reg.generators.items()):
                ok, hint = spec.status()
                if not ok:
                    skipped[name] = hint
                    continue
                items.extend((name, v, item_params)
                             for v in _available_variants(name, spec, spec.variants, skipped))
            continue
        name, _, variant = item.partition(":")
        spec = reg.generator(name)
        if variant and variant not in spec.variants:
            raise UserError(
                f"unknown variant {variant!r} of method {name!r}; valid choices: {', '.join(spec.variants)}"
            )
        ok, hint = spec.variant_status(variant) if variant else spec.status()
        if not ok:
            raise UserError(f"method {item!r} is unavailable: {hint}")
        items.extend((name, v, item_params) for v in
                     _available_variants(name, spec, [variant] if variant else spec.variants, skipped))
    return with_params(items, params, skipped), skipped


def with_params(items: Sequence[tuple[str, str, dict[str, Any]]],
                groups: Sequence[tuple[str, dict[str, Any]]],
                skipped: dict[str, str] | None = None) -> list[Choice]:
    """(method, variant, item params) with the ``groups`` merged in, validated, de-duplicated.

    A group whose target names no selected method is an error (a typo would otherwise be ignored).
    """
    reg = registry()
    used: set[str] = set()
    out: list[Choice] = []
    for method, variant, own in items:
        merged = dict(own)
        for target in (method, f"{method}:{variant}"):
            for t, values in groups:
                if t == target:
                    merged.update(values)
                    used.add(t)
        # validated; values equal to the variant's defaults left out (they are the same cell)
        choice = Choice(method, variant, params_key(explicit_params(reg.generator(method), variant,
                                                                    merged)))
        if choice not in out:
            out.append(choice)
    for target, _ in groups:
        if target not in used:
            name, _, variant = target.partition(":")
            spec = reg.generator(name)  # an unknown method: the standard one-line error
            if variant and variant not in spec.variants:
                raise UserError(f"--param {target}: unknown variant {variant!r} of method {name!r}; "
                                f"valid choices: {', '.join(spec.variants)}")
            why = f" (skipped: {skipped[name]})" if skipped and name in skipped else ""
            raise UserError(f"--param {target}: method {target!r} is not among the methods run{why}")
    return out


def applicable(pairs: Sequence[Choice], classifier: str, skipped: dict[str, str],
               kinds: frozenset[str] | None = None) -> list[Choice]:
    """The choices whose method needs only what the task's ``classifier`` offers (``kinds``,
    by default known from its name); the others go to ``skipped`` with why, as ``method``
    (or ``method:variant`` when only that variant's needs are not met)."""
    reg = registry()
    kinds = classifier_kinds(classifier) if kinds is None else kinds
    out = []
    for choice in pairs:
        spec = reg.generator(choice.method)
        why = not_applicable(spec.needs_of(choice.variant), kinds, classifier)
        if why is None:
            out.append(choice)
        elif choice.variant in spec.variant_needs:
            skipped[f"{choice.method}:{choice.variant}"] = why
        else:
            skipped[choice.method] = why
    return out


def _available_variants(name: str, spec: Any, variants: Sequence[str],
                        skipped: dict[str, str]) -> list[str]:
    """The variants whose own requirements are met; the others go to ``skipped`` as
    ``name:variant`` with the install hint."""
    out = []
    for v in variants:
        ok, hint = spec.variant_status(v)
        if ok:
            out.append(v)
        else:
            skipped[f"{name}:{v}"] = hint
    return out


Groups = tuple[tuple[str, dict[str, Any]], ...]


def parse_param(text: str) -> tuple[str, str, Any]:
    """``METHOD[:VARIANT].KEY=VALUE`` -> (target, key, value)."""
    lhs, eq, raw = text.partition("=")
    target, dot, key = lhs.strip().rpartition(".")
    if not eq or not dot or not target or not key.strip():
        raise UserError(f"--param {text!r}: expected METHOD[:VARIANT].KEY=VALUE, "
                        "e.g. dice:random.total_cfs=20")
    return target.strip(), key.strip(), parse_scalar(raw, f"--param {text}")


def _split_top(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside brackets and double quotes."""
    parts, depth, quoted, cur = [], 0, False, ""
    for i, c in enumerate(text):
        if c == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and c == "[":
            depth += 1
        elif not quoted and c == "]":
            depth -= 1
        if c == sep and depth == 0 and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    parts.append(cur)
    return parts


def split_selection(selection: str) -> list[tuple[str, dict[str, Any]]]:
    """``a,b:v,c:w[key=value,...]`` -> [(item, params)]; the bracket form is a method label."""
    out = []
    for part in _split_top(selection):
        part = part.strip()
        if not part:
            continue
        name, bracket, rest = part.partition("[")
        params: dict[str, Any] = {}
        if bracket:
            if not rest.endswith("]"):
                raise UserError(f"--methods item {part!r}: expected METHOD[:VARIANT][key=value,...]")
            for kv in _split_top(rest[:-1]):
                key, eq, raw = kv.partition("=")
                if not eq or not key.strip():
                    raise UserError(f"--methods item {part!r}: expected key=value, got {kv!r}")
                params[key.strip()] = parse_scalar(raw, f"--methods item {part}")
        out.append((name.strip(), params))
    return out


def selection_item(name: str, params: dict[str, Any]) -> str:
    """The ``--methods`` item for ``name`` (``method[:variant]``) with parameters: its label form."""

    return method_label(name, "default", params)


def group_params(items: Sequence[str]) -> Groups:
    """``--param`` flags grouped by target, in the order first given (a repeated key: last wins)."""
    groups: dict[str, dict[str, Any]] = {}
    for item in items:
        target, key, value = parse_param(item)
        groups.setdefault(target, {})[key] = value
    return tuple(groups.items())
