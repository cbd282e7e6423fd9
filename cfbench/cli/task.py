"""``cfbench task init DATA --label COL``: the command line of writing a task spec for the
user's own table; what the spec says is decided in ``cfbench.tasks.init_spec``."""

from __future__ import annotations

import argparse

from cfbench.cli.common import Parser
from cfbench.tasks.datasets import MISSING_POLICIES
from cfbench.tasks.init_spec import cmd_task_init


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cfbench task`` and its one sub-command, ``init``."""
    task = subparsers.add_parser("task", help="write a task spec for your own table")
    tsub = task.add_subparsers(dest="task_command", required=True, parser_class=Parser)
    init = tsub.add_parser("init", help="write a commented spec for a CSV/Parquet file, then load it")
    init.add_argument("data", help="the table: .csv, .tsv or .parquet")
    init.add_argument("--label", required=True, help="the label column")
    init.add_argument("--positive", default=None,
                      help="the label value that is class 1 (default: 1/true of a 0/1 label)")
    init.add_argument("--out", default=None, help="spec file to write (default: tasks/<data>.toml)")
    init.add_argument("--name", default=None, help="task name (default: the --out file's stem)")
    init.add_argument("--id", default=None, help="row-identifier column (not a feature)")
    init.add_argument("--missing", choices=MISSING_POLICIES, default=None,
                      help="missing-cell policy (default: error, or impute-median if cells are missing)")
    init.add_argument("--model", default="random-forest",
                      help="built-in classifier: random-forest (default), gradient-boosting, mlp, "
                           "logistic-regression, hist-gradient-boosting, xgboost")
    init.add_argument("--model-file", default=None,
                      help="your own fitted scikit-learn pipeline saved with skops.io.dump")
    init.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    init.set_defaults(func=cmd_task_init)
