"""Harness overhead: ``cfbench run`` against calling each library directly on the same queries.

For every method variant, two fresh interpreters do the same work on the same task, queries,
k, seed and library settings, and the parent times each from start to exit:

- harness: ``cfbench run --task T --methods m:v --n-queries N --k K --timeout B --quiet``
  (CLI start, task load, a spawned worker that loads the task again and fits the generator, one
  message per batch, output validation, the run store, metrics and the summary);
- direct:  this file with ``--direct m:v``: load the task, build the library's explainer with
  the same settings the plugin uses, loop over the queries, count the CFs.

The ratio harness/direct is the harness's cost; the goal is < 1.10.  The fixed part (a second
interpreter, imports and the task load in the worker: 2-3 s per cell on a 2-core machine) only
fades when a cell does enough work, so the ratio of a sub-second method (NICE) is dominated by
it; the absolute overhead per cell is printed too.

    python benchmarks/bench_overhead.py                       # default methods, the task's queries
    python benchmarks/bench_overhead.py --methods dice:random --n-queries 5 --repeats 3

``direct`` supports tasks whose features are numeric or categorical for DiCE and numeric only
for CFNOW (it feeds CFNOW the range-scaled features, as the plugin does, without the plugin's
constraint projection); the default task is ``breast-cancer``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_METHODS = "dice:random,dice:genetic,dice:kdtree,cfnow:random,nice:sparsity,nice:plausibility"
TARGET = 1.10


# ----------------------------------------------------------------------------- direct calls


def _load(task_name: str, n_queries: int):
    from cfbench.tasks.spec import Task, resolve_spec

    task = Task.load(resolve_spec(task_name))
    return task, task.queries(n_queries)


def direct_dice(task, queries, variant: str, k: int, seed: int) -> int:
    """dice_ml's own API: Data + Model(sklearn pipeline) + Dice, one call per query."""
    import dice_ml
    from cfbench_dice.generator import code_str, decimals
    from raiutils.exceptions import UserConfigValidationException

    schema = task.schema
    names, cats = schema.names, set(schema.categorical)
    X = task.X_train[names].astype(float)
    ints = {f.name for f in schema if f.name not in cats and f.integer
            and np.allclose(X[f.name], X[f.name].round())}

    def to_dice(D: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({
            n: D[n].map(code_str).astype(object) if n in cats
            else D[n].round().astype("int64") if n in ints else D[n].astype(float)
            for n in names
        }, index=D.index)

    def numeric(D: pd.DataFrame, data_interface=None) -> pd.DataFrame:  # DiCE's `func` hook
        D = D[names].copy()
        for c in cats:  # DiCE hands categorical codes over as strings
            D[c] = pd.to_numeric(D[c].astype(str))
        return D.astype(float)

    df = to_dice(X)
    df["y"] = task.y_train
    cont = [n for n in names if n not in cats]
    data = dice_ml.Data(dataframe=df, continuous_features=cont, outcome_name="y",
                        continuous_features_precision={n: decimals(X[n].to_numpy()) for n in cont if n not in ints})
    model = dice_ml.Model(model=task.model, backend="sklearn", func=numeric if cats else None)
    explainer = dice_ml.Dice(data, model, method=variant)
    mutable = schema.mutable
    found = 0
    for i in range(len(queries)):
        q = queries.iloc[[i]][names].astype(float)
        rng = {}
        for f in schema:
            if f.mutable and f.name not in cats:
                lo, hi = f.lower, f.upper
                if f.direction == "increase-only":
                    lo = max(lo, float(q[f.name].iloc[0]))
                elif f.direction == "decrease-only":
                    hi = min(hi, float(q[f.name].iloc[0]))
                rng[f.name] = [int(np.ceil(lo)), int(np.floor(hi))] if f.name in ints else [lo, hi]
        kw = {"random_seed": seed} if variant == "random" else {}
        if variant == "genetic":
            random.seed(seed)
            np.random.seed(seed)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                res = explainer.generate_counterfactuals(
                    to_dice(q), total_CFs=k, desired_class=int(queries["target"].iloc[i]),
                    features_to_vary=mutable, permitted_range=rng,
                    posthoc_sparsity_algorithm="binary", **kw)
        except UserConfigValidationException:
            continue
        ex = res.cf_examples_list[0]
        out = ex.final_cfs_df_sparse if ex.final_cfs_df_sparse is not None else ex.final_cfs_df
        found += 0 if out is None else min(len(out), k)
    return found


def direct_cfnow(task, queries, variant: str, k: int, seed: int, budget: float) -> int:
    """cfnow.find_tabular on range-scaled features, one call per query."""
    from cfbench_cfnow.generator import import_cfnow

    find_tabular = import_cfnow()  # cfnow's own import would try to download NLTK data
    schema = task.schema
    if schema.categorical:
        raise SystemExit("direct cfnow supports numeric tasks only")
    names = schema.names
    lo, hi = schema.bounds()
    scale = np.where(hi - lo > 0, hi - lo, 1.0)
    zn = [f"n{j}" for j in range(len(names))]
    found = 0
    for i in range(len(queries)):
        q = queries.iloc[i][names].to_numpy(float)
        t = int(queries["target"].iloc[i])

        def proba(Z, t=t):
            D = pd.DataFrame(np.atleast_2d(np.asarray(Z, float)) * scale, columns=names)
            return task.model.predict_proba(D)[:, t]

        np.random.seed(seed)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            res = find_tabular(pd.Series(q / scale, index=zn), proba, count_cf=k,
                               feat_types=dict.fromkeys(zn, "num"),
                               cf_strategy="greedy" if variant == "greedy" else "random",
                               limit_seconds=0 if variant == "random" else budget,
                               size_tabu=min(5 if variant == "greedy" else round(0.2 * len(zn)), len(zn) - 1))
        cfs = res.cfs_not_optimized if variant == "random" else res.cfs
        found += min(len(cfs), k)
    return found


def direct_nice(task, queries, variant: str, k: int, seed: int) -> int:
    """NICE has no installable library here: the in-tree implementation, called in-process."""
    from cfbench_nice.nice import NICE

    gen = NICE(variant).fit(task.fit_context(seed))
    res = gen.generate(queries[task.schema.names], queries["target"].to_numpy(), k, 60.0)
    return sum(r.status == "ok" for r in res)


def run_direct(args: argparse.Namespace) -> None:
    method, _, variant = args.direct.partition(":")
    task, queries = _load(args.task, args.n_queries)
    if method == "dice":
        found = direct_dice(task, queries, variant, args.k, args.seed)
    elif method == "cfnow":
        found = direct_cfnow(task, queries, variant, args.k, args.seed, args.timeout)
    elif method == "nice":
        found = direct_nice(task, queries, variant, args.k, args.seed)
    else:
        raise SystemExit(f"no direct call for method {method!r}; valid: dice, cfnow, nice")
    print(json.dumps({"found": found, "queries": len(queries)}))


# ----------------------------------------------------------------------------- timing


def _timed(cmd: list[str], limit: float) -> tuple[float, subprocess.CompletedProcess | None]:
    start = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, None
    return time.perf_counter() - start, out


def harness_found(out_dir: Path) -> int:
    recs = [json.loads(line) for line in (out_dir / "records.jsonl").read_text().splitlines() if line]
    return sum(r["n_cfs"] for r in recs)


def measure(args: argparse.Namespace, method: str) -> dict:
    # the same interpreter as the direct call, without any shell shim in front of a console script
    base = [sys.executable, "-m", "cfbench"]
    limit = 4 * args.timeout * 2 * args.n_queries + 120
    direct_t, harness_t, found_d, found_h = [], [], None, None
    for _ in range(args.repeats):
        d_s, d_out = _timed([sys.executable, __file__, "--direct", method, "--task", args.task,
                             "--n-queries", str(args.n_queries), "--k", str(args.k),
                             "--timeout", str(args.timeout), "--seed", str(args.seed)], limit)
        if d_out is None or d_out.returncode != 0:
            reason = "timed out" if d_out is None else d_out.stderr.strip().splitlines()[-1:]
            return {"method": method, "error": f"direct call failed: {reason}"}
        found_d = json.loads(d_out.stdout.strip().splitlines()[-1])["found"]
        direct_t.append(d_s)
        with tempfile.TemporaryDirectory() as tmp:
            h_s, h_out = _timed(base + ["run", "--task", args.task, "--methods", method,
                                        "--n-queries", str(args.n_queries), "--k", str(args.k),
                                        "--timeout", str(args.timeout), "--seed", str(args.seed),
                                        "--quiet", "--out", str(Path(tmp) / "run")], limit)
            if h_out is None or h_out.returncode != 0:
                reason = "timed out" if h_out is None else h_out.stderr.strip()[-300:]
                return {"method": method, "error": f"cfbench run failed: {reason}"}
            found_h = harness_found(Path(tmp) / "run")
        harness_t.append(h_s)
    d, h = statistics.median(direct_t), statistics.median(harness_t)
    return {"method": method, "direct_s": d, "harness_s": h, "ratio": h / d, "overhead_s": h - d,
            "found_direct": found_d, "found_harness": found_h}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="breast-cancer")
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"default: {DEFAULT_METHODS}")
    p.add_argument("--n-queries", type=int, default=None,
                   help="queries per source class (default: the task's own, as in a default run)")
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--timeout", type=float, default=30.0, help="budget per query (s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="median over this many timings")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--direct", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.direct:
        run_direct(args)
        return 0
    task, _ = _load(args.task, args.n_queries)  # fit (or load) the cached classifier before any timing
    if args.n_queries is None:
        args.n_queries = task.spec.n_per_class
    rows = []
    print(f"task={args.task} queries/class={args.n_queries} k={args.k} budget={args.timeout:g}s "
          f"repeats={args.repeats} cpus={os.cpu_count()}")
    print(f"{'method':22} {'direct s':>9} {'harness s':>10} {'ratio':>6} {'overhead s':>11} {'CFs d/h':>9}")
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        r = measure(args, method)
        rows.append(r)
        if "error" in r:
            print(f"{method:22} {r['error']}")
            continue
        flag = "" if r["ratio"] < TARGET else "  (over 10%)"
        print(f"{method:22} {r['direct_s']:9.1f} {r['harness_s']:10.1f} {r['ratio']:6.3f} "
              f"{r['overhead_s']:11.1f} {r['found_direct']:>4}/{r['found_harness']:<4}{flag}", flush=True)
    ok = [r for r in rows if "error" not in r]
    if ok:
        total = sum(r["harness_s"] for r in ok) / sum(r["direct_s"] for r in ok)
        print(f"{'all (sum of times)':22} {sum(r['direct_s'] for r in ok):9.1f} "
              f"{sum(r['harness_s'] for r in ok):10.1f} {total:6.3f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
