"""Wachter et al. (2017): ``argmin_x' max_λ λ·(f_t(x') − 1)² + d(x, x')`` by gradient descent.

``f_t`` is the classifier's probability of the target class (the torch mirror of the fitted
model), ``d`` the L1 distance weighted by each column's inverse median absolute deviation, as
the paper proposes.  The paper maximises over λ "by iteratively solving for x' and increasing λ
until a sufficiently close solution is found"; here a round is ``steps`` Adam steps in the
encoded space, λ is multiplied by ``lam_factor`` after a round without a valid CF, and every
``check_every`` steps the snapped CF is checked on the classifier: the first valid one, the
closest point on the path, is returned.

Constraints: immutable features are fixed (their gradient is zeroed and their values copied);
one-hot blocks are relaxed to [0, 1] and snapped by argmax, ordinals to their nearest code,
integers rounded.  The paper has no bounds or directions: they are not enforced, and the
metrics count violations.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from cfbench_gradcf.space import EncodedSpace
from cfbench_gradcf.torchenv import seeded

from cfbench.api import Deadline, FitContext, QueryResult


class Wachter:
    """Fit: the encoded space, MAD weights and torch mirror; generate: one CF per query."""

    def __init__(self, lam: float = 0.1, lam_factor: float = 10.0, rounds: int = 5,
                 steps: int = 200, lr: float = 0.05, check_every: int = 10) -> None:
        self.lam, self.lam_factor, self.rounds = float(lam), float(lam_factor), int(rounds)
        self.steps, self.lr, self.check_every = int(steps), float(lr), int(check_every)

    def fit(self, context: FitContext) -> Wachter:
        self.space = EncodedSpace(context, "wachter")
        self.seed = context.seed
        with seeded(self.seed, "wachter"):
            self.module = context.model.torch_module()
        self.weights = 1.0 / self.space.mad()
        return self

    def generate(self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float
                 ) -> list[QueryResult]:
        with seeded(self.seed, "wachter") as torch:
            return [self._one(torch, queries.iloc[[i]], int(t), budget)
                    for i, t in enumerate(targets)]

    def _one(self, torch: Any, query: pd.DataFrame, target: int, budget: float) -> QueryResult:
        deadline = Deadline(budget)
        sp = self.space
        z0 = torch.from_numpy(sp.view.encode(query)[0])
        w = torch.from_numpy(self.weights)
        free = torch.from_numpy((~sp.fixed).astype(float))
        hot = torch.from_numpy(sp.one_hot)
        z = z0.clone().requires_grad_(True)
        lam, done = self.lam, 0
        for _ in range(self.rounds):
            opt = torch.optim.Adam([z], lr=self.lr)
            for step in range(1, self.steps + 1):
                opt.zero_grad()
                p = self.module(z[None])[0, target]
                loss = lam * (p - 1.0) ** 2 + (w * (z - z0).abs()).sum()
                loss.backward()
                z.grad.mul_(free)  # immutables do not move
                opt.step()
                with torch.no_grad():
                    z[hot] = z[hot].clamp(0.0, 1.0)  # the one-hot relaxation stays in [0, 1]
                done += 1
                if step % self.check_every and step != self.steps:
                    continue
                cf = sp.finish(z.detach().numpy()[None], query)
                p_cf = float(sp.target_proba(cf, [target])[0])
                if p_cf > 0.5:
                    return QueryResult.ok(cf, extra={"lambda": lam, "steps": done,
                                                     "p_target": p_cf})
                if deadline.passed():
                    return QueryResult("timeout", None,
                                       f"budget of {budget:g} CPU s used after {done} steps "
                                       f"(λ = {lam:g}) without a valid CF")
            lam *= self.lam_factor
        return QueryResult.not_found(f"no valid CF after {self.rounds} rounds of λ "
                                     f"(last λ = {lam / self.lam_factor:g})",
                                     extra={"steps": done})
