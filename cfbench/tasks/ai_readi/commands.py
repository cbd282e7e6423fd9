"""``cfbench data ...``: write a synthetic AI-READI release, export a feature table, print the report.

Only ``argparse`` is imported at module level; the loader and generator are imported when a
command runs, so ``cfbench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cfbench.core.errors import UserError
from cfbench.tasks.ai_readi.loader import (
    STRESS_THRESHOLD,
    feature_table,
    label_and_impute,
    resolve_source,
)
from cfbench.tasks.ai_readi.report import DataReport
from cfbench.tasks.ai_readi.synth import SynthParams, write_release


def add_ai_readi_commands(sub: argparse._SubParsersAction) -> None:
    """``cfbench data report | synth-ai-readi | ai-readi``: the AI-READI commands of the group."""
    rep = sub.add_parser(
        "report", help="count every file, masked value and dropped participant of an AI-READI release")
    _source_arg(rep)
    rep.add_argument("--json", action="store_true", help="print the full report as JSON")
    rep.add_argument("--max-issues", type=int, default=50, help="issues to list (default 50)")
    _build_args(rep)
    rep.set_defaults(func=cmd_report)

    syn = sub.add_parser("synth-ai-readi", help="write a synthetic AI-READI release (real layout, invented people)")
    syn.add_argument("--out", required=True, help="folder to create (must not exist or be empty)")
    syn.add_argument("--participants", type=int, default=500, help="number of participants (default 500)")
    syn.add_argument("--days", type=int, default=5, help="days of wear (default 5)")
    syn.add_argument("--release", default="v3", choices=("v1", "v2", "v3"), help="format version (default v3)")
    syn.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    syn.add_argument("--garmin-interval", type=int, default=5, dest="garmin_interval",
                     help="minutes between Garmin heart-rate/stress/respiration records (default 5)")
    syn.set_defaults(func=cmd_synth)

    exp = sub.add_parser("ai-readi", help="export the participant feature table of a release as CSV")
    _source_arg(exp)
    exp.add_argument("--out", required=True, help="CSV file to write")
    _build_args(exp)
    exp.set_defaults(func=cmd_export)


def _source_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--source", default=None,
        help="release folder; default: $CFBENCH_AI_READI_DIR, else the default synthetic release")


def _build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, default=1, help="processes for parsing raw files (default 1)")
    p.add_argument("--no-cache", action="store_true", help="rebuild from raw files, ignore the Parquet cache")


def _table(args: argparse.Namespace):
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: expected a positive integer")
    folder, text = resolve_source(args.source, SynthParams())
    return feature_table(folder, use_cache=not args.no_cache, n_jobs=args.jobs, source=text)


def cmd_report(args: argparse.Namespace) -> int:
    """Print the data report, plus the class balance of both AI-READI labels."""

    table, rep, _ = _table(args)
    lines = []
    for label in ("stress", "diabetes"):
        tmp = DataReport.from_dict(rep.to_dict())
        X, y = label_and_impute(table, tmp, label, STRESS_THRESHOLD)
        lines.append(f"label {label!r}: {len(y)} participants, class 0: {int((y == 0).sum())}, "
                     f"class 1: {int((y == 1).sum())}; imputed cells: {sum(tmp.imputed.values())} "
                     f"{dict(sorted(tmp.imputed.items()))}")
        for n in tmp.notes[len(rep.notes):]:
            lines.append(f"  note: {n}")
    if args.json:

        d = rep.to_dict()
        d["labels"] = lines
        print(json.dumps(d, indent=2, sort_keys=True))
    else:
        print(rep.render(max_issues=args.max_issues))
        print()
        print("\n".join(lines))
    return 0


def cmd_synth(args: argparse.Namespace) -> int:


    params = SynthParams(args.participants, args.days, args.release, args.seed, args.garmin_interval)
    t0 = time.perf_counter()
    out = write_release(args.out, params)
    print(f"wrote {params.describe()} to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    table, rep, _ = _table(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"wrote {len(table)} participants x {table.shape[1]} columns to {out} "
          f"(source: {rep.source}; {len(rep.issues)} issues, see 'cfbench data report')")
    return 0
