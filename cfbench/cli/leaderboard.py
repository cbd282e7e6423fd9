"""``cfbench leaderboard``: show a run's leaderboard (``cfbench.leaderboard``), re-score a run,
or update, check and validate the committed boards under ``leaderboard/``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cfbench import entry, smoke
from cfbench.core.errors import UserError
from cfbench.core.strict_json import dumps
from cfbench.records import runs
from cfbench.records.store import load_records, read_run_info
from cfbench.report import board as boards
from cfbench.report import merge
from cfbench.report.check import verify_boards
from cfbench.score.summary import load_run_task, score_run


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cfbench leaderboard``."""
    lb = subparsers.add_parser("leaderboard", help="show a run's leaderboard, or update/check the committed ones")
    lb.add_argument("run_dir", nargs="?", type=Path,
                    help="a run folder (default: the latest run under ./runs)")
    lb.add_argument("--format", choices=("table", "markdown", "json"), default="table",
                    help="output format")
    lb.add_argument("--wide", action="store_true", help="every column in the table")
    lb.add_argument("--update", action="store_true",
                    help="regenerate leaderboard/<task>.{json,md,svg} from RUN_DIR")
    lb.add_argument("--rescore", action="store_true",
                    help="re-score with the current metrics (loads the task): RUN_DIR's "
                    "scores.parquet and summary.json, or without RUN_DIR every committed board "
                    "in --dir from its committed records")
    lb.add_argument("--add", action="store_true",
                    help="add RUN_DIR's methods to the committed board of its task without "
                    "re-running the others (same task, classifier, queries and settings)")
    lb.add_argument("--replace", action="store_true",
                    help="with --add: replace the rows of methods already on the board")
    lb.add_argument("--augment", type=Path, default=None,
                    help="with --update: the --out folder of `cfbench augment` for the same "
                    "task; with --add: a study at the board's protocol whose methods join it")
    lb.add_argument("--keep-augmentation", action="store_true",
                    help="with --update: keep the augmentation study of the board being "
                    "replaced (marked as kept on the board)")
    lb.add_argument("--dir", type=Path, default=Path("leaderboard"), help="leaderboard folder")
    lb.add_argument("--check", action="store_true",
                    help="re-run the smoke configuration and compare with the committed numbers")
    lb.add_argument("--write", action="store_true", help="with --check: store the new smoke numbers")
    lb.add_argument("--validate", action="store_true",
                    help="validate the leaderboard files against leaderboard/schema.json")
    lb.set_defaults(func=cmd_leaderboard)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """Check/validate, re-score, update, or print one run's board (the latest by default)."""
    if args.check or args.validate:
        status = 0
        if args.validate:
            errors = smoke.validate_boards(args.dir, args.dir / "schema.json")
            for e in errors:
                print(e)
            print(f"schema: {'ok' if not errors else f'{len(errors)} problems'}")
            tied, warnings = verify_boards(args.dir)
            for w in warnings:
                print(f"warning: {w}")
            for e in tied:
                print(e)
            print(f"boards against their JSON and records: {'ok' if not tied else 'FAILED'}")
            status |= bool(errors) | bool(tied)
        if args.check:
            ok, report = smoke.check(args.dir / smoke.SUITE, args.dir / "smoke", write=args.write)
            print("\n".join(report))
            status |= not ok
        return int(status)
    if args.rescore and args.run_dir is None:
        for p in boards.rebuild_boards(args.dir):
            print(f"wrote {p}")
        return 0
    if args.rescore:
        task = load_run_task(args.run_dir, read_run_info(args.run_dir))
        score_run(args.run_dir, task, load_records(args.run_dir))
        print(f"wrote {Path(args.run_dir) / 'summary.json'} and "
              f"{Path(args.run_dir) / 'scores.parquet'}", file=sys.stderr)
        if not args.update:
            return 0
    if args.add:
        if args.run_dir is None or args.update or args.keep_augmentation:
            raise UserError("--add takes one run folder and no --update/--keep-augmentation: "
                            "cfbench leaderboard --add runs/mine")
        board, records, notes = merge.add_run(args.dir, args.run_dir, augment_dir=args.augment,
                                              replace=args.replace)
        paths = boards.write_board(board, args.dir, records=records)
        for line in notes + [f"wrote {p}" for p in paths]:
            print(line)
        print(f"check it with `cfbench leaderboard --validate --dir {args.dir}` and rebuild the "
              f"page with `cfbench report --board {args.dir}`", file=sys.stderr)
        return 0
    if args.replace:
        raise UserError("--replace goes with --add: cfbench leaderboard --add RUN --replace")
    if args.keep_augmentation and (not args.update or args.augment is not None):
        raise UserError("--keep-augmentation goes with --update and without --augment")
    if args.update:
        if args.run_dir is None:
            raise UserError("--update needs the run folder: cfbench leaderboard runs/heart/<time> --update")
        board = entry.leaderboard(args.run_dir, board=True, augment_dir=args.augment)
        if args.keep_augmentation:
            board = merge.keep_augmentation(board, args.dir)
        for p in boards.write_board(board, args.dir, records=load_records(args.run_dir)):
            print(f"wrote {p}")
        return 0
    run_dir = args.run_dir
    if run_dir is None:
        run_dir = runs.latest_run(runs.RUNS)
        if run_dir is None:
            raise UserError(f"cfbench leaderboard: no run under {runs.RUNS}/; give the run folder, "
                            "e.g. `cfbench leaderboard runs/heart/20250101T120000Z`")
        print(f"latest run: {run_dir}", file=sys.stderr)
    summary = entry.leaderboard(run_dir)
    if args.format == "json":
        print(dumps(summary, indent=2))
    elif args.format == "markdown":
        print(boards.to_markdown(summary))
    else:
        boards.print_table(summary, wide=args.wide)
    return 0
