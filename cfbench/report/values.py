"""Values as the HTML page shows them, shared by its tables (``html.py``), charts (``svg.py``) and
data (``page_data.py``): finite numbers or none, metric headers, scenario names.

A module of its own so the three need not import each other (``page_data`` imports ``board``,
which imports ``svg``: ``svg`` importing ``page_data`` would close a cycle).
"""

from __future__ import annotations

import math
from typing import Any

from cfbench.score import registry as R

#: the augmentation scenarios, as the page names them
SCENARIOS = {"A": "positives removed", "B": "negatives removed", "C": "both removed"}


def num(v: Any) -> float | None:
    """``v`` as a finite float, or None (missing, null, NaN, ±inf, not a number): shown as "–"."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def ranked_header(metric: str) -> str:
    """A ranked metric's header from the metric registry; its name when the registry has none."""
    try:
        return R.get(metric).header
    except KeyError:
        return metric
