"""A lock file for one-time set-ups that parallel workers share (a model conversion, a VAE)."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed): the first worker does the
    work, the others wait and then find it done.  The kernel drops the lock if the holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def torch_one_thread() -> Iterator[None]:
    """Torch on one thread for the block: small tensors gain nothing from more, and one thread
    gives the same sums on every run (the thread count is restored afterwards)."""
    import torch  # optional (the nice/llm extras): only methods that use torch call this

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
