"""The variational autoencoder REVISE searches in: trained once per task, cached, seeded.

It models the MUTABLE columns of the encoded space (immutables are copied from the query, so
the decoder never has to reproduce them).  Scaled columns are reconstructed linearly, one-hot
columns through a sigmoid; the loss is squared error plus the KL term (a standard VAE).  The
weights are cached under ``cache_dir/revise`` keyed by a hash of the training columns, the
architecture, the training parameters and the seed, saved with ``torch.save`` and read back
with ``weights_only=True`` (plain tensors, no pickled code).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def build(torch: Any, d: int, hidden: int, latent: int, one_hot: np.ndarray) -> Any:
    """An untrained VAE over ``d`` columns (float64, as the classifier's mirror)."""
    nn = torch.nn
    hot = torch.from_numpy(np.asarray(one_hot, bool))

    class VAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden // 2), nn.ReLU())
            self.mu = nn.Linear(hidden // 2, latent)
            self.logvar = nn.Linear(hidden // 2, latent)
            self.dec = nn.Sequential(nn.Linear(latent, hidden // 2), nn.ReLU(),
                                     nn.Linear(hidden // 2, hidden), nn.ReLU(),
                                     nn.Linear(hidden, d))

        def encode(self, x: Any) -> tuple[Any, Any]:
            h = self.enc(x)
            return self.mu(h), self.logvar(h)

        def decode(self, z: Any) -> Any:
            out = self.dec(z)
            return torch.where(hot, torch.sigmoid(out), out)

    return VAE().double()


def train(torch: Any, vae: Any, Z: np.ndarray, epochs: int, lr: float, seed: int,
          batch: int = 32) -> Any:
    """Adam on squared error + KL over ``Z``, shuffled by a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.from_numpy(Z)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(X), generator=gen).split(batch):
            x = X[idx]
            mu, logvar = vae.encode(x)
            eps = torch.randn(mu.shape, generator=gen, dtype=mu.dtype)
            rec = vae.decode(mu + eps * torch.exp(0.5 * logvar))
            kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)
            loss = (((rec - x) ** 2).sum(dim=1) + kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    vae.eval()
    return vae


def key(Z: np.ndarray, settings: dict[str, Any]) -> str:
    """Hash of the training columns and every setting the weights depend on."""
    h = hashlib.sha256(np.ascontiguousarray(Z, dtype=np.float64).tobytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:24]


def fitted(torch: Any, Z: np.ndarray, one_hot: np.ndarray, hidden: int, latent: int,
           epochs: int, lr: float, seed: int, cache_dir: Path | None) -> Any:
    """The trained VAE: from the cache when this exact one was trained before, else trained
    (and cached when there is a cache folder)."""
    settings = {"hidden": hidden, "latent": latent, "epochs": epochs, "lr": lr, "seed": seed,
                "one_hot": np.asarray(one_hot, bool).tolist(), "torch": torch.__version__,
                "format": 1}
    path = None if cache_dir is None else Path(cache_dir) / "revise" / f"vae-{key(Z, settings)}.pt"
    torch.manual_seed(seed)
    vae = build(torch, Z.shape[1], hidden, latent, one_hot)
    if path is not None and path.exists():
        vae.load_state_dict(torch.load(path, weights_only=True))
        vae.eval()
        return vae
    train(torch, vae, Z, epochs, lr, seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(vae.state_dict(), tmp)
        os.replace(tmp, path)  # atomic: a parallel cell never reads half a file
    return vae
