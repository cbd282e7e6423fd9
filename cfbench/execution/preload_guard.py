"""Imported last by the workers' fork server: the methods' ``preload`` modules, one at a time.

Each import is reported to the progress file the parent names (``cfbench.execution.forkserver``), and
whatever an import raises is caught, so a broken module cannot end the server by an exception.
One that ends the process (``os._exit``, a crash) or never returns is found by the parent from
the last line written, which then restarts the server without it.  Without the two variables
(a server started some other way) importing this module does nothing.
"""

from __future__ import annotations

import os

from cfbench.execution.forkserver import MODULES_VAR, STATUS_VAR


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def preload(modules: list[str], status: str) -> None:
    """Import ``modules`` in order, writing ``start``/``ok``/``fail`` lines and ``done`` to ``status``."""
    with open(status, "a", encoding="utf-8") as fh:
        try:  # the parent reads it through its own open file: no file is left behind
            os.unlink(status)
        except OSError:
            pass

        def say(*fields: str) -> None:
            fh.write("\t".join(fields) + "\n")
            fh.flush()

        say("begin")
        for name in modules:
            say("start", name)
            try:
                __import__(name)
            except BaseException as exc:  # noqa: BLE001 - SystemExit too: the server must live on
                say("fail", name, _one_line(f"{type(exc).__name__}: {exc}"))
            else:
                say("ok", name)
        say("done")


_modules = [m for m in os.environ.pop(MODULES_VAR, "").split(",") if m]
_status = os.environ.pop(STATUS_VAR, "")
if _modules and _status:
    preload(_modules, _status)
