"""What a failure in a plugin says: one line that points at the plugin's own code, and the
bounded traceback behind it.

A generator that raises is mostly seen through the library it called (``KeyError … at
base.py:3823`` is a pandas line), so the reason names the deepest traceback frame inside the
plugin's code, found from the modules the method comes from (:func:`code_roots`), and falls
back to the deepest frame overall.  Both are computed in the worker, where the traceback lives;
the full traceback travels to the driver in the worker's message and is saved under
``OUT/logs/``.  Everything is cut to a fixed size: a hostile plugin may raise with a 1 GB
message, and a reason or traceback must never cost more than a few kilobytes.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

import cfbench

#: at most this many characters of an exception's message, in a reason and in a traceback
MESSAGE_CHARS = 2000
#: at most this many characters of one traceback (its end is kept: the deepest frames)
TRACEBACK_CHARS = 20_000
#: at most this many frames of each exception in a chain (the deepest ones)
FRAMES = 100
#: at most this many exceptions of a ``__cause__`` / ``__context__`` chain
CHAIN = 8

_HARNESS = cfbench.__name__


def code_roots(modules: tuple[str, ...]) -> tuple[str, ...]:
    """The files and folders whose frames are the plugin's own, for the named ``modules`` (its
    entry point's, its factory's, its generator class's).

    A module in a package stands for its whole top-level package folder (helpers in sibling
    modules count); a top-level module for its file alone (its folder is site-packages).  A
    module of cfbench itself (a built-in method) stands for its own file only, as the rest of
    cfbench is the harness.  Modules not imported or without a file are left out.
    """
    roots: list[str] = []
    for name in modules:
        if not name or name == _HARNESS:
            continue
        top = name.partition(".")[0]
        mod = sys.modules.get(name if top == _HARNESS else top)
        path = _module_path(mod)
        if path is not None and path not in roots:
            roots.append(path)
    return tuple(roots)


def _module_path(mod: object) -> str | None:
    """A package's folder or a module's file, absolute; None when it has neither."""
    locations = getattr(mod, "__path__", None)
    if locations:
        first = next(iter(locations), None)
        return os.path.abspath(first) if isinstance(first, str) else None
    file = getattr(mod, "__file__", None)
    return os.path.abspath(file) if isinstance(file, str) else None


def _inside(filename: str, root: str) -> bool:
    path = os.path.abspath(filename)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def where(exc: BaseException, roots: Iterable[str] = ()) -> str:
    """``" at pkg/module.py:42"``: the deepest frame of ``exc``'s traceback inside ``roots``
    (named from its root's folder, e.g. ``cfbench_gs/search.py``), else the deepest frame
    (its file name alone); ``""`` without a traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    for frame in reversed(frames):
        for root in roots:
            if _inside(frame.filename, root):
                shown = os.path.relpath(os.path.abspath(frame.filename), os.path.dirname(root))
                return f" at {Path(shown).as_posix()}:{frame.lineno}"
    return f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}"


def describe_exception(exc: BaseException, roots: Iterable[str] = ()) -> str:
    """``Type: message at file:line`` in at most :data:`MESSAGE_CHARS` characters, the
    location from :func:`where` (the plugin's own line when ``roots`` are given) kept whole
    however long the message."""
    try:
        at = where(exc, tuple(roots))[:300]
    except Exception:  # noqa: BLE001 - a traceback that cannot be read still gives a reason
        at = ""
    head = f"{type(exc).__name__}: {_message(exc, MESSAGE_CHARS - 400)}"
    return head[:MESSAGE_CHARS - len(at)] + at


def _message(exc: BaseException, limit: int = MESSAGE_CHARS) -> str:
    """``str(exc)`` cut to ``limit`` characters (cut before anything is added to it)."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ raises
        return "<unprintable>"
    if not isinstance(text, str):
        return "<unprintable>"
    if len(text) > limit:
        return f"{text[:limit]}… ({len(text) - limit} more characters)"
    return text


def format_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` and of the exceptions it was raised from or during, as Python
    prints it, in at most :data:`TRACEBACK_CHARS` characters (the end is kept).

    Written here rather than by ``traceback.format_exception``, which copies the whole message
    (however large) before it could be cut.  Never raises: the worker calls it while handling
    what the plugin raised.
    """
    try:
        return _format(exc)
    except Exception:  # noqa: BLE001 - e.g. a note whose __str__ raises
        return f"(traceback could not be formatted)\n{type(exc).__name__}: {_message(exc)}\n"


def _format(exc: BaseException) -> str:
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen and len(chain) < CHAIN:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, ("The above exception was the direct cause of "
                                                "the following exception:")
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, ("During handling of the above exception, "
                                                  "another exception occurred:")
        else:
            current = None
    parts: list[str] = []
    for e, link_to_next in reversed(chain):
        parts.append(_one(e))
        if link_to_next:
            parts.append(f"\n{link_to_next}\n\n")
    text = "".join(parts)
    if len(text) > TRACEBACK_CHARS:
        cut = len(text) - TRACEBACK_CHARS
        text = f"[… the first {cut} characters are cut …]\n" + text[cut:]
    return text


def _one(exc: BaseException) -> str:
    """One exception: its (deepest :data:`FRAMES`) frames, then ``Type: message`` and notes."""
    out = []
    try:
        frames = traceback.extract_tb(exc.__traceback__, limit=-FRAMES)
        if frames:
            out.append("Traceback (most recent call last):\n")
            out.extend(line[:MESSAGE_CHARS] for line in traceback.format_list(frames))
    except Exception:  # noqa: BLE001 - an unreadable traceback still gives the exception line
        out.append("(traceback unreadable)\n")
    kind = type(exc)
    name = (kind.__qualname__ if kind.__module__ in ("builtins", "__main__")
            else f"{kind.__module__}.{kind.__qualname__}")
    out.append(f"{name}: {_message(exc)}\n")
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        out.extend(f"{str(n)[:MESSAGE_CHARS]}\n" for n in notes[:10])
    return "".join(out)
