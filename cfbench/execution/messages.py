"""The messages between the driver and a cell's worker, the same for every executor.

Each is a named tuple whose first item is its kind, so it pickles to any worker (a fork-server
process, a Ray actor) and an executor written against the plain-tuple protocol still works:
the driver reads what arrives with ``Kind._make``.  A worker's first message is ``Fitted`` or
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
    """The generator could not be built or fitted (or a preload failed), and why."""

    kind: str
    reason: str


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
    """One checked, redacted record per query of the batch, and the seconds ``generate`` took."""

    kind: str
    first_query_id: int
    outputs: list[dict[str, Any]]
    seconds: float


def fitted(seconds: float, provenance: dict[str, Any]) -> Fitted:
    return Fitted("fitted", seconds, provenance)


def fit_error(reason: str) -> FitError:
    return FitError("fit_error", reason)


def batch(first_query_id: int, rows: list[list[float]], targets: list[int], k: int,
          budget: float) -> Batch:
    return Batch("batch", first_query_id, rows, targets, k, budget)


def results(first_query_id: int, outputs: list[dict[str, Any]], seconds: float) -> Results:
    return Results("results", first_query_id, outputs, seconds)


#: the message that ends a worker after its last batch
STOP = ("stop",)
