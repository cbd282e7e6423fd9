"""REVISE (Joshi et al. 2019): gradient search in the latent space of a VAE of the data.

Start at the encoder's mean ``z = μ(x)`` of the query, then Adam on
``ℓ(f(G(z)), y') + λ·‖G(z) − x‖₁`` (``ℓ`` the cross-entropy of the target class, ``G`` the
decoder, distances in the encoded space) until the decoded CF is of the target class, as the
paper's algorithm.  The paper fixes λ; when ``max_iter`` steps give no valid CF, λ is divided
by 10 and the search goes on from where it stands (``rounds``; 1 = the paper's single run).
The CF is the decoded point, so it lies near the data manifold but every
mutable feature may move.  Every ``check_every`` steps the decoded row is snapped and checked
on the classifier; the first valid one is returned.

Constraints: the VAE models the mutable columns only and immutables are copied from the
query; one-hot blocks are snapped by argmax, ordinals to their nearest code, integers rounded.
Bounds and directions are not part of REVISE: not enforced; the metrics count violations.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from cfbench_gradcf.space import EncodedSpace
from cfbench_gradcf.torchenv import seeded

from cfbench.api import Deadline, FitContext, QueryResult
from cfbench_revise import vae as vae_lib


class REVISE:
    """Fit: the encoded space, torch mirror and the (cached) VAE; generate: one CF per query."""

    def __init__(self, lam: float = 0.5, lr: float = 0.1, max_iter: int = 1000,
                 check_every: int = 10, latent: int = 8, hidden: int = 64,
                 vae_epochs: int = 200, vae_lr: float = 1e-3, rounds: int = 3) -> None:
        self.lam, self.lr, self.max_iter = float(lam), float(lr), int(max_iter)
        self.check_every, self.latent, self.hidden = int(check_every), int(latent), int(hidden)
        self.vae_epochs, self.vae_lr, self.rounds = int(vae_epochs), float(vae_lr), int(rounds)

    def fit(self, context: FitContext) -> REVISE:
        self.space = sp = EncodedSpace(context, "revise")
        self.seed = context.seed
        self.mutable = np.flatnonzero(~sp.fixed)
        with seeded(self.seed, "revise") as torch:
            self.module = context.model.torch_module()
            self.vae = vae_lib.fitted(torch, sp.Z_train[:, self.mutable], sp.one_hot[self.mutable],
                                      self.hidden, self.latent, self.vae_epochs, self.vae_lr,
                                      self.seed, context.cache_dir)
        return self

    def generate(self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float
                 ) -> list[QueryResult]:
        with seeded(self.seed, "revise") as torch:
            return [self._one(torch, queries.iloc[[i]], int(t), budget)
                    for i, t in enumerate(targets)]

    def _one(self, torch: Any, query: pd.DataFrame, target: int, budget: float) -> QueryResult:
        deadline = Deadline(budget)
        sp = self.space
        z0 = torch.from_numpy(sp.view.encode(query)[0])
        mut = torch.from_numpy(self.mutable)
        x_mut = z0[mut]
        with torch.no_grad():
            start, _ = self.vae.encode(x_mut[None])
        latent = start[0].clone().requires_grad_(True)
        lam, done = self.lam, 0
        for _ in range(self.rounds):
            opt = torch.optim.Adam([latent], lr=self.lr)
            for step in range(1, self.max_iter + 1):
                opt.zero_grad()
                rec = self.vae.decode(latent[None])[0]
                z = z0.index_put((mut,), rec)  # immutables stay the query's
                p = self.module(z[None])[0, target]
                loss = -torch.log(p.clamp_min(1e-12)) + lam * (rec - x_mut).abs().sum()
                loss.backward()
                opt.step()
                done += 1
                if step % self.check_every and step != self.max_iter:
                    continue
                cf = sp.finish(z.detach().numpy()[None], query)
                p_cf = float(sp.target_proba(cf, [target])[0])
                if p_cf > 0.5:
                    return QueryResult.ok(cf, extra={"lambda": lam, "steps": done,
                                                     "p_target": p_cf})
                if deadline.passed():
                    return QueryResult("timeout", None, f"budget of {budget:g} CPU s used after "
                                       f"{done} steps (λ = {lam:g}) without a valid CF")
            lam /= 10.0
        return QueryResult.not_found(f"no decoded CF of the target class after {self.rounds} "
                                     f"rounds of {self.max_iter} steps (last λ = {10 * lam:g})",
                                     extra={"steps": done})
