"""Shared helpers of the catalogue conversion scripts (maintainer tools, not used at run time).

Every script writes its table the same way so that the same input always gives the same bytes:
UTF-8 CSV with a header row, LF line endings, a fixed column order, empty cells for missing
values, compressed with gzip at level 9 with the header's timestamp set to 0 and no file name.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from pathlib import Path

import pandas as pd


def read_arff(path: str | Path) -> pd.DataFrame:
    """An ARFF file's ``@data`` rows as text cells (``?`` becomes None), named by ``@attribute``.

    Enough for Weka's example files: one instance per line, values separated by commas and
    optionally quoted with single quotes; no sparse rows, no dates, no relational attributes.
    """
    names: list[str] = []
    rows: list[list[str | None]] = []
    in_data = False
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        low = line.lower()
        if not in_data:
            if low.startswith("@attribute"):
                rest = line[len("@attribute"):].strip()
                if rest.startswith("'"):
                    names.append(rest[1:rest.index("'", 1)])
                else:
                    names.append(rest.split()[0])
            elif low.startswith("@data"):
                in_data = True
            continue
        cells = next(csv.reader([line], quotechar="'", skipinitialspace=True))
        if len(cells) != len(names):
            raise ValueError(f"{path}: {len(cells)} values in a data row, {len(names)} attributes")
        rows.append([None if c.strip() == "?" else c.strip() for c in cells])
    return pd.DataFrame(rows, columns=names)


def write_csv_gz(df: pd.DataFrame, out: str | Path) -> str:
    """Write ``df`` (columns in the given order, no index) as a deterministic .csv.gz; its SHA-256."""
    text = df.to_csv(index=False, lineterminator="\n")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    blob = buf.getvalue()
    Path(out).write_bytes(blob)
    return hashlib.sha256(blob).hexdigest()


def summary(df: pd.DataFrame, label: str) -> str:
    """One line per fact the data card states: shape, class counts and missing cells."""
    lines = [f"rows x columns: {len(df)} x {df.shape[1]}",
             f"{label}: {counts(df[label])}"]
    na = {c: int(n) for c, n in df.isna().sum().items() if n}
    lines.append(f"missing cells: {sum(na.values())} {na}")
    return "\n".join(lines)


def counts(col: pd.Series) -> dict:
    """Value counts in code order as plain Python numbers (missing cells under None)."""
    vc = col.value_counts(dropna=False).sort_index()
    return {None if pd.isna(k) else int(k): int(v) for k, v in vc.items()}
