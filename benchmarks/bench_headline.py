"""The headline command, timed as a user runs it: ``cfbench run --task ai-readi --methods all``.

Runs ``python -m cfbench run`` with the defaults (plus any ``--methods``/``--n-queries``/extra
flags given here) into a temporary run folder, and reports

- the wall time (targets: <= 15 min warm, <= 20 min cold on a 2-core CPU machine);
- one row per cell from the records' own timings: queries, median s/query, fit seconds and
  the cell's time (fit + the queries' seconds);
- where the rest goes, from the moments the command printed its lines (its output is not a
  terminal, so it prints plain lines as they happen): start-up and task load (until the plan
  line), the cells (until the last finished cell), scoring and the summary (until exit).

``--warm`` (default) uses the user's cache as it is (data, converted model and fine-tuned
adapter there from an earlier run); ``--cold`` points ``CFBENCH_CACHE`` at a fresh folder, so
the synthetic release, the model conversion and the default LoRA fine-tune are included.

    python benchmarks/bench_headline.py --warm
    python benchmarks/bench_headline.py --cold
    python benchmarks/bench_headline.py --methods nearest-neighbour --n-queries 2   # a dry run
    python benchmarks/bench_headline.py --keep runs/ai-readi -- --config leaderboard/ai-readi.suite.toml

The last form is the committed board's run (the suite file holds the headline defaults); the
augmentation the suite file adds after the run is timed on its own line, not as the run's time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

WARM_TARGET, COLD_TARGET = 15 * 60, 20 * 60


def command(out: Path, methods: str, n_queries: int | None, extra: list[str]) -> list[str]:
    """The ``cfbench run`` command line.  With a suite file (``-- --config FILE``) the file names
    the task and the methods: flags given on the command line would override the file's (its
    augmentation's method list included), so ``--task``/``--methods`` are then left out."""
    cmd = [sys.executable, "-m", "cfbench", "run", "--out", str(out)]
    if "--config" not in extra:
        cmd[4:4] = ["--task", "ai-readi", "--methods", methods]
    if n_queries is not None:
        cmd += ["--n-queries", str(n_queries)]
    return cmd + extra


