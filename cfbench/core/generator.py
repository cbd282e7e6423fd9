"""The generator contract: what a plugin declares, what ``fit`` receives, what ``generate`` returns.

A generator is a small scikit-learn-shaped object: ``fit(context)`` once per task and seed, then
``generate(queries, targets, k, budget)`` (``budget``: CPU seconds per query, ``cfbench.core.budget``).
The runner validates every result, so a generator that returns garbage is recorded as
``invalid_output`` rather than trusted.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from cfbench.core.errors import UserError
from cfbench.core.model import PROBA_ONLY, ModelView
from cfbench.core.schema import FeatureSchema

STATUSES = ("ok", "not_found", "error", "timeout", "invalid_output")
DISTRIBUTION = "cfbench-harness"


@dataclass(frozen=True)
class Capabilities:
    """What a generator can do; the runner and metrics read these, never the plugin's code."""

    multiple: bool = False  # can return k > 1 CFs per query
    constraints: bool = False  # honours immutables, bounds and directions from the schema
    needs_training_data: bool = True
    stochastic: bool = False
    batch_size: int | None = 1  # queries per generate() call; None = all at once


@dataclass
class FitContext:
    """Everything a generator may learn from: the training split, the model and the schema."""

    X_train: pd.DataFrame
    y_train: np.ndarray
    predict_proba: Callable[[pd.DataFrame], np.ndarray]
    schema: FeatureSchema
    seed: int
    task_name: str
    class_names: dict[int, str]
    classes: tuple[int, ...] = (0, 1)
    cache_dir: Path | None = None
    task_description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    #: the classifier's kinds, encoded space and mirrors (``cfbench.core.model``); None when the
    #: caller built the context by hand
    model: ModelView | None = None

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Class predictions from ``predict_proba`` (argmax over ``classes``)."""
        proba = self.predict_proba(X)
        return np.asarray(self.classes)[np.argmax(proba, axis=1)]


@dataclass
class QueryResult:
    """Per-query output: up to k CFs (rows in schema order), a status and why."""

    status: str
    cfs: pd.DataFrame | None = None
    reason: str = ""
    raw: str | None = None  # free text kept for generators that parse model output
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, cfs: pd.DataFrame, **kw: Any) -> QueryResult:
        return cls("ok", cfs, **kw)

    @classmethod
    def not_found(cls, reason: str = "no counterfactual found", **kw: Any) -> QueryResult:
        return cls("not_found", None, reason, **kw)

    @classmethod
    def error(cls, reason: str, **kw: Any) -> QueryResult:
        return cls("error", None, reason, **kw)


class Generator(Protocol):
    """The object a factory returns."""

    def fit(self, context: FitContext) -> Generator: ...

    def generate(
        self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float
    ) -> Sequence[QueryResult]: ...


PARAM_TYPES = (int, float, str, bool)


@dataclass(frozen=True)
class Param:
    """One parameter a method's factory accepts: what the CLI, suite files and docs show.

    ``type`` is ``int``, ``float``, ``str`` or ``bool``; a ``None`` default means "unset" (the
    method picks), and ``None`` is then also accepted as a value.  ``choices`` closes the set of
    values; ``minimum``/``maximum`` bound numbers (inclusive); ``exclusive_minimum`` is a lower
    bound the value must exceed (``exclusive_minimum=0``: a positive number), for parameters
    whose constructor refuses the bound itself.
    """

    name: str
    type: type
    default: Any
    description: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None

    def type_name(self) -> str:
        return self.type.__name__ + (" or unset" if self.default is None else "")

    def allowed(self) -> str:
        """The valid values beyond the type, e.g. ``binary, linear`` or ``>= 1``."""
        if self.choices is not None:
            return ", ".join(map(str, self.choices))
        lower = (f"> {self.exclusive_minimum:g}" if self.exclusive_minimum is not None
                 else f">= {self.minimum:g}" if self.minimum is not None else "")
        if self.minimum is not None and self.maximum is not None and self.exclusive_minimum is None:
            return f"{self.minimum:g} to {self.maximum:g}"
        upper = f"<= {self.maximum:g}" if self.maximum is not None else ""
        return ", ".join(b for b in (lower, upper) if b)

    def below_lower_bound(self, value: float) -> bool:
        """Whether a number is under ``minimum`` or not above ``exclusive_minimum``."""
        return ((self.minimum is not None and value < self.minimum)
                or (self.exclusive_minimum is not None and value <= self.exclusive_minimum))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type.__name__, "default": self.default,
                "description": self.description,
                "choices": list(self.choices) if self.choices is not None else None,
                "minimum": self.minimum, "exclusive_minimum": self.exclusive_minimum,
                "maximum": self.maximum}


def params_markdown(specs: Sequence[GeneratorSpec]) -> str:
    """The parameters of ``specs`` as one Markdown table (what docs/writing-a-plugin.md shows)."""
    lines = ["| method | parameter | type | default | valid | description |",
             "|---|---|---|---|---|---|"]
    groups: dict[tuple[Param, ...], list[str]] = {}
    for spec in sorted(specs, key=lambda s: s.name):  # methods declaring the same params share rows
        groups.setdefault(spec.params, []).append(spec.name)
    for params, names in groups.items():
        name = ", ".join(names)
        if not params:
            lines.append(f"| {name} | – | | | | takes no parameters |")
        for p in params:
            default = "unset" if p.default is None else (
                str(p.default).lower() if isinstance(p.default, bool) else f"`{p.default}`")
            cells = (name, f"`{p.name}`", p.type.__name__, default, p.allowed(),
                     p.description)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _well_typed(p: Param, value: Any) -> bool:
    if value is None:
        return p.default is None
    if p.type is bool:
        return isinstance(value, bool)
    if p.type is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if p.type is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, p.type)


def unknown_param(method: str, key: str, valid: Any) -> Exception:
    """The one-line error for a parameter ``method`` does not declare, listing ``valid`` names."""

    names = ", ".join(sorted(valid)) or "(none: this method takes no parameters)"
    return UserError(f"unknown parameter {key!r} of method {method!r}; valid parameters: {names}")


def validate_params(spec: GeneratorSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` checked against ``spec.params``: the one home of parameter validation.

    Returns the values with ints widened to float where a float is declared.  An unknown key,
    an ill-typed value, a value outside ``choices`` or the bounds raises a one-line
    ``UserError`` naming the method, the key and what would be valid.
    """

    declared = {p.name: p for p in spec.params}
    out: dict[str, Any] = {}
    for key, value in values.items():
        p = declared.get(key)
        if p is None:
            raise unknown_param(spec.name, key, declared)
        where = f"parameter {key!r} of method {spec.name!r}"
        if not _well_typed(p, value):
            raise UserError(f"{where}: expected {p.type_name()}, got {value!r} "
                            f"({type(value).__name__})")
        given = value  # as the user wrote it, for the messages below
        if p.type is float and value is not None:
            value = float(value)
        if p.choices is not None and value is not None and value not in p.choices:
            raise UserError(f"{where}: got {value!r}; valid choices: "
                            f"{', '.join(map(str, p.choices))}")
        if value is not None and p.type in (int, float) and (
            p.below_lower_bound(value) or (p.maximum is not None and value > p.maximum)
        ):
            if p.exclusive_minimum is not None:
                lo = f"({p.exclusive_minimum:g}"
            else:
                lo = "[-inf" if p.minimum is None else f"[{p.minimum:g}"
            hi = "inf]" if p.maximum is None else f"{p.maximum:g}]"
            raise UserError(f"{where}: got {given!r}; expected a number in {lo}, {hi}")
        out[key] = value
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as parameter values: ``True`` is not ``1``, ``1`` is ``1.0``."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def explicit_params(spec: GeneratorSpec, variant: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` validated, without those equal to the default ``variant`` runs with.

    The default is the declared one, or the variant's own (``spec.variant_defaults``).  Leaving
    such a value out changes nothing the factory does, so a cell's identity and label list only
    the parameters that make it differ from the method's defaults (``dice:random`` and
    ``dice:random[posthoc_sparsity_algorithm=binary]`` are one cell).
    """
    defaults = {p.name: p.default for p in spec.params}
    defaults.update(spec.variant_defaults.get(variant, {}))
    return {k: v for k, v in validate_params(spec, values).items()
            if not _same(v, defaults.get(k))}


@dataclass(frozen=True)
class GeneratorSpec:
    """A plugin's declaration of one method.

    ``factory(variant, **params)`` builds an unfitted generator.  ``requires`` lists importable
    module names the method needs; if any is missing the method is listed as unavailable with
    ``pip install 'cfbench-harness[<extra>]'``.  ``preload`` names modules that are safe to
    import ahead of time in the workers' fork server (no threads, no network at import), so
    each worker starts with them loaded instead of importing them itself.  ``available`` may be a callable returning
    ``(ok, hint)`` for conditions beyond imports (for example, an API endpoint configured).
    ``params`` declares every keyword the factory accepts besides ``variant``; ``build`` checks
    values against it (``validate_params``), so a factory never sees an unknown key.
    ``variant_defaults`` holds, per variant, the parameters whose default that variant changes
    (e.g. a ``fast`` preset), so a value equal to the variant's default is recognised as one
    (``explicit_params``).

    ``variant_requires`` adds modules that only some variants need (e.g. NICE's ``plausibility``
    needs torch): such a variant is listed as unavailable on its own.  ``cost`` is the expected
    seconds per query on one core, per variant (``"*"`` for all), and ``anytime`` names the
    variants that search until the per-query budget runs out; the scheduler orders cells and
    estimates durations from these hints (``cfbench.execution.schedule``), nothing else depends on them.
    ``setup`` names a first-use set-up that cells of this method share with others naming the
    same key (e.g. converting a model into the cache): the scheduler starts one such cell and
    holds the others until it has fitted, running other cells meanwhile, so no slot idles
    waiting for a set-up another cell is doing.  ``first_use`` gives, per variant, the seconds
    its first cell may spend on a one-time set-up it caches (a fine-tune): the scheduler starts
    such a cell early rather than last.

    ``needs`` names what the method uses of the task's classifier (``cfbench.core.model.KINDS``:
    ``proba``, ``gradients``, ``linear``, ``trees``); ``variant_needs`` replaces it for some
    variants.  On a task whose classifier lacks one, the method (or variant) is not applicable:
    skipped before any work, with the reason.
    """

    name: str
    factory: Callable[..., Generator]
    variants: tuple[str, ...] = ("default",)
    capabilities: Capabilities = field(default_factory=Capabilities)
    extra: str | None = None
    requires: tuple[str, ...] = ()
    preload: tuple[str, ...] = ()
    description: str = ""
    available: Callable[[], tuple[bool, str]] | None = None
    plugin: str = ""
    params: tuple[Param, ...] = ()
    variant_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    variant_requires: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    anytime: tuple[str, ...] = ()
    setup: str = ""
    first_use: dict[str, float] = field(default_factory=dict)
    needs: frozenset[str] = PROBA_ONLY
    variant_needs: dict[str, frozenset[str]] = field(default_factory=dict)

    def needs_of(self, variant: str) -> frozenset[str]:
        """What ``variant`` needs of the classifier (its own ``variant_needs`` or ``needs``)."""
        return frozenset(self.variant_needs.get(variant, self.needs))

    def build(self, variant: str, params: Mapping[str, Any] | None = None) -> Generator:
        """An unfitted generator for ``variant`` with ``params`` validated against ``self.params``."""
        return self.factory(variant, **validate_params(self, params or {}))

    def missing_modules(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def install_hint(self) -> str:
        if self.extra:
            return f"pip install '{DISTRIBUTION}[{self.extra}]'"
        return "pip install " + " ".join(self.requires)

    def status(self) -> tuple[bool, str]:
        """``(available, hint)``: hint is the exact command or setting that would make it available."""
        missing = self.missing_modules()
        if missing:
            return False, f"missing {', '.join(missing)}: {self.install_hint()}"
        if self.available is not None:
            try:
                return self.available()
            except Exception as exc:  # a broken availability check must not break listing
                return False, f"availability check failed: {exc}"
        return True, ""

    def variant_status(self, variant: str) -> tuple[bool, str]:
        """``(available, hint)`` of one variant: the method's status, then its own modules."""
        ok, hint = self.status()
        if not ok:
            return ok, hint
        missing = [m for m in self.variant_requires.get(variant, ())
                   if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"missing {', '.join(missing)}: {self.install_hint()}"
        return True, ""
