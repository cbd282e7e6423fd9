"""Bring-your-own-data trial: a CSV cfbench has never seen, through `task init` and `run --methods all`.

Writes a made-up sleep-and-glucose cohort (numeric, integer, binary, categorical and ordinal
columns, a text id, a few missing cells), then for each classifier choice — the three built-in
models and a user's own scikit-learn pipeline saved with skops — runs exactly what a user types:

    cfbench task init cohort.csv --label dysglycemia --positive yes --id participant --missing impute-median --out tasks/cohort.toml [--model M | --model-file F]
    cfbench run --task tasks/cohort.toml --methods all --n-queries N --out runs/<choice>

and prints, per classifier and generator family, the queries answered, the CFs scored and
their validity, read from each run's summary.json.  Every family must produce scored CFs.

    python scripts/own_data_trial.py --dir /tmp/own-data [--n-queries 5] [--choices random-forest,skops]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

CHOICES = ("random-forest", "logistic-regression", "hist-gradient-boosting", "skops")
FAMILIES = ("nearest-neighbour", "dice", "cfnow", "nice", "llm-zeroshot", "llm-fewshot", "llm-finetuned")


def cohort(n: int = 300, seed: int = 2026) -> pd.DataFrame:
    """A made-up cohort: sleep, activity and glucose features; the label depends on several."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "participant": [f"P-{i:04d}" for i in range(n)],
        "age_years": rng.integers(30, 80, n),
        "sex": rng.choice(["F", "M"], n),
        "sleep_minutes": rng.normal(410, 55, n).round(0),
        "deep_sleep_share": rng.beta(4, 16, n).round(3),
        "daily_steps": rng.integers(1500, 16000, n),
        "resting_hr": rng.normal(66, 9, n).round(1),
        "glucose_cv": rng.normal(24, 6, n).round(2),
        "on_metformin": rng.binomial(1, 0.3, n),
        "diet": rng.choice(["mediterranean", "western", "vegetarian"], n),
        "stress_level": rng.choice(["low", "medium", "high"], n),
    })
    risk = (0.04 * (df.age_years - 55) - 0.00025 * (df.daily_steps - 8000) - 0.006 * (df.sleep_minutes - 410)
            + 0.08 * (df.glucose_cv - 24) + 0.6 * (df.diet == "western") + 0.4 * (df.stress_level == "high"))
    df["dysglycemia"] = np.where(risk + rng.normal(0, 0.8, n) > 0.3, "yes", "no")
    df.loc[[5, 41, 77], "resting_hr"] = np.nan
    return df


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cfbench", *args], capture_output=True, text=True, env=env)


def user_pipeline(spec_path: Path, data: Path, out: Path) -> None:
    """The user's own pipeline, fit outside cfbench on the spec's encoding, saved with skops."""
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    from cfbench.tasks.spec import load_spec

    spec = load_spec(spec_path)
    df = pd.read_csv(data)
    X = pd.DataFrame({f.name: (df[f.name].map(dict(zip(f.labels, f.categories, strict=True))) if f.labels
                               else df[f.name]).astype(float) for f in spec.schema})
    y = (df["dysglycemia"] == "yes").astype(int)
    pipe = Pipeline([("prep", ColumnTransformer([("imp", SimpleImputer(strategy="median"), spec.schema.names)])),
                     ("model", GradientBoostingClassifier(random_state=0))]).fit(X, y)
    sio.dump(pipe, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True, help="working folder (CSV, specs, runs)")
    ap.add_argument("--n-queries", type=int, default=5, help="queries per class")
    ap.add_argument("--choices", default=",".join(CHOICES))
    args = ap.parse_args(argv)
    choices = args.choices.split(",")
    bad = [c for c in choices if c not in CHOICES]
    if bad:
        raise SystemExit(f"--choices: unknown {bad[0]!r}; valid: {', '.join(CHOICES)}")
    args.dir.mkdir(parents=True, exist_ok=True)
    data = args.dir / "cohort.csv"
    cohort().to_csv(data, index=False)
    rows = []
    for choice in choices:
        spec = args.dir / "tasks" / f"cohort-{choice}.toml"
        init = ["task", "init", str(data), "--label", "dysglycemia", "--positive", "yes", "--id", "participant",
                "--missing", "impute-median", "--out", str(spec), "--force"]
        r = cli(*init)
        if r.returncode:
            raise SystemExit(f"task init failed: {r.stderr.strip()}")
        if choice == "skops":
            user_pipeline(spec, data, args.dir / "own-model.skops")
            r = cli(*init, "--model-file", str(args.dir / "own-model.skops"))
        elif choice != "random-forest":
            r = cli(*init, "--model", choice)
        if r.returncode:
            raise SystemExit(f"task init ({choice}) failed: {r.stderr.strip()}")
        out = args.dir / "runs" / choice
        t0 = time.perf_counter()
        r = cli("run", "--task", str(spec), "--methods", "all", "--n-queries", str(args.n_queries),
                "--out", str(out), "--quiet")
        seconds = time.perf_counter() - t0
        if r.returncode:
            raise SystemExit(f"run ({choice}) failed: {r.stderr.strip()[-2000:]}")
        summary = json.loads((out / "summary.json").read_text())
        for family in FAMILIES:
            labels = [m for m in summary["methods"] if m.split(":")[0] == family]
            n_q = sum(summary["methods"][m]["all"]["n_queries"] for m in labels)
            n_cfs = sum(summary["methods"][m]["all"]["n_cfs"] for m in labels)
            valid = [summary["methods"][m]["all"]["all"]["validity"] for m in labels]
            rows.append({"classifier": choice, "family": family, "variants": len(labels), "queries": n_q,
                         "cfs_scored": n_cfs, "validity_mean": float(np.nanmean(valid)) if valid else float("nan"),
                         "run_s": round(seconds)})
        print(f"{choice}: {summary['classifier']}", flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    (args.dir / "trial.json").write_text(json.dumps(rows, indent=1))
    missing = table[table["cfs_scored"] == 0]
    if len(missing):
        print("families without scored CFs:\n" + missing.to_string(index=False))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
