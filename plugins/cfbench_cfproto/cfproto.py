"""CFProto (Van Looveren & Klaise, ECML PKDD 2021), written from the paper for cfbench.

The search minimises, over the perturbation ``delta`` of a query ``x0`` in the classifier's
encoded space Z (``context.model``),

    c * L_pred + beta * ||delta||_1 + ||delta||_2^2 + theta * ||x0 + delta - proto_t||_2^2

with ``L_pred = max(max_{i != t} p_i - p_t, -kappa)`` the hinge on the target class's probability
(the classifier's float64 torch mirror) and ``proto_t`` the target class's prototype: the mean of
the ``proto_k`` nearest training rows the model assigns to ``t`` (k-d trees in Z,
``prototypes.py``; the paper's variant without an autoencoder).  The optimiser is the paper's
FISTA: a gradient step on the smooth terms with a polynomially decaying learning rate
(``lr * (1 - i / max_iterations) ** 0.5``), the shrinkage-thresholding operator ``S_beta`` for the
L1 term, a projection onto the feasible set and Nesterov momentum ``i / (i + 3)``.  Each of
``c_steps`` runs restarts at ``x0``; ``c`` starts at ``c_init`` and is bisected (a run that found a
CF lowers it, one that did not raises it, tenfold while no upper bound is known).  Of every
iterate that is a CF once snapped to the schema (``space.py``), the one with the smallest
``beta * L1 + L2`` distance to ``x0`` is returned.

Constraints: immutable columns are fixed (zero gradient, reset by the projection); the projection
clips to the schema's bounds (the training range where the schema leaves a bound open), which is
the paper's clipping to the feature range; categorical features are relaxed one-hot blocks,
decoded by argmax; ordinal ones snap to their nearest code and integers are rounded.  Directions
are not part of the method and are not enforced: the metrics count violations.

All queries of a ``generate`` call are optimised together (rows never interact: each has its own
``c`` and bisection), within ``budget`` CPU seconds per query for the batch.  No randomness: the
same inputs give the same CFs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cfbench.api import Deadline, FitContext, QueryResult, UserError, torch_one_thread
from cfbench_cfproto.prototypes import KDPrototypes
from cfbench_cfproto.space import Space

#: ``c`` bisection: an upper bound this large means "none found yet"
NO_UPPER = 1e10


class CFProto:
    """Counterfactuals by FISTA on the elastic-net loss guided by k-d tree class prototypes.

    Keyword arguments are the parameters declared in ``cfbench_cfproto.PARAMS`` (see
    docs/baselines.md for where each default comes from).
    """

    def __init__(self, variant: str = "kdtree", kappa: float = 0.0, beta: float = 0.1,
                 theta: float = 100.0, c_init: float = 10.0, c_steps: int = 10,
                 max_iterations: int = 1000, learning_rate: float = 1e-2,
                 proto_k: int = 1) -> None:
        if variant != "kdtree":
            raise UserError(f"unknown cfproto variant {variant!r}; valid choices: kdtree")
        for name, value in (("c_steps", c_steps), ("max_iterations", max_iterations),
                            ("proto_k", proto_k)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"cfproto: {name} must be a positive integer, got {value!r}")
        if not (kappa >= 0 and beta >= 0 and theta >= 0):
            raise UserError(f"cfproto: kappa, beta and theta must be >= 0, got {kappa!r}, "
                            f"{beta!r}, {theta!r}")
        if not (c_init > 0 and learning_rate > 0):
            raise UserError(f"cfproto: c_init and learning_rate must be positive, got "
                            f"{c_init!r} and {learning_rate!r}")
        self.kappa, self.beta, self.theta = float(kappa), float(beta), float(theta)
        self.c_init, self.c_steps = float(c_init), c_steps
        self.max_iterations, self.learning_rate = max_iterations, float(learning_rate)
        self.proto_k = proto_k

    # ------------------------------------------------------------------ fit
    def fit(self, context: FitContext) -> CFProto:
        """Take the classifier's mirror and encoding; build the per-class k-d trees in Z."""
        view = context.model
        if view is None:
            raise UserError("cfproto needs the task's model view (a FitContext from a Task)")
        self.view_ = view
        self.module_ = view.torch_module()  # raises unless the classifier offers gradients
        self.schema_ = context.schema
        self.columns_ = context.schema.names
        self.classes_ = np.asarray(context.classes)
        self.predict_proba_ = context.predict_proba
        self.space_ = Space.fit(view, context.schema, context.X_train)
        Z_train = view.encode(context.X_train[self.columns_])
        labels = self.classes_[np.argmax(self._proba(Z_train), axis=1)]
        self.protos_ = KDPrototypes(Z_train, labels, self.proto_k)
        return self

    def _proba(self, Z: np.ndarray) -> np.ndarray:
        import torch  # loaded by fit (the mirror is a torch module)

        with torch.no_grad():
            return self.module_(torch.from_numpy(np.ascontiguousarray(Z, float))).numpy()

    # ------------------------------------------------------------------ search
    def search(self, Z0: np.ndarray, cols: np.ndarray, deadline: Deadline) -> dict[str, Any]:
        """FISTA runs over the ``c`` bisection for all rows at once; the best CF per row."""
        import torch  # loaded by fit

        n, d = Z0.shape
        space, rows = self.space_, np.arange(n)
        proto = self.protos_.prototype(Z0, self.classes_[cols])
        has_proto = ~np.isnan(proto).any(axis=1)
        proto = np.where(has_proto[:, None], proto, Z0)
        Z0t, protot = torch.from_numpy(Z0), torch.from_numpy(proto)
        proto_w = torch.from_numpy(np.where(has_proto, self.theta, 0.0))[:, None]
        colst, rowst = torch.from_numpy(cols), torch.from_numpy(rows)
        c = np.full(n, self.c_init)
        lower, upper = np.zeros(n), np.full(n, NO_UPPER)
        best = np.full((n, d), np.nan)
        best_dist, best_c = np.full(n, np.inf), np.full(n, np.nan)
        steps, stopped = 0, False
        for _ in range(self.c_steps):
            x, y = Z0.copy(), Z0.copy()
            found = np.zeros(n, dtype=bool)
            ct = torch.from_numpy(c)
            for i in range(self.max_iterations):
                if deadline.passed():
                    stopped = True
                    break
                steps += 1
                lr = self.learning_rate * (1.0 - i / self.max_iterations) ** 0.5
                yt = torch.from_numpy(y).requires_grad_(True)
                p = self.module_(yt)
                p_t = p[rowst, colst]
                p_other = p.masked_fill(
                    torch.nn.functional.one_hot(colst, p.shape[1]).bool(), -1.0).max(dim=1).values
                loss = ((ct * torch.clamp(p_other - p_t, min=-self.kappa)).sum()
                        + ((yt - Z0t) ** 2).sum()
                        + (proto_w * (yt - protot) ** 2).sum())
                (grad,) = torch.autograd.grad(loss, yt)
                g = grad.numpy()
                step = y - lr * g - Z0
                x_new = space.project(Z0 + np.sign(step) * np.maximum(np.abs(step) - self.beta, 0.0),
                                      Z0)
                y = space.project(x_new + i / (i + 3.0) * (x_new - x), Z0)
                x = x_new
                # a candidate counts as it will be returned: snapped to the schema's values
                s = space.snap(x)
                ps = self._proba(s)
                pt = ps[rows, cols]
                po = np.where(np.eye(ps.shape[1], dtype=bool)[cols], -1.0, ps).max(axis=1)
                ok = (np.argmax(ps, axis=1) == cols) & (pt - po >= self.kappa)
                if not ok.any():
                    continue
                delta = s - Z0
                dist = self.beta * np.abs(delta).sum(axis=1) + (delta ** 2).sum(axis=1)
                better = ok & (dist < best_dist)
                best[better], best_dist[better], best_c[better] = s[better], dist[better], c[better]
                found |= ok
            if stopped:
                break
            # bisection on c: a run that found a CF lowers c, one that did not raises it
            upper = np.where(found, np.minimum(upper, c), upper)
            lower = np.where(found, lower, np.maximum(lower, c))
            c = np.where(upper < NO_UPPER, (lower + upper) / 2.0, c * 10.0)
        return {"best": best, "found": np.isfinite(best_dist), "c": best_c, "steps": steps,
                "stopped": stopped, "has_proto": has_proto}

    def generate(self, queries: pd.DataFrame, targets: np.ndarray, k: int,
                 budget: float) -> list[QueryResult]:
        """One CF per query (the method returns one); the batch shares ``budget`` per query."""
        Q = queries[self.columns_].reset_index(drop=True)
        targets = np.asarray(targets)
        cols = np.array([int(np.flatnonzero(self.classes_ == t)[0]) for t in targets])
        Z0 = self.view_.encode(Q)
        with torch_one_thread():
            out = self.search(Z0, cols, Deadline(budget * max(len(Q), 1)))
        found = out["found"]
        cfs = self._rows(out["best"][found], Q[found]) if found.any() else None
        verified = np.zeros(len(Q), dtype=bool)
        if cfs is not None:  # the classifier itself has the last word (the mirror agrees to 1e-6)
            pred = self.classes_[np.argmax(np.asarray(self.predict_proba_(cfs), float), axis=1)]
            verified[np.flatnonzero(found)] = pred == targets[found]
        results, j = [], 0
        for r in range(len(Q)):
            extra = {"c": None if np.isnan(out["c"][r]) else float(out["c"][r]),
                     "fista_steps": int(out["steps"]), "prototype": bool(out["has_proto"][r])}
            if found[r]:
                row = cfs.iloc[[j]].reset_index(drop=True)
                j += 1
                if verified[r]:
                    reason = "budget reached; best CF so far" if out["stopped"] else ""
                    results.append(QueryResult.ok(row, reason=reason, extra=extra))
                    continue
                results.append(QueryResult.not_found("the snapped CF is not the target class for "
                                                     "the classifier", extra=extra))
            elif out["stopped"]:
                results.append(QueryResult("timeout", None, "no CF within the budget",
                                           extra=extra))
            else:
                results.append(QueryResult.not_found(
                    f"no CF in {self.c_steps} c steps of {self.max_iterations} iterations",
                    extra=extra))
        return results

    def _rows(self, Z: np.ndarray, Q: pd.DataFrame) -> pd.DataFrame:
        """Snapped points of Z as schema rows: immutables exactly the query's, integers whole."""
        C = self.view_.decode(Z)
        for f in self.schema_.features:
            if not f.mutable:
                C[f.name] = Q[f.name].to_numpy(float)
            elif f.kind == "ordinal" and f.categories:
                codes = np.asarray(f.categories, float)
                C[f.name] = codes[np.argmin(np.abs(C[f.name].to_numpy()[:, None] - codes), axis=1)]
            elif f.integer:
                C[f.name] = np.round(C[f.name].to_numpy())
        return C[self.columns_]
