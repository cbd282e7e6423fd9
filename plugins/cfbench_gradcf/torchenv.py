"""Seeded, single-threaded torch for the gradient plugins.

Tiny networks run fastest on one thread, the searches must not compete with the benchmark's
other cells, and one thread makes float reductions (and so the CFs) repeatable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def load_torch(method: str) -> Any:
    """torch, or an ImportError naming the extra that brings it."""
    try:
        # optional (the `nice` extra) and slow to import: only gradient methods load it, at fit
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{method} needs torch: pip install 'cfbench-harness[nice]'") from exc
    return torch


@contextlib.contextmanager
def seeded(seed: int, method: str) -> Iterator[Any]:
    """torch on one thread with its global generator seeded; the thread count is restored."""
    torch = load_torch(method)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    try:
        yield torch
    finally:
        torch.set_num_threads(before)
