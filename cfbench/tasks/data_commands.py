"""``cfbench data``: fetch the catalogue's tables that do not ship, and the AI-READI commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from cfbench.core.errors import UserError, choices_error
from cfbench.tasks.ai_readi.commands import add_ai_readi_commands
from cfbench.tasks.catalogue import remote
from cfbench.tasks.fetch import copy_into_cache, fetch, is_present
from cfbench.tasks.spec import available_specs, load_spec


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``data`` command group on the ``cfbench`` CLI."""
    data = subparsers.add_parser(
        "data", help="fetch catalogue tables that do not ship; inspect and generate AI-READI data")
    sub = data.add_subparsers(dest="data_command", metavar="COMMAND")
    sub.required = True
    get = sub.add_parser("fetch", help="download a fetched task's table into the cache, "
                         "checksum verified (TASK, TASK,TASK or all)")
    get.add_argument("tasks", metavar="TASK", help="a task name, a comma-separated list, or all")
    get.add_argument("--file", type=Path, default=None,
                     help="place this already downloaded copy instead (one task; checksum verified)")
    get.set_defaults(func=cmd_fetch)
    add_ai_readi_commands(sub)


def cmd_fetch(args: argparse.Namespace) -> int:
    """Bring each named (or every) fetched task's file into the cache; one line per task."""
    specs = available_specs()
    names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    if names == ["all"]:
        names = sorted(specs)
    for name in names:
        if name not in specs:
            raise choices_error("task", name, [*specs, "all"])
    if args.file is not None and len(names) != 1:
        raise UserError(f"--file {args.file}: give exactly one task to place it for, "
                        f"not {len(names)}")
    console = Console(highlight=False, soft_wrap=True)  # one line per task, never wrapped
    errors = Console(highlight=False, soft_wrap=True, stderr=True)
    failed = 0
    for name in names:
        spec = load_spec(specs[name])
        if spec.loader != "fetched":
            if args.tasks != "all":
                console.print(f"{name}: nothing to fetch (its data comes from loader "
                              f"{spec.loader!r})")
            continue
        src = remote(spec.loader_options, f"{spec.path}: dataset.options")
        try:
            if args.file is not None:
                path = copy_into_cache(src, args.file, name)
                console.print(f"{name}: placed {args.file} at {path} ({src.expected} verified)")
            elif is_present(src):
                path = fetch(src, name)  # verifies the cached copy again
                console.print(f"{name}: present at {path} ({src.expected} verified)")
            else:
                path = fetch(src, name)
                size = path.stat().st_size
                console.print(f"{name}: fetched {src.address()} ({size:,} bytes) into {path} "
                              f"({src.expected} verified)")
        except UserError as exc:  # the others still get their turn
            failed += 1
            errors.print(str(exc), style="red", markup=False)
    return 1 if failed else 0
