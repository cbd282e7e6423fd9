"""Build ``cfbench/tasks/data/breast-cancer-wisconsin.csv.gz`` from mlbench's ``BreastCancer``.

The raw file ships in the Debian package ``r-cran-mlbench`` (2.1-3), not a cfbench dependency;
reading it needs the PyPI package ``rdata`` (``pip install rdata``), used by this script only::

    apt-get download r-cran-mlbench && dpkg-deb -x r-cran-mlbench_*.deb ex
    python scripts/catalogue/breast-cancer-wisconsin.py \
        ex/usr/lib/R/site-library/mlbench/data/BreastCancer.rda \
        cfbench/tasks/data/breast-cancer-wisconsin.csv.gz

``BreastCancer`` is the original Wisconsin breast cancer data (Wolberg, 699 fine-needle aspirates,
nine cytology grades 1-10).  The script drops the sample code ``Id`` (not a feature; 54 codes
repeat), writes the nine grades as integers in mlbench's column order, keeps the 16 missing
``Bare.nuclei`` cells empty and writes ``Class`` as 1 = malignant, 0 = benign.
"""

from __future__ import annotations

import argparse
import warnings

import pandas as pd
import rdata
from _common import summary, write_csv_gz

GRADES = ["Cl.thickness", "Cell.size", "Cell.shape", "Marg.adhesion", "Epith.c.size",
          "Bare.nuclei", "Bl.cromatin", "Normal.nucleoli", "Mitoses"]
CLASS = {"benign": 0, "malignant": 1}


def convert(raw: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({c: pd.to_numeric(raw[c].astype("string")).astype("Int64") for c in GRADES})
    bad = [c for c in GRADES if not out[c].dropna().between(1, 10).all()]
    if bad:
        raise ValueError(f"grades outside 1-10 in {bad}")
    out["Class"] = raw["Class"].astype("string").map(CLASS).astype(int)
    return out.reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rda", help="mlbench's data/BreastCancer.rda")
    ap.add_argument("out", help="the .csv.gz to write")
    args = ap.parse_args()
    with warnings.catch_warnings():  # rdata: "Unknown encoding. Assumed ASCII." (the file is ASCII)
        warnings.simplefilter("ignore", UserWarning)
        raw = rdata.read_rda(args.rda)["BreastCancer"]
    print(f"Id codes that repeat: {int(raw['Id'].duplicated().sum())}")
    df = convert(raw)
    print(f"rows repeated exactly (features and class): {int(df.duplicated().sum())}")
    print(summary(df, "Class"))
    print(f"sha256 {write_csv_gz(df, args.out)}  {args.out}")


if __name__ == "__main__":
    main()
