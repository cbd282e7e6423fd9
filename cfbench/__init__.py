"""cfbench: a benchmark harness for counterfactual-explanation generators on tabular health data."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cfbench-harness")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
