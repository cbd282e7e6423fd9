"""Build ``cfbench/tasks/data/breast-cancer-recurrence.csv.gz`` from Weka's ``breast-cancer.arff``.

The raw file ships in the Debian package ``weka`` (3.6.14), not a cfbench dependency::

    apt-get download weka && dpkg-deb -x weka_*.deb ex
    python scripts/catalogue/breast-cancer-recurrence.py \
        ex/usr/share/doc/weka/examples/breast-cancer.arff \
        cfbench/tasks/data/breast-cancer-recurrence.csv.gz

The file is the Ljubljana breast cancer data (Zwitter & Soklic, 286 patients, UCI).  Every
attribute is nominal; the script writes numeric codes, in the ARFF's column order:

* interval attributes (``age``, ``tumor-size``, ``inv-nodes``) and ``deg-malig``: the 1-based
  position of the level in the ARFF's declared level list (``age`` '10-19' = 1 ... '90-99' = 9),
  so codes keep the order and the spacing of the intervals;
* ``menopause``: lt40 = 1, ge40 = 2, premeno = 3 (the ARFF's level order);
* ``node-caps``, ``irradiat``: no = 0, yes = 1; ``breast``: left = 0, right = 1;
* ``breast-quad``: left_up = 1, left_low = 2, right_up = 3, right_low = 4, central = 5;
* ``Class``: recurrence-events = 1, no-recurrence-events = 0.

The 9 cells written ``?`` in the source (8 ``node-caps``, 1 ``breast-quad``) are left empty.
"""

from __future__ import annotations

import argparse

import pandas as pd
from _common import counts, read_arff, summary, write_csv_gz

AGE = ["10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "90-99"]
TUMOR_SIZE = ["0-4", "5-9", "10-14", "15-19", "20-24", "25-29", "30-34", "35-39", "40-44",
              "45-49", "50-54", "55-59"]
INV_NODES = ["0-2", "3-5", "6-8", "9-11", "12-14", "15-17", "18-20", "21-23", "24-26", "27-29",
             "30-32", "33-35", "36-39"]
MENOPAUSE = ["lt40", "ge40", "premeno"]
DEG_MALIG = ["1", "2", "3"]
QUADRANT = ["left_up", "left_low", "right_up", "right_low", "central"]

CODES: dict[str, dict[str, int]] = {
    "age": {v: i for i, v in enumerate(AGE, 1)},
    "menopause": {v: i for i, v in enumerate(MENOPAUSE, 1)},
    "tumor-size": {v: i for i, v in enumerate(TUMOR_SIZE, 1)},
    "inv-nodes": {v: i for i, v in enumerate(INV_NODES, 1)},
    "node-caps": {"no": 0, "yes": 1},
    "deg-malig": {v: i for i, v in enumerate(DEG_MALIG, 1)},
    "breast": {"left": 0, "right": 1},
    "breast-quad": {v: i for i, v in enumerate(QUADRANT, 1)},
    "irradiat": {"no": 0, "yes": 1},
    "Class": {"no-recurrence-events": 0, "recurrence-events": 1},
}


def convert(raw: pd.DataFrame) -> pd.DataFrame:
    if list(raw.columns) != list(CODES):
        raise ValueError(f"unexpected attributes {list(raw.columns)}")
    out = pd.DataFrame()
    for col, codes in CODES.items():
        unknown = set(raw[col].dropna()) - set(codes)
        if unknown:
            raise ValueError(f"{col}: levels {sorted(unknown)} not in {list(codes)}")
        out[col] = raw[col].map(codes).astype("Int64")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arff", help="Weka's examples/breast-cancer.arff")
    ap.add_argument("out", help="the .csv.gz to write")
    args = ap.parse_args()
    df = convert(read_arff(args.arff))
    print(summary(df, "Class"))
    for col in CODES:
        print(f"{col}: {counts(df[col])}")
    print(f"sha256 {write_csv_gz(df, args.out)}  {args.out}")


if __name__ == "__main__":
    main()
