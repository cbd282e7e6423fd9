"""``cfbench report``: the offline HTML page of a run folder, or ``index.html`` across the
committed boards (the page itself is built by ``cfbench.report.html``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cfbench.core.errors import UserError
from cfbench.report.html import build_board_index, build_run_report


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cfbench report``."""
    p = subparsers.add_parser("report", help="HTML report of a run folder, or leaderboard/index.html "
                              "across the committed boards (--board)")
    p.add_argument("run_dir", nargs="?", type=Path, help="the --out folder of a finished run")
    p.add_argument("--augment", type=Path, action="append", default=[],
                   help="the --out folder of `cfbench augment` (repeat for several fractions)")
    p.add_argument("--board", type=Path, default=None,
                   help="build index.html across the <task>.json boards of this folder instead")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for index.html (default: RUN_DIR/report, or the --board folder)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """Write the page and say where."""
    if args.board is not None:
        if args.run_dir is not None or args.augment:
            raise UserError("--board builds the index from the board files alone; "
                            "give either RUN_DIR (with --augment) or --board, not both")
        path = build_board_index(args.board, args.out)
    else:
        if args.run_dir is None:
            raise UserError("cfbench report: give a run folder (cfbench report out/ --out site/) "
                            "or --board leaderboard/")
        path = build_run_report(args.run_dir, args.out or args.run_dir / "report", args.augment)
    print(f"wrote {path}")
    return 0