def run_timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, list[tuple[float, str]]]:
    """(wall seconds, exit code, [(seconds since start, line)] of its stderr and stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, bufsize=1)
    lines: list[tuple[float, str]] = []
    lock = threading.Lock()

    def pump(stream) -> None:
        for line in stream:
            with lock:
                lines.append((time.perf_counter() - t0, line.rstrip("\n")))
            sys.stderr.write(line)

    threads = [threading.Thread(target=pump, args=(s,), daemon=True) for s in (proc.stdout, proc.stderr)]
    threads.append(threading.Thread(target=sample_memory, args=(proc,), daemon=True))
    for t in threads:
        t.start()
    code = proc.wait()
    for t in threads:
        t.join(10)
    return time.perf_counter() - t0, code, sorted(lines)


#: the largest resident memory of the command's whole process tree seen, in bytes
PEAK = {"rss": 0}


def sample_memory(proc: subprocess.Popen, every: float = 1.0) -> None:
    """Sum the resident memory of ``proc`` and all its descendants every second; keep the peak
    (psutil, from the ``dev`` extra; without it memory is not measured)."""
    try:
        import psutil
    except ImportError:
        PEAK["rss"] = -1
        return
    try:
        root = psutil.Process(proc.pid)
    except psutil.Error:
        return
    while proc.poll() is None:
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            break
        PEAK["rss"] = max(PEAK["rss"], total)
        time.sleep(every)


def cells(out: Path) -> list[dict]:
    """Per-cell timings from the run's records."""
    by: dict[tuple, list[dict]] = {}
    with open(out / "records.jsonl", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            by.setdefault((r["method"], r["variant"], r["seed"]), []).append(r)
    rows = []
    for (method, variant, seed), recs in sorted(by.items()):
        secs = [r["seconds"] for r in recs if isinstance(r["seconds"], (int, float))]
        fit = next((r["fit_seconds"] for r in recs if isinstance(r.get("fit_seconds"), (int, float))
                    and r["fit_seconds"] == r["fit_seconds"]), 0.0)
        label = method if variant == "default" else f"{method}:{variant}"
        # LLM cells: tokens decoded (the model's forward steps' output) per second of the cell
        tokens = sum(int((r.get("extra") or {}).get("new_tokens") or 0) for r in recs)
        rows.append({"cell": f"{label} seed {seed}", "queries": len(recs), "new_tokens": tokens,
                     "s_per_query": statistics.median(secs) if secs else float("nan"),
                     "fit_seconds": fit, "cell_seconds": fit + sum(secs),
                     "ok": sum(r["status"] == "ok" for r in recs)})
    return sorted(rows, key=lambda r: -r["cell_seconds"])


def run_end(lines: list[tuple[float, str]], wall: float) -> float:
    """Seconds until the run's summary was written: the run's own wall time, without an
    augmentation that a suite file (``--config``) may add after it."""
    return next((t for t, x in lines if x.startswith("wrote ") and "summary.json" in x), wall)


def phases(lines: list[tuple[float, str]], wall: float, suite: bool) -> dict[str, float]:
    """Start-up + task load, cells, scoring + summary, from when the lines were printed; then
    what follows ``summary.json``: the suite file's augmentation (``suite``) or the printed table
    and the exit."""
    plan = next((t for t, x in lines if x.startswith("plan:")), None)
    end = run_end(lines, wall)
    finished = [t for t, x in lines if x.startswith(("✓", "✗")) and t <= end]
    if plan is None or not finished:
        return {}
    out = {"start-up and task load": plan, "cells": max(finished) - plan,
           "scoring, summary and table": end - max(finished)}
    if suite:
        out["augmentation (suite file; not part of the run's time)"] = wall - end
    else:
        out["table and exit, after summary.json"] = wall - end
    return out


def parse_duration(text: str) -> float | None:
    """Seconds of a duration as the progress lines print it (``42 s``, ``3 min 05 s``, ``1 h 12 min``)."""
    m = re.fullmatch(r"\s*(?:(\d+) h)?\s*(?:(\d+) min)?\s*(?:(\d+) s)?\s*", text)
    if not m or not any(m.groups()):
        return None
    h, mi, s = (int(g or 0) for g in m.groups())
    return 3600.0 * h + 60.0 * mi + s


def plan_check(lines: list[tuple[float, str]], wall: float, mode: str) -> dict[str, float]:
    """The plan line's estimate (the cold one, "if ... must first do its one-time set-up", on a
    cold run) against what followed it: the time from the plan line to the run's summary."""
    at, line = next(((t, x) for t, x in lines if x.startswith("plan:")), (None, ""))
    m = re.search(r"expected about ([^;(]+?)(?: \(about ([^;(]+?) if [^)]*\))?(?:;.*)?$", line)
    if at is None or not m:
        return {}
    warm, cold = parse_duration(m.group(1)), parse_duration(m.group(2) or "")
    est = cold if mode == "cold" and cold is not None else warm
    if est is None:
        return {}
    taken = wall - at
    return {"estimate": est, "measured": taken, "ratio": taken / est if est else float("nan")}


def declared(rows: list[dict], budget: float) -> list[dict]:
    """Each cell's declared cost (the scheduler's ``cell_cost`` for its queries) against its
    measured time (fit + queries, from the records)."""
    from cfbench.execution import schedule

    out = []
    for r in rows:
        label = r["cell"].rsplit(" seed ", 1)[0]
        method, _, variant = label.partition(":")
        exp = schedule.cell_cost(method, variant or "default", r["queries"], budget)
        out.append({"cell": r["cell"], "declared": exp, "measured": r["cell_seconds"],
                    "ratio": r["cell_seconds"] / exp if exp else float("nan")})
    return out


def report(wall: float, rows: list[dict], split: dict[str, float], mode: str,
           plan: dict[str, float] | None = None, costs: list[dict] | None = None) -> str:
    target = WARM_TARGET if mode == "warm" else COLD_TARGET
    out = [f"## headline run ({mode})", "",
           f"wall time of the run {wall / 60:.1f} min (target <= {target / 60:.0f} min: "
           f"{'met' if wall <= target else 'NOT met'})", "",
           "| cell | queries | ok | s/query | fit (s) | cell (s) | new tokens | tokens/s |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rate = r["new_tokens"] / max(r["cell_seconds"] - r["fit_seconds"], 1e-9)
        tok = (f"{r['new_tokens']} | {rate:.0f}" if r["new_tokens"] else "– | –")
        out.append(f"| {r['cell']} | {r['queries']} | {r['ok']} | {r['s_per_query']:.3g} | "
                   f"{r['fit_seconds']:.1f} | {r['cell_seconds']:.1f} | {tok} |")
    peak = PEAK["rss"]
    out += ["", "peak resident memory of the whole process tree (sampled each second): "
            + (f"{peak / 2**30:.1f} GiB" if peak > 0 else "not measured (needs psutil)")]
    total = sum(r["cell_seconds"] for r in rows)
    out += ["", f"cells' own time together: {total:.0f} s "
            f"({total / max(wall, 1e-9):.2f} × the wall time)", ""]
    if split:
        out += ["| phase | seconds | share |", "|---|---|---|"]
        whole = sum(split.values())
        out += [f"| {k} | {v:.1f} | {v / whole:.0%} |" for k, v in split.items()]
    if plan:
        out += ["", f"plan line: expected {plan['estimate']:.0f} s; from the plan line to the summary "
                    f"{plan['measured']:.0f} s ({plan['ratio']:.2f} × the estimate)"]
    if costs:
        out += ["", "| cell | declared (s) | measured (s) | measured / declared |", "|---|---|---|---|"]
        out += [f"| {c['cell']} | {c['declared']:.1f} | {c['measured']:.1f} | {c['ratio']:.2f} |" for c in costs]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--warm", dest="mode", action="store_const", const="warm",
                      help="use the existing cache (the default)")
    mode.add_argument("--cold", dest="mode", action="store_const", const="cold",
                      help="a fresh CFBENCH_CACHE: synthetic data, model conversion, fine-tune")
    ap.add_argument("--methods", default="all", help="as for cfbench run")
    ap.add_argument("--n-queries", type=int, default=None, help="queries per class (task default)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the run folder here")
    ap.add_argument("--cache", type=Path, default=None,
                    help="with --cold: the fresh cache folder to fill and keep (must not exist "
                         "or be empty; default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument("extra", nargs=argparse.REMAINDER,
                    help="more cfbench run flags after --, e.g. -- --budget 5")
    args = ap.parse_args(argv)
    args.mode = args.mode or "warm"
    if args.n_queries is not None and args.n_queries < 1:
        ap.error(f"--n-queries must be a positive integer, got {args.n_queries}")
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    with tempfile.TemporaryDirectory(prefix="cfbench-headline-") as tmp:
        out = args.keep or Path(tmp) / "run"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if args.mode == "cold":
            if args.cache is not None and args.cache.exists() and any(args.cache.iterdir()):
                ap.error(f"--cache {args.cache} is not empty; a cold run needs an empty folder")
            env["CFBENCH_CACHE"] = str(args.cache or Path(tmp) / "cache")
        cmd = command(out, args.methods, args.n_queries, extra)
        print("$ " + " ".join(cmd) + (f"   (CFBENCH_CACHE={env['CFBENCH_CACHE']})"
                                      if args.mode == "cold" else ""), file=sys.stderr)
        total, code, lines = run_timed(cmd, env)
        if code != 0:
            print(f"cfbench run exited with {code}", file=sys.stderr)
            return code
        wall = run_end(lines, total)
        rows = cells(out)
        split = phases(lines, total, suite="--config" in extra and "--no-augment" not in extra)
        plan = plan_check(lines, wall, args.mode)
        budget = next((float(m.group(1)) for _, x in lines
                       if (m := re.match(r"plan: .*budget ([0-9.]+) s/query", x))), 2.0)
        costs = declared(rows, budget)
    print(report(wall, rows, split, args.mode, plan, costs))
    if args.json:
        from cfbench.core.strict_json import dumps

        # strict JSON: a cell whose records carry no seconds has a null s/query, not NaN
        args.json.write_text(dumps({"mode": args.mode, "wall": wall, "total": total,
                                    "peak_rss": PEAK["rss"], "cells": rows,
                                    "phases": split, "plan": plan, "declared": costs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
