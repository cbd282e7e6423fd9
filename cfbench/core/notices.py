"""One-line warnings on stderr: things the user should know that do not stop the run."""

from __future__ import annotations

import sys


def warn(message: str) -> None:
    """Print ``cfbench: warning: <message>`` as a single line on stderr."""
    text = " ".join(str(message).split())
    print(f"cfbench: warning: {text}", file=sys.stderr, flush=True)
