"""Stage 5, reports: leaderboards (data, Markdown, terminal), their schema and CI check, the HTML
page (its data, rendering, CSS and JavaScript) and its SVG charts, and the augmentation tables.
"""

import importlib
import importlib.util
import warnings
from typing import Any

#: where the names of the old ``cfbench/report.py`` module live now, searched in this order
_OLD_REPORT = ("cfbench.report.html", "cfbench.report.page_data", "cfbench.report.svg",
               "cfbench.report.values")


def __getattr__(name: str) -> Any:
    """``cfbench.report`` was the HTML report module; its names still resolve, with a warning.

    A submodule's name is left to the import system (``from cfbench.report import board`` imports
    the module), so the search below never runs while a submodule is half imported.
    """
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is None:
        for where in _OLD_REPORT:
            module = importlib.import_module(where)
            if hasattr(module, name):
                warnings.warn(f"cfbench.report's HTML functions moved to {where}",
                              DeprecationWarning, stacklevel=2)
                return getattr(module, name)
    raise AttributeError(f"module 'cfbench.report' has no attribute {name!r}")
