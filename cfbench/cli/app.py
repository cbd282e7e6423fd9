"""The ``cfbench`` command line: the parser of every command, and ``main``, which runs one and
turns a user mistake, Ctrl-C, SIGTERM or a closed pipe into its one line and exit status.

Every command is a module with ``add_parser(subparsers)`` that adds its parser and sets
``func``; the core's are registered from ``COMMANDS``, then the plugins' (``data``,
``finetune``, ...) through the ``cfbench_add_commands`` hook, which gets the same
``subparsers``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
import threading
from typing import Any

from cfbench import __version__
from cfbench.cli import augment, leaderboard, listing, report, run, task
from cfbench.cli.common import Parser
from cfbench.core.errors import UserError
from cfbench.core.plugins import add_commands, registry

DESCRIPTION = ("cfbench: run counterfactual-explanation generators on a task, score them and show "
               "the leaderboard. Start with `cfbench run --task ai-readi --methods all`.")
#: the core's commands, in the order ``cfbench --help`` lists them (the plugins' come after)
COMMANDS = (run, augment, listing, leaderboard, report, task)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: the core's commands, then those the plugins add."""
    parser = Parser(prog="cfbench", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"cfbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    add_commands(registry(), sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: workers are killed, finished records kept."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def _stdout_broken() -> bool:
    """Whether standard output is a pipe whose reader has gone (poll reports an error on it)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poll.poll(0))
    except (OSError, ValueError, AttributeError):
        return True


def main(argv: list[str] | None = None) -> int:
    """Run the command of ``argv`` (default: the process's arguments); returns the exit status."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # a plugin printing at import time
            parser = build_parser()
        args = parser.parse_args(argv)
        args._argv = list(sys.argv[1:] if argv is None else argv)[1:]  # after the command name
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"cfbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print("cfbench: interrupted; finished records are kept (re-run with --resume)", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError as exc:
        if not _stdout_broken():  # another pipe broke (a dead worker or server): not a success
            print(f"cfbench: a pipe to a helper process closed unexpectedly ({exc}); finished "
                  "records are kept (re-run with --resume)", file=sys.stderr)
            return 1
        # `cfbench leaderboard | head`: the reader left, nothing is wrong
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

