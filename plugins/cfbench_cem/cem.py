"""CEM pertinent negatives (Dhurandhar et al. 2018): the sparse, small change δ that flips the class.

``min_δ c·max(s·logit(x + δ), −κ) + β‖δ‖₁ + ‖δ‖₂²`` with ``s = +1`` when the query's class is 1
(so the hinge asks for the other class by a margin κ), solved by FISTA as in the paper: a
gradient step on the smooth part with the step decayed as ``(1 − k/K)^0.5``, the shrinkage
(soft-threshold) ``S_β`` for the L1 term, the projection onto the feasible set, and momentum
``k/(k+3)``.  ``c`` starts at ``c_init`` and is updated ``c_steps`` times by binary search (down
when a pertinent negative was found, up ×10 or halfway otherwise); the valid CF with the
smallest elastic-net cost ``β‖δ‖₁ + ‖δ‖₂²`` over all runs is returned.  The paper's
autoencoder term ``γ‖x + δ − AE(x + δ)‖₂²`` is left out (γ = 0, which the paper also reports),
and δ may take either sign (the paper restricts it to ``δ ≥ 0`` for images, where a pertinent
negative adds what is absent; tabular features have no "absent" value).

Constraints: the paper's projection onto the feasible set is where they are honoured:
immutables stay fixed (δ = 0 on their columns), numeric bounds and directions (increase-only:
δ ≥ 0, decrease-only: δ ≤ 0) are a box ``x + δ ∈ [lo, hi]`` projected on after every step, and
one-hot columns are kept in [0, 1].  At the end one-hot blocks are snapped by argmax, ordinals to
their nearest code, integers rounded (integer bounds keep them inside).  Anytime: when the
per-query budget runs out the best valid CF so far is returned.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from cfbench_gradcf.space import EncodedSpace
from cfbench_gradcf.torchenv import seeded

from cfbench.api import Deadline, FitContext, QueryResult


class CEM:
    """Fit: the encoded space, box constraints and torch mirror; generate: one PN per query."""

    def __init__(self, kappa: float = 0.1, beta: float = 0.1, c_init: float = 10.0,
                 c_steps: int = 9, max_iter: int = 1000, lr: float = 0.01,
                 check_every: int = 10) -> None:
        self.kappa, self.beta, self.c_init = float(kappa), float(beta), float(c_init)
        self.c_steps, self.max_iter, self.lr = int(c_steps), int(max_iter), float(lr)
        self.check_every = int(check_every)

    def fit(self, context: FitContext) -> CEM:
        self.space = sp = EncodedSpace(context, "cem")
        self.seed = context.seed
        self.lo, self.hi = sp.view.bounds(*context.schema.bounds())
        self.dirs = sp.view.directions(context.schema.directions())
        with seeded(self.seed, "cem"):
            self.module = context.model.torch_module()
        return self

    def generate(self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float
                 ) -> list[QueryResult]:
        with seeded(self.seed, "cem") as torch:
            return [self._one(torch, queries.iloc[[i]], int(t), budget)
                    for i, t in enumerate(targets)]

    def _box(self, z0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bounds on δ: the schema's box, directions, immutables (δ = 0) around this query."""
        lo, hi = self.lo - z0, self.hi - z0
        lo = np.where(self.dirs > 0, np.maximum(lo, 0.0), lo)
        hi = np.where(self.dirs < 0, np.minimum(hi, 0.0), hi)
        lo = np.where(self.space.fixed, 0.0, lo)
        hi = np.where(self.space.fixed, 0.0, hi)
        # a query already outside its bounds may stay where it is, never move further out
        return np.minimum(lo, 0.0), np.maximum(hi, 0.0)

    def _one(self, torch: Any, query: pd.DataFrame, target: int, budget: float) -> QueryResult:
        deadline = Deadline(budget)
        sp = self.space
        z0n = sp.view.encode(query)[0]
        lo_n, hi_n = self._box(z0n)
        z0, lo, hi = (torch.from_numpy(a) for a in (z0n, lo_n, hi_n))
        s = -1.0 if target == 1 else 1.0  # the query's class is the other one
        c, c_lo, c_hi = self.c_init, 0.0, None
        best, best_cost, done = None, np.inf, 0

        def shrink(v: Any) -> Any:  # S_β, the soft-threshold of the paper's ISTA step
            return torch.sign(v) * torch.clamp(v.abs() - self.beta, min=0.0)

        for _ in range(self.c_steps):
            delta = torch.zeros_like(z0)
            y = delta.clone()
            found = False
            for it in range(self.max_iter):
                y.requires_grad_(True)
                margin = s * self.module.logit((z0 + y)[None])[0]
                smooth = c * torch.clamp(margin, min=-self.kappa) + (y**2).sum()
                (grad,) = torch.autograd.grad(smooth, y)
                step = self.lr * (1.0 - it / self.max_iter) ** 0.5
                with torch.no_grad():
                    new = shrink(y - step * grad)
                    new = torch.minimum(torch.maximum(new, lo), hi)  # projection onto the box
                    y = new + it / (it + 3.0) * (new - delta)
                    y = torch.minimum(torch.maximum(y, lo), hi)
                    delta = new
                done += 1
                if (it + 1) % self.check_every and it + 1 != self.max_iter:
                    continue
                cf = sp.finish((z0 + delta).numpy()[None], query)
                dz = sp.view.encode(cf)[0] - z0n
                with torch.no_grad():  # the PN must beat the other class by κ (logit units)
                    m_cf = -s * float(self.module.logit(torch.from_numpy(z0n + dz)[None])[0])
                if m_cf > 0 and m_cf >= self.kappa:
                    found = True
                    cost = self.beta * np.abs(dz).sum() + (dz**2).sum()
                    if cost < best_cost:
                        best, best_cost = cf, cost
                if deadline.passed():
                    return self._result(best, target, c, done, budget)
            if found:
                c_hi = c
                c = (c_lo + c_hi) / 2
            else:
                c_lo = c
                c = c * 10 if c_hi is None else (c_lo + c_hi) / 2
        return self._result(best, target, c, done, None)

    def _result(self, best: pd.DataFrame | None, target: int, c: float, done: int,
                budget: float | None) -> QueryResult:
        if best is not None and float(self.space.target_proba(best, [target])[0]) > 0.5:
            return QueryResult.ok(best, extra={"steps": done, "c": c})
        if budget is not None:
            return QueryResult("timeout", None, f"budget of {budget:g} CPU s used after {done} "
                               "iterations without a pertinent negative")
        return QueryResult.not_found(f"no pertinent negative after {self.c_steps} values of c",
                                     extra={"steps": done})
