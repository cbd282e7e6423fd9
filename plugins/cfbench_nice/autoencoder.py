"""The small autoencoder behind NICE's plausibility reward (torch, CPU, seeded, seconds to train).

Inputs are encoded as in NICE: numeric and ordinal features min-max scaled on the training data,
categorical features one-hot.  The architecture follows the NICE authors' code: widths
``d -> ceil(d/2) -> ceil(d/4) -> bottleneck -> ceil(d/4) -> ceil(d/2) -> d`` with ReLU and a
sigmoid output, trained with Adam on mean squared error.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from typing import Any

import numpy as np

from cfbench.api import FeatureSchema


@dataclass
class Encoder:
    """Min-max for continuous features, one-hot for categorical ones (unknown codes: all zeros)."""

    lo: np.ndarray
    span: np.ndarray
    cont: np.ndarray
    cat_cols: list[tuple[int, np.ndarray]]

    @classmethod
    def fit(cls, X: np.ndarray, schema: FeatureSchema) -> Encoder:
        cat = schema.mask("kind", "categorical")
        lo, hi = X.min(axis=0), X.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        cat_cols = []
        for j in np.flatnonzero(cat):
            codes = np.asarray(schema.features[j].categories or np.unique(X[:, j]), float)
            cat_cols.append((int(j), np.unique(np.concatenate([codes, np.unique(X[:, j])]))))
        return cls(lo, span, ~cat, cat_cols)

    def transform(self, X: np.ndarray) -> np.ndarray:
        parts = [((X - self.lo) / self.span)[:, self.cont]]
        parts += [(X[:, j][:, None] == codes[None, :]).astype(float) for j, codes in self.cat_cols]
        return np.concatenate(parts, axis=1)


class AutoEncoder:
    """A fitted encoder + network; ``errors(X)`` is the per-row mean squared reconstruction error."""

    def __init__(self, encoder: Encoder, net: Any) -> None:
        self.encoder = encoder
        self.net = net

    def errors(self, X: np.ndarray) -> np.ndarray:
        # optional (torch): only the plausibility variant needs it
        import torch

        Z = torch.as_tensor(self.encoder.transform(np.asarray(X, float)), dtype=torch.float32)
        with torch.no_grad():
            R = self.net(Z)
        return ((R - Z) ** 2).mean(dim=1).double().numpy()


def fit_autoencoder(
    X: np.ndarray, schema: FeatureSchema, seed: int, epochs: int = 100, bottleneck: int = 2
) -> AutoEncoder:
    """Train the autoencoder on the training rows ``X`` (seeded; CPU; one thread)."""
    try:
        # optional (torch): only the plausibility variant needs it
        import torch
        from torch import nn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "NICE's plausibility variant needs torch: pip install 'cfbench-harness[nice]'"
        ) from exc

    enc = Encoder.fit(X, schema)
    Z = torch.as_tensor(enc.transform(X), dtype=torch.float32)
    n, d = Z.shape
    h1, h2 = ceil(d / 2), ceil(d / 4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Linear(d, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(),
            nn.Linear(h2, bottleneck), nn.ReLU(),
            nn.Linear(bottleneck, h2), nn.ReLU(), nn.Linear(h2, h1), nn.ReLU(),
            nn.Linear(h1, d), nn.Sigmoid(),
        )
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        batch = max(1, ceil(n / 10))  # as in the NICE authors' code
        gen = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for s in range(0, n, batch):
                xb = Z[perm[s : s + batch]]
                loss = ((net(xb) - xb) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
    finally:
        torch.set_num_threads(threads)
    return AutoEncoder(enc, net)
