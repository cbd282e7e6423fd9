"""The conditional VAE behind C-CHVAE (torch, CPU): network, seeded training and a checked disk cache.

Encoder ``q(z | x, c)`` and decoder ``p(x | z, c)`` are small ReLU networks; ``x`` are the
mutable features in the normalised space (``space.Space``), ``c`` the immutable ones.  The
likelihood is per feature type, in the spirit of the paper's heterogeneous VAE (HVAE, Nazabal
et al.): a Gaussian with a learned per-feature variance for numeric and ordinal features (mean
through a sigmoid, since they are scaled to [0, 1]) and a categorical (softmax) for each
categorical feature.  The prior is N(0, I); the paper's hierarchical mixture prior (its ``s``
layer) is left out.

Training is one-time per (training data, schema, parameters, seed): the weights are cached as a
``torch.save`` state dict read back with ``weights_only=True`` (no pickle code runs), next to a
``meta.json`` with its SHA-256; a file that fails the check or does not load is retrained.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cfbench.api import FeatureSchema, file_lock, phase, torch_one_thread, warn
from cfbench_cchvae.space import Space, parse_hidden

KEY_VERSION = 1
WEIGHTS = "vae.pt"
META = "meta.json"
#: the ``fit`` parameters the weights depend on (the search parameters do not change them)
TRAIN_PARAMS = ("latent_dim", "hidden", "epochs", "lr", "batch_size")


def mlp(widths: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class CVAE(nn.Module):
    """``encode(x, c) -> (mu, logvar)``, ``decode(z, c) -> encoded x`` (probabilities for categories)."""

    def __init__(self, space: Space, latent: int, hidden: list[int]) -> None:
        super().__init__()
        self.space = space
        dx, dc = space.x_dim, space.c_dim
        self.enc = mlp([dx + dc, *hidden]) if hidden else nn.Identity()
        h_in = hidden[-1] if hidden else dx + dc
        self.act = nn.ReLU() if hidden else nn.Identity()
        self.mu = nn.Linear(h_in, latent)
        self.logvar = nn.Linear(h_in, latent)
        self.dec = mlp([latent + dc, *hidden[::-1], dx])
        self.log_sigma = nn.Parameter(torch.zeros(dx))  # numeric columns' learned noise (log std)
        self.num_cols = [b.start for b in space.x_blocks if not b.categorical]
        self.cat_slices = [(b.start, b.start + b.width) for b in space.x_blocks if b.categorical]

    def encode(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(self.enc(torch.cat([x, c], dim=1)))
        return self.mu(h), self.logvar(h)

    def logits(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.cat([z, c], dim=1))

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Means of the numeric columns (sigmoid) and probabilities of each categorical block."""
        out = self.logits(z, c)
        res = out.clone()
        res[:, self.num_cols] = torch.sigmoid(out[:, self.num_cols])
        for a, b in self.cat_slices:
            res[:, a:b] = torch.softmax(out[:, a:b], dim=1)
        return res

    def neg_elbo(self, x: torch.Tensor, c: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Mean over rows of -log p(x | z, c) + KL(q(z | x, c) || N(0, I)), one reparametrised z."""
        mu, logvar = self.encode(x, c)
        eps = torch.randn(mu.shape, generator=gen)
        z = mu + torch.exp(0.5 * logvar) * eps
        out = self.logits(z, c)
        nll = torch.zeros(len(x))
        if self.num_cols:
            m = torch.sigmoid(out[:, self.num_cols])
            ls = self.log_sigma[self.num_cols]
            nll = nll + (0.5 * ((x[:, self.num_cols] - m) / torch.exp(ls)) ** 2 + ls).sum(dim=1)
        for a, b in self.cat_slices:
            nll = nll - (x[:, a:b] * torch.log_softmax(out[:, a:b], dim=1)).sum(dim=1)
        kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)
        return (nll + kl).mean()


def train(space: Space, X: np.ndarray, seed: int, latent: int, hidden: list[int], epochs: int,
          lr: float, batch_size: int) -> tuple[CVAE, list[float]]:
    """Adam on the negative ELBO, seeded (weights, shuffles and noise) and on one thread."""
    with torch_one_thread():
        torch.manual_seed(seed)
        net = CVAE(space, latent, hidden)
        xs = torch.as_tensor(space.encode_x(X))
        cs = torch.as_tensor(space.encode_c(X))
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        n, losses = len(xs), []
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for s in range(0, n, batch_size):
                idx = perm[s : s + batch_size]
                loss = net.neg_elbo(xs[idx], cs[idx], gen)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            losses.append(total / n)
        net.eval()
    return net, losses


# ----------------------------------------------------------------------------- cache


def cache_key(X: pd.DataFrame, schema: FeatureSchema, seed: int, params: dict[str, Any]) -> dict[str, Any]:
    """Everything the weights depend on; its hash names the cache folder."""
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(X[schema.names], index=False).values.tobytes())
    return {"version": KEY_VERSION, "data": h.hexdigest(),
            "schema": hashlib.sha256(json.dumps(schema.to_dict(), sort_keys=True).encode()).hexdigest(),
            "seed": int(seed), "params": {k: params[k] for k in TRAIN_PARAMS},
            "torch": torch.__version__}


def cache_folder(root: Path, task: str, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in task)
    return root / "cchvae" / f"{safe}-{digest}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(folder: Path, net: CVAE) -> str | None:
    """Load the cached weights into ``net``; the reason they are unusable, or None."""
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        return f"{META} is missing or unreadable"
    if not isinstance(meta, dict) or not (folder / WEIGHTS).is_file():
        return f"{WEIGHTS} is missing"
    if sha256(folder / WEIGHTS) != meta.get("sha256"):
        return f"the SHA-256 of {WEIGHTS} does not match the one recorded at training"
    try:
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable or mismatched file is retrained
        return f"{WEIGHTS} does not load ({type(exc).__name__}: {exc})"
    return None


def fitted_vae(X: pd.DataFrame, schema: FeatureSchema, seed: int, params: dict[str, Any],
               root: Path, task: str) -> tuple[CVAE, dict[str, Any]]:
    """The VAE for this training split, schema, seed and parameters: from the cache, or trained
    and cached.  Returns the network and its ``meta`` (``cached``: whether it was loaded)."""
    Xn = X[schema.names].to_numpy(float)
    space = Space.fit(Xn, schema)
    hidden = parse_hidden(params["hidden"])
    key = cache_key(X, schema, seed, params)
    folder = cache_folder(Path(root), task, key)
    with file_lock(folder.with_name(folder.name + ".lock")):
        if (folder / META).exists():
            torch.manual_seed(seed)
            net = CVAE(space, params["latent_dim"], hidden)
            why = _load(folder, net)
            if why is None:
                net.eval()
                meta = json.loads((folder / META).read_text())
                return net, {**meta, "cached": True}
            warn(f"cchvae: discarding cached VAE {folder.name}: {why}; training again")
        phase.say(f"cchvae: training the conditional VAE ({params['epochs']} epochs, first use only)")
        net, losses = train(space, Xn, seed, params["latent_dim"], hidden, params["epochs"],
                            params["lr"], params["batch_size"])
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (WEIGHTS + ".tmp")
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, folder / WEIGHTS)
        meta = {"key": key, "sha256": sha256(folder / WEIGHTS),
                "loss_first": losses[0] if losses else None,
                "loss_last": losses[-1] if losses else None}
        tmp = folder / (META + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, folder / META)
    return net, {**meta, "cached": False}

