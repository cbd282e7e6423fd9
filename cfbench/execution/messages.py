"""The messages between the driver and a cell's worker, the same for every executor.

Each is a named tuple whose first item is its kind, so it pickles to any worker (a fork-server
process, a Ray actor) and an executor written against the plain-tuple protocol still works:
the driver reads what arrives with ``Kind._make``.  A field added later has a default, and the
driver pads a shorter tuple with it (an older worker's ``Results`` has no ``traceback``).  A
worker's first message is ``Fitted`` or
``FitError``; each ``Batch`` is answered with one ``Results``; ``Stop`` ends it.  A local
worker also sends ``("phase", text)`` and ``("ready",)`` while it fits (``cfbench.core.phase``).
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Fitted(NamedTuple):
    """The generator is fitted: ``fit`` took ``seconds``; ``provenance`` describes the worker's
    machine (versions, platform, host)."""

    kind: str
    seconds: float
    provenance: dict[str, Any]


class FitError(NamedTuple):
    """The generator could not be built or fitted (or a preload failed), and why; ``traceback``
    is the full text of what was raised (bounded, see ``failure.format_traceback``), or ``""``."""

    kind: str
    reason: str
    traceback: str = ""


class Batch(NamedTuple):
    """Queries to answer: their feature rows and target classes, ``k`` CFs each, within
    ``budget`` CPU seconds per query; ids run on from ``first_query_id``."""

    kind: str
    first_query_id: int
    rows: list[list[float]]
    targets: list[int]
    k: int
    budget: float


class Results(NamedTuple):
    """One checked, redacted record per query of the batch, and the seconds ``generate`` took;
    ``traceback`` is what ``generate`` raised (bounded), or ``""``."""

    kind: str
    first_query_id: int
    outputs: list[dict[str, Any]]
    seconds: float
    traceback: str = ""


def fitted(seconds: float, provenance: dict[str, Any]) -> Fitted:
    return Fitted("fitted", seconds, provenance)


def fit_error(reason: str, traceback: str = "") -> FitError:
    return FitError("fit_error", reason, traceback)


def batch(first_query_id: int, rows: list[list[float]], targets: list[int], k: int,
          budget: float) -> Batch:
    return Batch("batch", first_query_id, rows, targets, k, budget)


def results(first_query_id: int, outputs: list[dict[str, Any]], seconds: float,
            traceback: str = "") -> Results:
    return Results("results", first_query_id, outputs, seconds, traceback)


def read(kind: type[Any], msg: tuple) -> Any:
    """``msg`` as the named tuple ``kind``, a shorter tuple padded with the fields' defaults."""
    n = len(kind._fields)
    missing = kind._fields[len(msg):n]
    return kind._make((*msg[:n], *(kind._field_defaults[f] for f in missing)))


#: the message that ends a worker after its last batch
STOP = ("stop",)
