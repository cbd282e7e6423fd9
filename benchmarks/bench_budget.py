"""Quality versus search budget: what CFNOW's anytime variants gain from more seconds per query.

For each task and each budget, every method variant runs through the harness's own runner
(workers, the budget passed to ``generate``, the hard kill far above it) on the same queries, and
the summary's numbers are printed: validity (all queries), L1/MAD and #changed (returned CFs)
and the median seconds per query.  The default budget (``cfbench.execution.schedule.DEFAULT_BUDGET``) is
chosen from this curve; see docs/baselines.md#search-budget.

    python benchmarks/bench_budget.py                                    # the full curve (long)
    python benchmarks/bench_budget.py --tasks heart --budgets 0.5,1 --n-queries 2   # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

DEFAULT_METHODS = "cfnow:greedy,cfnow:random_optim"


def _floats(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.5,1,2, got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers like 0.5,1,2, got {text!r}")
    return values


def measure(task_name: str, methods: str, budgets: list[float], n_queries: int, seed: int,
            jobs: int, workdir: Path) -> list[dict]:
    """One row per (method, budget) on ``task_name``."""
    from cfbench.entry import run
    from cfbench.execution.config import RunConfig

    task = None  # loaded by the first run, reused by the others
    rows = []
    for budget in budgets:
        out = workdir / f"{task_name}-{budget:g}"
        cfg = RunConfig(task=task_name, methods=methods, seeds=(seed,), n_queries=n_queries,
                        budget=budget, jobs=jobs, out=out)
        result = run(cfg, task=task)
        if task is None:
            for name, why in result.skipped.items():
                print(f"skipping {name}: {why}", file=sys.stderr)
        task, wall, summary = result.task, result.seconds, result.summary
        for label, per_dir in summary["methods"].items():
            d = per_dir["all"]
            rows.append({
                "task": task_name, "method": label, "budget": budget,
                "queries": d["n_queries"], "validity": d["all"]["validity"],
                "l1_mad": d["valid"]["l1_mad"], "n_changed": d["valid"]["n_changed"],
                "seconds_median": d["all"]["seconds_median"], "wall": wall,
                "status": {k: v for k, v in d["status_counts"].items() if v},
            })
        print(f"{task_name}: budget {budget:g} s done in {wall:.1f} s", file=sys.stderr)
    return rows


def to_markdown(rows: list[dict]) -> str:
    lines = ["| task | method | budget (s) | queries | validity | L1/MAD | #changed | s/query | statuses |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def f(v: float, fmt: str = ".2f") -> str:
            return "–" if v is None or v != v else format(v, fmt)

        lines.append(f"| {r['task']} | {r['method']} | {r['budget']:g} | {r['queries']} | "
                     f"{f(r['validity'])} | {f(r['l1_mad'])} | {f(r['n_changed'])} | "
                     f"{f(r['seconds_median'], '.3g')} | "
                     + ", ".join(f"{k} {v}" for k, v in r["status"].items()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--tasks", default="heart,ai-readi", help="comma-separated task names")
    ap.add_argument("--methods", default=DEFAULT_METHODS, help="methods as for cfbench run")
    ap.add_argument("--budgets", type=_floats, default=[0.5, 1, 2, 5, 10],
                    help="seconds per query, comma-separated")
    ap.add_argument("--n-queries", type=int, default=20, help="queries per class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=None, help="cells at once (default: the cores)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    if args.n_queries < 1:
        ap.error(f"--n-queries must be a positive integer, got {args.n_queries}")
    from cfbench.core.machine import usable_cores

    jobs = args.jobs or usable_cores()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="cfbench-budget-") as tmp:
        for task_name in [t.strip() for t in args.tasks.split(",") if t.strip()]:
            rows += measure(task_name, args.methods, args.budgets, args.n_queries, args.seed, jobs,
                            Path(tmp))
    print(to_markdown(rows))
    if args.json:
        strict = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
                  for r in rows]  # strict JSON: null, never NaN
        args.json.write_text(json.dumps(strict, indent=2, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
