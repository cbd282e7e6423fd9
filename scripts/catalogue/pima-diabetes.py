"""Build ``cfbench/tasks/data/pima-diabetes.csv.gz`` from Weka's ``diabetes.arff``.

The raw file ships in the Debian package ``weka`` (3.6.14), not a cfbench dependency::

    apt-get download weka && dpkg-deb -x weka_*.deb ex
    python scripts/catalogue/pima-diabetes.py ex/usr/share/doc/weka/examples/diabetes.arff \
        cfbench/tasks/data/pima-diabetes.csv.gz

What it does: keeps Weka's column names and order (``preg plas pres skin insu mass pedi age
class``), writes the label in UCI's coding (``class`` 1 = ``tested_positive``, 0 =
``tested_negative``) and writes an empty cell where the source has a physiologically impossible
0 in ``plas``, ``pres``, ``skin``, ``insu`` or ``mass`` (the source's way of marking a missing
measurement; the same cells are NA in mlbench's ``PimaIndiansDiabetes2``).  Zeros in ``preg``
are real (no pregnancy) and are kept.  Prints the counts and the SHA-256 of the output.
"""

from __future__ import annotations

import argparse

import pandas as pd
from _common import read_arff, summary, write_csv_gz

COLUMNS = ["preg", "plas", "pres", "skin", "insu", "mass", "pedi", "age"]
ZERO_IS_MISSING = ["plas", "pres", "skin", "insu", "mass"]
CLASS = {"tested_negative": 0, "tested_positive": 1}


def convert(raw: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({c: pd.to_numeric(raw[c]) for c in COLUMNS})
    for c in ZERO_IS_MISSING:
        out[c] = out[c].mask(out[c] == 0)
    for c in ("preg", "plas", "pres", "skin", "insu", "age"):
        out[c] = out[c].astype("Int64")  # whole numbers in the source; empty cells stay empty
    out["class"] = raw["class"].map(CLASS).astype(int)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arff", help="Weka's examples/diabetes.arff")
    ap.add_argument("out", help="the .csv.gz to write")
    args = ap.parse_args()
    raw = read_arff(args.arff)
    zeros = {c: int((pd.to_numeric(raw[c]) == 0).sum()) for c in ZERO_IS_MISSING}
    df = convert(raw)
    print(summary(df, "class"))
    print(f"zeros turned into empty cells: {zeros}")
    print(f"sha256 {write_csv_gz(df, args.out)}  {args.out}")


if __name__ == "__main__":
    main()
