"""The command line, ``cfbench <command>``: the parser and dispatch in ``app``, the live progress
display in ``progress``."""

from cfbench.cli.app import main

__all__ = ["main"]
