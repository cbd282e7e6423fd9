"""The ``table`` loader: a user's own CSV, TSV or Parquet file as a task's dataset.

Spec options (``[dataset.options]``): ``path`` (relative to the spec file; ``.csv``, ``.tsv``,
either gzipped, or Parquet), ``label`` (the
column), ``positive`` (its value that is class 1), optional ``id`` (a row-identifier column),
``sha256`` (checked when given) and ``missing`` (``error``, ``drop`` or ``impute-median``).
Every problem is one line naming the file, the column and what is wrong.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cfbench.core.errors import UserError
from cfbench.tasks.datasets import MISSING_POLICIES, Dataset

CSV_SUFFIXES = {".csv": ",", ".txt": ",", ".tsv": "\t", ".tab": "\t"}
PARQUET_SUFFIXES = (".parquet", ".pq")


def resolve_path(path: str, spec_dir: str | Path | None) -> Path:
    """``path`` as written in the spec, relative to the spec file's folder."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or spec_dir is None else Path(spec_dir) / p


def read_table(file: Path, sha256: str | None = None) -> tuple[pd.DataFrame, str]:
    """The file's rows and its SHA-256; CSV/TSV (optionally gzipped) by default inference,
    Parquet with pyarrow."""
    gzipped = file.suffix.lower() == ".gz"
    suffix = (file.with_suffix("") if gzipped else file).suffix.lower()
    if suffix not in CSV_SUFFIXES and (gzipped or suffix not in PARQUET_SUFFIXES):
        valid = ", ".join([*CSV_SUFFIXES, *(f"{s}.gz" for s in CSV_SUFFIXES), *PARQUET_SUFFIXES])
        raise UserError(f"{file}: unknown table format {suffix or '(no suffix)'!r}; valid: {valid}")
    try:
        blob = file.read_bytes()
    except OSError as exc:
        raise UserError(f"{file}: cannot read the data file ({exc.strerror or exc})") from None
    digest = hashlib.sha256(blob).hexdigest()
    if sha256 is not None and digest != str(sha256).lower():  # before parsing: a damaged file
        raise UserError(
            f"{file}: SHA-256 {digest} does not match dataset.options.sha256 {sha256}; "
            "the file changed since the spec was written"
        )
    try:
        if gzipped:
            blob = gzip.decompress(blob)
        if suffix in PARQUET_SUFFIXES:
            df = pd.read_parquet(io.BytesIO(blob))
        else:
            df = pd.read_csv(io.BytesIO(blob), sep=CSV_SUFFIXES[suffix], encoding="utf-8-sig")
    except Exception as exc:  # UnicodeDecodeError, ParserError, EmptyDataError, ArrowInvalid ...
        kind = "Parquet" if suffix in PARQUET_SUFFIXES else "gzip CSV" if gzipped else "CSV"
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"{file}: cannot read as {kind} ({detail})") from None
    df.columns = [str(c).strip() for c in df.columns]
    _check_distinct(_header(blob, suffix) or list(df.columns), file)
    if df.empty:
        raise UserError(f"{file}: the table has no data rows")
    return df, digest


def _header(blob: bytes, suffix: str) -> list[str]:
    """A CSV's header cells as written (pandas renames a repeated ``age`` to ``age.1``)."""
    if suffix not in CSV_SUFFIXES:
        return []
    try:
        row = pd.read_csv(io.BytesIO(blob), sep=CSV_SUFFIXES[suffix], encoding="utf-8-sig",
                          header=None, nrows=1, dtype=str, keep_default_na=False)
    except Exception:  # noqa: BLE001 - the whole file was read above; fall back to its names
        return []
    return [str(c).strip() for c in row.iloc[0].tolist()] if len(row) else []


def _check_distinct(names: list[str], file: Path) -> None:
    """Refuse a header that names a column twice (``age, age``): one line naming it."""
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            shown = repr(name) if len(name) <= 60 else f"{name[:50]!r}..."
            raise UserError(f"{file}: column {shown} appears more than once in the header; "
                            "valid: distinct column names")
        seen.add(name)


def same_value(a: Any, b: Any) -> bool:
    """Label cell ``a`` equals the spec's ``positive`` ``b`` as text or as a number."""
    if str(a).strip() == str(b).strip():
        return True
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return False
    return math.isfinite(fa) and fa == fb


def binary_positive(values: list[Any]) -> Any | None:
    """The obvious class-1 value of a two-valued label (1 or true), else None."""
    for v in values:
        if same_value(v, 1) or str(v).strip().lower() == "true":
            if all(same_value(w, 0) or str(w).strip().lower() == "false" for w in values if w is not v):
                return v
    return None


def load_table(
    path: str | None = None,
    label: str | None = None,
    positive: Any = None,
    id: str | None = None,
    sha256: str | None = None,
    missing: str = "error",
    spec_dir: str | Path | None = None,
) -> Dataset:
    """Read the table; label 1 where the label column equals ``positive``, 0 elsewhere."""
    if not isinstance(path, str) or not path:
        raise UserError("dataset.options.path: expected the data file (relative to the spec file)")
    if not isinstance(label, str) or not label:
        raise UserError("dataset.options.label: expected the name of the label column")
    if missing not in MISSING_POLICIES:
        raise UserError(
            f"dataset.options.missing: got {missing!r}; valid choices: {', '.join(MISSING_POLICIES)}"
        )
    file = resolve_path(path, spec_dir)
    df, digest = read_table(file, sha256)
    for key, col in (("label", label), ("id", id)):
        if col is not None and col not in df.columns:
            raise UserError(f"{file}: no column {col!r} (the {key}); columns: {', '.join(df.columns)}")
    lab = df[label]
    no_label = lab.isna() | (lab.astype("string").str.strip() == "")
    if no_label.any():
        pos = int(np.flatnonzero(no_label.to_numpy())[0])
        if missing != "drop":
            raise UserError(
                f"{file}: column {label!r} (the label) is empty in {int(no_label.sum())} row(s), "
                f"e.g. row {pos + 1}; labels are never imputed (missing = \"drop\" drops those rows)"
            )
        df = df[~no_label.to_numpy()].reset_index(drop=True)
        lab = df[label]
    values = sorted(pd.unique(lab), key=str)
    shown = ", ".join(repr(v) for v in values[:10]) + (" ..." if len(values) > 10 else "")
    if positive is None:
        positive = binary_positive(values) if len(values) == 2 else None
        if positive is None:
            raise UserError(
                f"{file}: column {label!r} has values {shown}; "
                "say which is class 1 with dataset.options.positive"
            )
    y = np.array([same_value(v, positive) for v in lab], dtype=int)
    if not y.any():
        raise UserError(
            f"{file}: column {label!r} never equals positive = {positive!r}; values: {shown}"
        )
    if y.all():
        raise UserError(
            f"{file}: column {label!r} has a single class: all {len(y)} rows are {positive!r}; "
            "a classifier needs both classes"
        )
    others = [v for v in values if not same_value(v, positive)]
    negative = str(others[0]) if len(others) == 1 else f"not {positive}"
    ids = None if id is None else df[id].astype(str).to_numpy()
    X = df.drop(columns=[c for c in (label, id) if c is not None])
    return Dataset(
        X=X,
        y=y,
        class_names={0: f"{label} = {negative}", 1: f"{label} = {positive}"},
        source=f"table {file.name} sha256={digest[:16]} ({len(df)} rows)",
        notes={"path": str(file), "sha256": digest, "label": label, "positive": positive,
               "rows": int(len(df))},
        missing=missing,
        ids=ids,
    )
