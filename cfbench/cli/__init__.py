"""The command line, ``cfbench <command>``: ``app`` builds the parser and runs ``main``; each
core command is its own module (``run``, ``augment``, ``listing``, ``leaderboard``, ``report``,
``task``) with the flags and helpers they share in ``common``, and ``progress`` is the live
progress display."""

from cfbench.cli.app import main

__all__ = ["main"]
