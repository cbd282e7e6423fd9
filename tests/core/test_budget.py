"""The budget's clock: CPU seconds of the process, so a search gets the same work however busy
the machine is (sleeping, i.e. waiting for the CPU, does not spend it)."""

from __future__ import annotations

import time

import pytest

from cfbench.core.budget import Deadline, clock, interrupt_after


class Stop(Exception):
    pass


def spin_until(cond, limit: float = 20.0) -> float:
    """Busy-loop until ``cond()``; returns the CPU seconds it took."""
    c0, w0 = clock(), time.monotonic()
    while not cond():
        assert time.monotonic() - w0 < limit, "the condition never came"
    return clock() - c0


def test_a_deadline_passes_on_cpu_time_not_on_waiting():
    d = Deadline(0.2)
    time.sleep(0.3)  # wall time passes, CPU time does not
    assert not d.passed() and d.left() > 0.1
    used = spin_until(d.passed)
    assert 0.05 < used <= 0.25 and d.left() <= 0


def test_interrupt_after_counts_cpu_time_and_is_cleared():
    with interrupt_after(0.2, Stop):
        time.sleep(0.3)  # no interrupt while waiting
    with pytest.raises(Stop), interrupt_after(0.2, Stop):
        spin_until(lambda: False)
    with interrupt_after(0.05, Stop):
        pass
    start = clock()
    spin_until(lambda: clock() - start > 0.15)  # disarmed on leaving: no Stop after 0.05 s
