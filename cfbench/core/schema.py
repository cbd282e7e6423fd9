"""Feature schema: kinds, units, plausible bounds and the constraints a counterfactual must respect."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cfbench.core.errors import UserError

KINDS = ("numeric", "categorical", "ordinal")
DIRECTIONS = ("any", "increase-only", "decrease-only")


@dataclass(frozen=True)
class Feature:
    """One column of a task: what it is, where it may plausibly lie and how it may change.

    Categorical and ordinal features are stored as numeric codes; ``categories`` lists the valid
    codes and ``labels`` their words (used by prompts and reports).
    """

    name: str
    kind: str = "numeric"
    unit: str = ""
    lower: float | None = None
    upper: float | None = None
    mutable: bool = True
    direction: str = "any"
    actionable: bool = False
    categories: tuple[float, ...] = ()
    labels: tuple[str, ...] = ()
    integer: bool = False
    description: str = ""

    @property
    def is_categorical(self) -> bool:
        return self.kind == "categorical"


@dataclass(frozen=True)
class FeatureSchema:
    """The ordered list of features of a task, with vectorised views the metrics use."""

    features: tuple[Feature, ...] = field(default_factory=tuple)

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.features)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def immutable(self) -> list[str]:
        return [f.name for f in self.features if not f.mutable]

    @property
    def mutable(self) -> list[str]:
        return [f.name for f in self.features if f.mutable]

    @property
    def actionable(self) -> list[str]:
        return [f.name for f in self.features if f.actionable]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    @property
    def continuous(self) -> list[str]:
        """Numeric and ordinal features: the ones with a meaningful distance."""
        return [f.name for f in self.features if f.kind != "categorical"]

    def mask(self, attr: str, value: Any = True) -> np.ndarray:
        """Boolean array over features where ``getattr(feature, attr) == value``."""
        return np.array([getattr(f, attr) == value for f in self.features], dtype=bool)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds as float arrays (NaN where a bound is open)."""
        lo = np.array([np.nan if f.lower is None else f.lower for f in self.features], float)
        hi = np.array([np.nan if f.upper is None else f.upper for f in self.features], float)
        return lo, hi

    def directions(self) -> np.ndarray:
        """+1 increase-only, -1 decrease-only, 0 any; one entry per feature."""
        code = {"any": 0, "increase-only": 1, "decrease-only": -1}
        return np.array([code[f.direction] for f in self.features], dtype=int)

    def with_data_bounds(self, X: pd.DataFrame) -> FeatureSchema:
        """Fill open bounds from the observed range of ``X`` (used when a spec leaves them out)."""
        out = []
        for f in self.features:
            col = X[f.name]
            lower = float(col.min()) if f.lower is None else f.lower
            upper = float(col.max()) if f.upper is None else f.upper
            cats = f.categories
            if f.kind != "numeric" and not cats:
                cats = tuple(float(v) for v in np.unique(col.dropna()))
            out.append(_replace(f, lower=lower, upper=upper, categories=cats))
        return FeatureSchema(tuple(out))

    def to_dict(self) -> list[dict[str, Any]]:
        return [
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in f.__dict__.items()}
            for f in self.features
        ]

    @classmethod
    def from_records(cls, records: list[Mapping[str, Any]], where: str = "features") -> FeatureSchema:
        """Validate a list of feature tables (as read from TOML) into a schema.

        ``where`` prefixes error messages, e.g. ``"tasks/heart.toml: features"``.
        """
        allowed = set(Feature.__dataclass_fields__)
        seen: set[str] = set()
        feats = []
        for i, rec in enumerate(records):
            loc = f"{where}[{i}]"
            if not isinstance(rec, Mapping):
                raise UserError(f"{loc}: expected a table of feature fields, got {type(rec).__name__}")
            unknown = set(rec) - allowed
            if unknown:
                raise UserError(
                    f"{loc}: unknown key {sorted(unknown)[0]!r}; valid keys: {', '.join(sorted(allowed))}"
                )
            name = rec.get("name")
            if not isinstance(name, str) or not name:
                raise UserError(f"{loc}.name: expected a non-empty string, got {name!r}")
            if name in seen:
                raise UserError(f"{loc}.name: duplicate feature {name!r}")
            seen.add(name)
            kind = rec.get("kind", "numeric")
            if kind not in KINDS:
                raise UserError(f"{loc}.kind: got {kind!r}; expected one of {', '.join(KINDS)}")
            direction = rec.get("direction", "any")
            if direction not in DIRECTIONS:
                raise UserError(
                    f"{loc}.direction: got {direction!r}; expected one of {', '.join(DIRECTIONS)}"
                )
            for key in ("lower", "upper"):
                v = rec.get(key)
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise UserError(f"{loc}.{key}: expected a number, got {v!r}")
                if v is not None and not np.isfinite(v):  # nan would silently disable the bound
                    raise UserError(
                        f"{loc}.{key}: expected a finite number, got {v!r} "
                        "(leave the key out for a bound taken from the data)"
                    )
            lo, hi = rec.get("lower"), rec.get("upper")
            if lo is not None and hi is not None and lo > hi:
                raise UserError(f"{loc}: lower bound {lo} is above upper bound {hi}")
            for key, default in (("mutable", True), ("actionable", False), ("integer", False)):
                v = rec.get(key, default)
                if not isinstance(v, bool):
                    raise UserError(f"{loc}.{key}: expected true or false, got {v!r}")
            cats = rec.get("categories", [])
            if not isinstance(cats, list) or not all(
                isinstance(c, (int, float)) and not isinstance(c, bool) for c in cats
            ):
                raise UserError(f"{loc}.categories: expected a list of numeric codes, got {cats!r}")
            if not all(np.isfinite(c) for c in cats) or len(set(cats)) != len(cats):
                raise UserError(f"{loc}.categories: expected distinct finite codes, got {cats!r}")
            labels = rec.get("labels", [])
            if labels and len(labels) != len(cats):
                raise UserError(
                    f"{loc}.labels: expected {len(cats)} labels (one per category), got {len(labels)}"
                )
            feats.append(
                Feature(
                    name=name,
                    kind=kind,
                    unit=str(rec.get("unit", "")),
                    lower=None if lo is None else float(lo),
                    upper=None if hi is None else float(hi),
                    mutable=rec.get("mutable", True),
                    direction=direction,
                    actionable=rec.get("actionable", False),
                    categories=tuple(float(c) for c in cats),
                    labels=tuple(str(x) for x in labels),
                    integer=rec.get("integer", kind != "numeric"),
                    description=str(rec.get("description", "")),
                )
            )
        if not feats:
            raise UserError(f"{where}: expected at least one [[features]] table")
        return cls(tuple(feats))


def _replace(f: Feature, **changes: Any) -> Feature:
    d = dict(f.__dict__)
    d.update(changes)
    return Feature(**d)
