"""Datasets: what a loader returns, the checks every loaded table passes, and the built-in loaders.

``feature_matrix`` is the one door from a loader's table to the task: it turns the spec's
columns into floats and refuses (or, by the declared policy, drops or imputes) what a model
cannot use, with one line naming the column, the count and an example row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cfbench.core.errors import UserError
from cfbench.core.notices import warn
from cfbench.core.schema import Feature, FeatureSchema

MISSING_POLICIES = ("error", "drop", "impute-median")


@dataclass
class Dataset:
    """A feature table with binary labels and where it came from.

    ``source`` goes into every result row's provenance, so it must say which data was used
    (a file path and checksum, a release folder, or a generator and its seed).
    """

    X: pd.DataFrame
    y: np.ndarray
    class_names: dict[int, str]
    source: str
    notes: dict[str, Any] = field(default_factory=dict)
    #: what to do with missing feature cells: ``error``, ``drop`` (the rows) or ``impute-median``
    missing: str = "error"
    #: optional row identifiers (an id column), used to name example rows in messages
    ids: np.ndarray | None = None

    def fingerprint(self) -> str:
        """SHA-256 of the feature table and labels, for cache keys and provenance."""
        h = hashlib.sha256()
        h.update(pd.util.hash_pandas_object(self.X, index=False).values.tobytes())
        h.update(np.asarray(self.y, dtype=np.int64).tobytes())
        h.update(",".join(map(str, self.X.columns)).encode())
        return h.hexdigest()


def _row(pos: int, ids: np.ndarray | None) -> str:
    return f"row {pos + 1}" + (f" (id {ids[pos]})" if ids is not None else "")


def _codes_from_labels(col: pd.Series, f: Feature) -> pd.Series | None:
    """Text categories mapped to their codes through the feature's ``labels`` (None: not text)."""
    if not f.labels:
        return None
    lookup = {lab.strip(): code for lab, code in zip(f.labels, f.categories, strict=True)}
    text = col.astype("string").str.strip()
    mapped = text.map(lookup)
    numeric = pd.to_numeric(text.where(mapped.isna()), errors="coerce").astype(float)
    return mapped.astype(float).fillna(numeric)


def _numeric_column(col: pd.Series, f: Feature, where: str, ids: np.ndarray | None) -> pd.Series:
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return col.astype(float)
    present = col.notna() & (col.astype("string").str.strip() != "")
    out = _codes_from_labels(col, f) if f.kind != "numeric" else None
    if out is None:
        out = pd.to_numeric(col.astype("string").str.strip(), errors="coerce").astype(float)
    bad = present & out.isna()
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        valid = f"; valid labels: {', '.join(f.labels)}" if f.labels else ""
        raise UserError(
            f"{where}: column {f.name!r} has {int(bad.sum())} non-numeric cell(s), e.g. "
            f"{_row(pos, ids)}: {col.iloc[pos]!r}{valid}"
        )
    return out


def feature_matrix(
    dataset: Dataset, schema: FeatureSchema, where: str, hint: str = ""
) -> tuple[pd.DataFrame, np.ndarray]:
    """The schema's columns as a float table and the labels, checked for every loader.

    Non-numeric cells (text categories are mapped through the feature's ``labels``) and
    infinities are refused; missing cells are refused, or the rows dropped, or the cells imputed
    (median; most frequent code for categorical and ordinal features) by ``dataset.missing``.
    Data values outside a feature's declared ``categories`` are an error; declared codes that
    never occur are only warned about (a rare category may be absent from one extract).
    """
    policy = dataset.missing
    if policy not in MISSING_POLICIES:
        raise UserError(f"{where}: missing = {policy!r}; valid choices: {', '.join(MISSING_POLICIES)}")
    ids = None if dataset.ids is None else np.asarray(dataset.ids)
    cols = {}
    for f in schema:
        col = _numeric_column(dataset.X[f.name].reset_index(drop=True), f, where, ids)
        inf = np.isinf(col.to_numpy())
        if inf.any():
            pos = int(np.flatnonzero(inf)[0])
            raise UserError(
                f"{where}: column {f.name!r} has {int(inf.sum())} infinite value(s), e.g. "
                f"{_row(pos, ids)}; features must be finite numbers"
            )
        cols[f.name] = col
    X = pd.DataFrame(cols)
    y = np.asarray(dataset.y)
    na = X.isna()
    if na.to_numpy().any():
        counts = {c: int(n) for c, n in na.sum().items() if n}
        first = next(iter(counts))
        pos = int(np.flatnonzero(na[first].to_numpy())[0])
        if policy == "error":
            raise UserError(
                f"{where}: column {first!r} has {counts[first]} missing value(s), e.g. "
                f"{_row(pos, ids)} ({len(counts)} column(s) with missing values: "
                f"{', '.join(counts)}){hint}"
            )
        if policy == "drop":
            keep = ~na.any(axis=1).to_numpy()
            X, y = X[keep].reset_index(drop=True), y[keep]
            ids = None if ids is None else ids[keep]
            dataset.notes["dropped_missing"] = int((~keep).sum())
        else:
            fill = {}
            for c in counts:
                known = X[c].dropna()
                if known.empty:
                    raise UserError(f"{where}: column {c!r} has no values at all; nothing to impute from")
                fill[c] = float(known.median()) if schema[c].kind == "numeric" else float(
                    known.mode().iloc[0])
            X = X.fillna(fill)
            dataset.notes["imputed_median"] = counts
    for f in schema:
        if f.kind == "numeric" or not f.categories:
            continue
        values = X[f.name].to_numpy()
        outside = ~np.isin(values, np.asarray(f.categories, float))
        if outside.any():
            pos = int(np.flatnonzero(outside)[0])
            odd = sorted({float(v) for v in values[outside]})
            raise UserError(
                f"{where}: feature {f.name!r}: {int(outside.sum())} row(s) have value(s) "
                f"{', '.join(f'{v:g}' for v in odd[:5])} outside its categories "
                f"[{', '.join(f'{c:g}' for c in f.categories)}], e.g. {_row(pos, ids)}"
            )
        absent = [c for c in f.categories if not np.any(values == c)]
        if absent:
            warn(f"{where}: feature {f.name!r}: declared categories "
                 f"{', '.join(f'{c:g}' for c in absent)} do not occur in the data")
    return X, y
