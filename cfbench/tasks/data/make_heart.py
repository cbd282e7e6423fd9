"""Rebuild ``heart.csv`` (UCI Cleveland, UCI coding) from two offline copies; a maintainer's tool.

Not used at run time.  Inputs, both unpacked from wheels fetched with ``pip download --no-deps``:
``pingouin/datasets/chi2_independence.csv`` (pingouin 0.7.0, the Kaggle "heart.csv" variant) and
``Orange/datasets/heart_disease.tab`` (orange3 3.40.0, the canonical UCI Cleveland table).
See ``heart.md`` for what the script does and what it found.

    python -m cfbench.data.make_heart PINGOUIN_CSV ORANGE_TAB OUT_CSV
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np
import pandas as pd

COLUMNS = ["age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang",
           "oldpeak", "slope", "ca", "thal"]
KEY = COLUMNS[:11]  # columns without missing cells, used to match rows


def kaggle_to_uci(k: pd.DataFrame) -> pd.DataFrame:
    """Undo the Kaggle recoding: categorical codes back to UCI's, 4/0 back to missing, label flipped."""
    u = k[COLUMNS].astype(float).copy()
    u["cp"] = k["cp"].map({0: 4, 1: 2, 2: 3, 3: 1})  # 0 asymptomatic ... 3 typical angina
    u["restecg"] = k["restecg"].map({0: 2, 1: 0, 2: 1})
    u["slope"] = k["slope"].map({0: 3, 1: 2, 2: 1})
    u["ca"] = k["ca"].where(k["ca"] != 4)  # ca = 4 stands for UCI's '?'
    u["thal"] = k["thal"].map({0: np.nan, 1: 6, 2: 3, 3: 7})  # thal = 0 stands for UCI's '?'
    u["disease"] = 1 - k["target"]  # Kaggle target 1 = *no* disease
    return u


def orange_to_uci(o: pd.DataFrame) -> pd.DataFrame:
    """Orange3's labelled table to UCI's numeric codes."""
    o = o.copy()
    o.columns = COLUMNS + ["disease"]
    o["sex"] = (o["sex"] == "male").astype(int)
    o["cp"] = o["cp"].map({"typical ang": 1, "atypical ang": 2, "non-anginal": 3, "asymptomatic": 4})
    o["restecg"] = o["restecg"].map({"normal": 0, "ST-T abnormal": 1, "left vent hypertrophy": 2})
    o["slope"] = o["slope"].map({"upsloping": 1, "flat": 2, "downsloping": 3})
    o["thal"] = o["thal"].map({"normal": 3, "fixed defect": 6, "reversable defect": 7})
    return o.astype(float)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pingouin_csv")
    ap.add_argument("orange_tab")
    ap.add_argument("out_csv")
    a = ap.parse_args(argv)
    k = kaggle_to_uci(pd.read_csv(a.pingouin_csv, encoding="utf-8-sig"))
    o = orange_to_uci(pd.read_csv(a.orange_tab, sep="\t", skiprows=[1, 2], na_values=["?"]))
    dup = k.duplicated(keep="first")
    print(f"pingouin rows {len(k)}, exact duplicate rows {int(dup.sum())}")
    k = k[~dup]
    m = o.reset_index().merge(k, on=KEY, how="left", suffixes=("", "_k"), indicator=True)
    assert len(m) == len(o), "a UCI row matched more than one pingouin row"
    both = m[m["_merge"] == "both"]
    for c in ("ca", "thal", "disease"):
        same = (both[c] == both[c + "_k"]) | (both[c].isna() & both[c + "_k"].isna())
        assert same.all(), f"{c} differs on {int((~same).sum())} matched rows"
    only_uci = m[m["_merge"] == "left_only"]
    print(f"UCI rows reproduced by pingouin: {len(both)}; missing from pingouin: {len(only_uci)}")
    print(only_uci[COLUMNS + ["disease"]].to_string())
    out = o[COLUMNS + ["disease"]].astype({c: "Int64" for c in COLUMNS if c != "oldpeak"})
    out["disease"] = out["disease"].astype(int)
    assert len(out) == 303 and int(out["disease"].sum()) == 139
    out.to_csv(a.out_csv, index=False)
    digest = hashlib.sha256(open(a.out_csv, "rb").read()).hexdigest()
    print(f"wrote {a.out_csv}: {len(out)} rows, {int(out['disease'].sum())} with disease, sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
