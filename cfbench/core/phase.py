"""Long phases say what they are doing: one status line, routed to whoever is listening.

Code with a long first-run step (the synthetic AI-READI release, the model conversion, LoRA
fine-tuning) calls :func:`say` or :func:`step`; the command line shows the text in its status
line, and a worker process forwards it to the parent over its pipe.  With no listener the calls
do nothing, so library code may call them freely.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_sink: Callable[[str], None] | None = None
_ready_sink: Callable[[], None] | None = None
_last: dict[str, float] = {}
#: seconds between two step() messages of the same phase
STEP_EVERY = 1.0


def set_sink(fn: Callable[[str], None] | None) -> Callable[[str], None] | None:
    """Route phase messages to ``fn`` (``None``: drop them); returns the previous sink."""
    global _sink
    prev, _sink = _sink, fn
    return prev


def set_ready_sink(fn: Callable[[], None] | None) -> Callable[[], None] | None:
    """Route :func:`ready` to ``fn`` (``None``: drop it); returns the previous sink."""
    global _ready_sink
    prev, _ready_sink = _ready_sink, fn
    return prev


def ready() -> None:
    """This cell's shared first-use set-up (``GeneratorSpec.setup``, e.g. a model converted into
    the cache) is done: cells of other methods waiting for it may start.  Never raises."""
    if _ready_sink is None:
        return
    try:
        _ready_sink()
    except Exception:  # noqa: BLE001
        pass


def say(text: str) -> None:
    """Announce a phase; never raises (a display problem must not stop the work)."""
    if _sink is None:
        return
    try:
        _sink(text)
    except Exception:  # noqa: BLE001
        pass


def step(text: str, done: int, total: int) -> None:
    """``text: done/total``, at most once per :data:`STEP_EVERY` seconds per phase (and the last)."""
    if _sink is None:
        return
    now = time.monotonic()
    if done < total and now - _last.get(text, -1e9) < STEP_EVERY:
        return
    _last[text] = now
    say(f"{text}: {done}/{total}")
