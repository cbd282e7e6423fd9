"""Stage 5, reports: leaderboards (data, Markdown, terminal), their schema and CI check, the HTML
page and its SVG charts, and the augmentation tables.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    """``cfbench.report`` was the HTML report module; its names still resolve, with a warning.

    A submodule not imported yet is no such name: ``from cfbench.report import augment`` must
    load ``report.augment``, not ``report.html`` (whose imports may be half done then)."""
    import importlib
    import importlib.util
    import warnings

    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        raise AttributeError(f"module 'cfbench.report' has no attribute {name!r}")
    html = importlib.import_module("cfbench.report.html")
    if name.startswith("__") or not hasattr(html, name):
        raise AttributeError(f"module 'cfbench.report' has no attribute {name!r}")
    warnings.warn("cfbench.report's HTML functions moved to cfbench.report.html",
                  DeprecationWarning, stacklevel=2)
    return getattr(html, name)
