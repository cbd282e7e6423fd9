"""The clock a per-query search budget (``--budget``) is measured on: CPU seconds.

A budget in wall seconds gives an anytime search (CFNOW's fine-tuning, DiCE's give-up point) less
work on a busy machine than on an idle one, so the same command and seed scored differently with
the load.  A budget in CPU seconds of the worker process (all its threads; ``time.process_time``)
buys the same search whatever else runs: on an idle machine with one thread per cell (``--jobs``
at the core count) the two clocks advance together.  The runner's hard timeout stays on the wall
clock: it is the safety net for a worker that stops making progress, not a budget.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator


def clock() -> float:
    """Seconds on the budget's clock: CPU time used by this process so far (user + system)."""
    return time.process_time()


class Deadline:
    """A point ``seconds`` ahead on the budget's clock; ``passed()`` says whether it is behind us."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.end = clock() + self.seconds

    def passed(self) -> bool:
        return clock() > self.end

    def left(self) -> float:
        """Budget seconds still to go (negative once passed)."""
        return self.end - clock()


@contextlib.contextmanager
def interrupt_after(seconds: float, exc: type[BaseException]) -> Iterator[None]:
    """Raise ``exc`` in the main thread once this process has used ``seconds`` more CPU time.

    For searches that can spin without ever reaching a point that checks a ``Deadline``.  Uses
    ``ITIMER_PROF`` (process CPU time, SIGPROF), so it counts on the budget's clock; a no-op
    outside the main thread or where there is no ``setitimer``, and the runner's hard timeout
    is then the backstop.
    """
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def _raise(_signum: int, _frame: object) -> None:
        raise exc

    previous = signal.signal(signal.SIGPROF, _raise)
    signal.setitimer(signal.ITIMER_PROF, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
