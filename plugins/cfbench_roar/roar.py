"""ROAR: ``min_x' max_{‖δ‖∞ ≤ δ_max} ℓ(f_{θ+δ}(x'), y') + λ·c(x, x')`` (Upadhyay et al. 2021).

The inner maximisation is over shifts ``δ`` of the weights and bias of a LOCAL LINEAR model, as
in the paper: for logistic regression the model itself (``ModelView.linear``); for an MLP its
first-order expansion at the query (weights = the gradient of the class-1 logit there; the
paper fits LIME, a gradient linearisation is the deterministic equivalent for a differentiable
model).  For a linear logit ``g(x') = s·(wᵀx' + b)`` toward the target (``s = ±1``) and the
logistic loss, the worst shift has the closed form ``δ_w = −s·δ_max·sign(x')``, ``δ_b = −s·δ_max``,
so the robust logit is ``g(x') − δ_max·(‖x'‖₁ + 1)``.  The outer minimisation is Adam on that
loss plus ``λ·‖x' − x‖₁`` in the encoded space until the objective settles (``tol``) or
``max_iter``.  The CF is snapped and checked on the real classifier; when it does not give the
target class, λ is halved and the problem solved again (``rounds``; the paper solves once
with a tuned λ, ``rounds = 1``).

Constraints: immutables fixed (zero gradient, values copied), one-hot blocks relaxed to
[0, 1] and snapped, ordinals snapped, integers rounded.  The paper's recourse has no bounds or
directions: not enforced; the metrics count violations.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from cfbench_gradcf.space import EncodedSpace
from cfbench_gradcf.torchenv import seeded

from cfbench.api import Deadline, FitContext, QueryResult


class ROAR:
    """Fit: the encoded space and the model (linear or torch mirror); generate: one CF per query."""

    def __init__(self, delta_max: float = 0.1, lam: float = 0.1, lr: float = 0.01,
                 max_iter: int = 1000, tol: float = 1e-6, rounds: int = 4) -> None:
        self.delta_max, self.lam, self.lr = float(delta_max), float(lam), float(lr)
        self.max_iter, self.tol, self.rounds = int(max_iter), float(tol), int(rounds)

    def fit(self, context: FitContext) -> ROAR:
        self.space = EncodedSpace(context, "roar")
        self.seed = context.seed
        self.linear = context.model.linear() if "linear" in context.model.kinds else None
        with seeded(self.seed, "roar"):
            self.module = None if self.linear else context.model.torch_module()
        return self

    def generate(self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float
                 ) -> list[QueryResult]:
        with seeded(self.seed, "roar") as torch:
            return [self._one(torch, queries.iloc[[i]], int(t), budget)
                    for i, t in enumerate(targets)]

    def local_linear(self, torch: Any, z0: Any) -> tuple[Any, float]:
        """(weights, bias) over Z of the class-1 logit: exact for a linear model, else the
        tangent of the network's logit at ``z0``."""
        if self.linear is not None:
            return torch.from_numpy(np.asarray(self.linear.weights, float)), float(self.linear.intercept)
        z = z0.clone().requires_grad_(True)
        logit = self.module.logit(z[None])[0]
        (w,) = torch.autograd.grad(logit, z)
        return w.detach(), float(logit.detach() - w.detach() @ z0)

    def _one(self, torch: Any, query: pd.DataFrame, target: int, budget: float) -> QueryResult:
        deadline = Deadline(budget)
        sp = self.space
        z0 = torch.from_numpy(sp.view.encode(query)[0])
        w, b = self.local_linear(torch, z0)
        s = 1.0 if target == 1 else -1.0
        free = torch.from_numpy((~sp.fixed).astype(float))
        hot = torch.from_numpy(sp.one_hot)
        lam, done = self.lam, 0
        for _ in range(self.rounds):
            z = z0.clone().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=self.lr)
            last = np.inf
            for _ in range(self.max_iter):
                opt.zero_grad()
                # the worst model in the δ ball, in closed form (see the module docstring)
                robust = s * (w @ z + b) - self.delta_max * (z.abs().sum() + 1.0)
                loss = torch.nn.functional.softplus(-robust) + lam * (z - z0).abs().sum()
                loss.backward()
                z.grad.mul_(free)
                opt.step()
                with torch.no_grad():
                    z[hot] = z[hot].clamp(0.0, 1.0)
                done += 1
                value = float(loss.detach())
                if abs(last - value) < self.tol:
                    break
                last = value
                if done % 50 == 0 and deadline.passed():
                    return QueryResult("timeout", None, f"budget of {budget:g} CPU s used after "
                                       f"{done} steps (λ = {lam:g})")
            cf = sp.finish(z.detach().numpy()[None], query)
            p_cf = float(sp.target_proba(cf, [target])[0])
            if p_cf > 0.5:
                return QueryResult.ok(cf, extra={"lambda": lam, "steps": done, "p_target": p_cf,
                                                 "robust_logit": float(robust.detach())})
            lam /= 2.0
        return QueryResult.not_found(f"the robust CF of the local linear model is not of the "
                                     f"target class on the classifier after {self.rounds} solves "
                                     f"(last λ = {2 * lam:g})", extra={"steps": done})
