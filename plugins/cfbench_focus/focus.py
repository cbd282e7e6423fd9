"""FOCUS (Lucic, Oosterhuis, Haned & de Rijke, AAAI 2022): gradient CFs for tree ensembles.

Every split ``z[f] <= t`` of the ensemble is replaced by ``sigmoid(sigma * (t - z[f]))`` (and the
right branch by its complement), so a leaf is reached with the product of its path's sigmoids and
each tree, and so the ensemble, becomes a differentiable function of ``z``.  From the query, Adam
minimises the paper's loss

    L(z) = 1[f(z) = original class] * p~_original(z)  +  beta * d(x, z)

(``f`` the real ensemble, ``p~`` the smoothed one): the prediction term pushes until the real
ensemble flips and stops there, the distance term pulls back.  Every iterate is projected onto
the schema's values and checked on the real ensemble; the closest one that flips is the CF.

Written in numpy with analytic gradients (scipy.sparse for the leaf-by-split incidence): no torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cfbench.api import Deadline, Encoded, FitContext, QueryResult, UserError

DISTANCES = ("euclidean", "manhattan")


def _logsig(a: np.ndarray) -> np.ndarray:
    """log sigmoid(a), stable for large |a| (scipy's ``log_expit``: the hot spot of a step)."""
    from scipy.special import log_expit  # the focus extra, loaded on first use

    return log_expit(a)


def _sig(a: np.ndarray) -> np.ndarray:
    from scipy.special import expit  # the focus extra, loaded on first use

    return expit(a)


def paths(trees) -> tuple:
    """The ensemble as splits and leaves: every distinct ``(feature, threshold)``, the leaf-by-split
    incidence of right and left turns (sparse ``(leaves, splits)``), leaf values and path lengths."""
    # sparse matrices keep a step at O(queries x path entries), not O(leaves x splits)
    from scipy.sparse import csr_matrix  # scipy is the focus extra: loaded on first fit

    feature, threshold, value, length = [], [], [], []
    index: dict[tuple[int, float], int] = {}  # forests repeat splits: each (feature, threshold) once
    right_rows, right_cols, left_rows, left_cols = [], [], [], []
    for tree in trees:
        stack = [(0, (), ())]  # node, splits turned right at, splits turned left at
        while stack:
            node, r, lft = stack.pop()
            if tree.left[node] < 0:
                leaf = len(value)
                value.append(tree.value[node])
                length.append(len(r) + len(lft))
                right_rows += [leaf] * len(r)
                right_cols += list(r)
                left_rows += [leaf] * len(lft)
                left_cols += list(lft)
                continue
            key = (int(tree.feature[node]), float(tree.threshold[node]))
            split = index.setdefault(key, len(feature))
            if split == len(feature):
                feature.append(key[0])
                threshold.append(key[1])
            stack.append((tree.right[node], (*r, split), lft))
            stack.append((tree.left[node], r, (*lft, split)))
    shape = (len(value), len(feature))
    right = csr_matrix((np.ones(len(right_rows)), (right_rows, right_cols)), shape=shape)
    left = csr_matrix((np.ones(len(left_rows)), (left_rows, left_cols)), shape=shape)
    return (np.asarray(feature), np.asarray(threshold), right, left, np.asarray(value),
            np.asarray(length))


class Focus:
    """Adam on the sigmoid-smoothed ensemble; the closest real flip seen is kept.

    ``sigma`` sharpness of the split sigmoids, ``beta`` weight of the distance, ``lr`` Adam's
    step size, ``iterations`` Adam steps per query, ``distance`` the distance in ``Z``.
    """

    def __init__(self, sigma: float = 1.0, beta: float = 0.01, lr: float = 0.001,
                 iterations: int = 1000, distance: str = "euclidean") -> None:
        for name, v in (("sigma", sigma), ("beta", beta), ("lr", lr)):
            if not v > 0:
                raise UserError(f"focus: {name} must be positive, got {v!r}")
        if not isinstance(iterations, int) or iterations < 1:
            raise UserError(f"focus: iterations must be a positive integer, got {iterations!r}")
        if distance not in DISTANCES:
            raise UserError(f"focus: unknown distance {distance!r}; valid choices: "
                            f"{', '.join(DISTANCES)}")
        self.sigma, self.beta, self.lr = float(sigma), float(beta), float(lr)
        self.iterations, self.distance = iterations, distance

    def fit(self, context: FitContext) -> Focus:
        self.view_ = context.model
        self.trees_ = self.view_.trees()
        self.space_ = Encoded(self.view_, context.schema)
        self.predict_ = context.predict
        self.classes_ = np.asarray(context.classes)
        (self.F_, self.T_, self.right_, self.left_, self.value_,
         self.length_) = paths(self.trees_.trees)
        self.n_trees_ = len(self.trees_.trees)
        self.mean_ = self.trees_.combine == "mean"
        return self

    # ------------------------------------------------------------------ the two ensembles
    def _p1(self, leaf_weight: np.ndarray) -> np.ndarray:
        """Class-1 probability from per-leaf weights ``(n, L)`` (reach: soft or 0/1)."""
        s = leaf_weight @ self.value_
        return s / self.n_trees_ if self.mean_ else _sig(self.trees_.base + s)

    def hard_p1(self, Z: np.ndarray) -> np.ndarray:
        """The real ensemble (float32 comparisons as the libraries make them)."""
        right = (Z.astype(np.float32).astype(float)[:, self.F_] > self.T_).astype(float)
        met = (self.right_ @ right.T).T + (self.left_ @ (1 - right).T).T
        return self._p1((met == self.length_).astype(float))

    def soft(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Smoothed class-1 probability and its gradient over ``Z``."""
        a = self.sigma * (Z[:, self.F_] - self.T_)  # (n, splits): right turn sigmoid(a)
        up = _logsig(a)
        down = up - a  # log sigmoid(-a)
        reach = np.exp((self.right_ @ up.T).T + (self.left_ @ down.T).T)  # (n, leaves)
        s = reach @ self.value_
        if self.mean_:
            p1 = s / self.n_trees_
            dp_ds = np.full(len(Z), 1.0 / self.n_trees_)
        else:
            p1 = _sig(self.trees_.base + s)
            dp_ds = p1 * (1 - p1)
        g_leaf = dp_ds[:, None] * reach * self.value_[None, :]  # d p1 / d log reach
        # d log reach / d a: 1 - sigmoid(a) per right turn, -sigmoid(a) per left turn
        g_right = (self.right_.T @ g_leaf.T).T
        g_left = (self.left_.T @ g_leaf.T).T
        sa = np.exp(up)
        g_split = self.sigma * ((1 - sa) * g_right - sa * g_left)
        n, d = Z.shape
        flat = (np.arange(n)[:, None] * d + self.F_[None, :]).ravel()
        grad = np.bincount(flat, weights=g_split.ravel(), minlength=n * d).reshape(n, d)
        return p1, grad

    # ------------------------------------------------------------------ search
    def _dist(self, Z: np.ndarray, Z0: np.ndarray) -> np.ndarray:
        diff = Z - Z0
        return np.sqrt((diff**2).sum(axis=1)) if self.distance == "euclidean" else np.abs(diff).sum(axis=1)

    def _dist_grad(self, Z: np.ndarray, Z0: np.ndarray) -> np.ndarray:
        diff = Z - Z0
        if self.distance == "manhattan":
            return np.sign(diff)
        norm = np.sqrt((diff**2).sum(axis=1, keepdims=True))
        return diff / np.maximum(norm, 1e-12)

    def _box(self, Z0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per query, where ``z`` may go: bounds, and the query's value on the side a direction forbids."""
        lo = np.broadcast_to(self.space_.lower, Z0.shape).copy()
        hi = np.broadcast_to(self.space_.upper, Z0.shape).copy()
        dirs = self.space_.direction
        lo = np.where(dirs > 0, np.maximum(lo, Z0), lo)
        hi = np.where(dirs < 0, np.minimum(hi, Z0), hi)
        # a query already outside its bounds may stay where it is
        return np.minimum(lo, Z0), np.maximum(hi, Z0)

    def search(self, Z0: np.ndarray, t_index: np.ndarray, deadline: Deadline):
        """Adam from ``Z0``; per query the closest projected iterate the real ensemble gives
        ``t_index`` (NaN rows where none) and the iteration it was found at."""
        n, d = Z0.shape
        Z = Z0.copy()
        move = ~self.space_.fixed
        lo, hi = self._box(Z0)
        m, v = np.zeros_like(Z), np.zeros_like(Z)
        b1, b2, eps = 0.9, 0.999, 1e-8
        best = np.full((n, d), np.nan)
        best_d = np.full(n, np.inf)
        found_at = np.full(n, -1)
        sign = np.where(t_index == 1, 1.0, -1.0)  # d p_target / d p1
        steps = 0
        for it in range(1, self.iterations + 1):
            P = self.space_.project(Z, Z0)
            flipped = (self.hard_p1(P) > 0.5).astype(int) == t_index
            dist = self._dist(P, Z0)
            better = flipped & (dist < best_d)
            best[better], best_d[better], found_at[better] = P[better], dist[better], it - 1
            _, g1 = self.soft(Z)
            # gradient of p~_original = 1 - p~_target, only while the real ensemble has not flipped
            grad = np.where(flipped[:, None], 0.0, -sign[:, None] * g1)
            grad = grad + self.beta * self._dist_grad(Z, Z0)
            grad[:, ~move] = 0.0
            m = b1 * m + (1 - b1) * grad
            v = b2 * v + (1 - b2) * grad**2
            step = self.lr * (m / (1 - b1**it)) / (np.sqrt(v / (1 - b2**it)) + eps)
            Z = np.clip(Z - step, lo, hi)
            steps = it
            if deadline.passed():
                break
        P = self.space_.project(Z, Z0)
        flipped = (self.hard_p1(P) > 0.5).astype(int) == t_index
        dist = self._dist(P, Z0)
        better = flipped & (dist < best_d)
        best[better], found_at[better] = P[better], steps
        return best, found_at, steps

    def generate(self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float):
        """All queries optimised together; the budget is ``budget`` CPU seconds per query."""
        if len(queries) == 0:
            return []
        deadline = Deadline(budget * len(queries))
        Z0 = self.view_.encode(queries)
        t_index = np.array([int(np.flatnonzero(self.classes_ == t)[0]) for t in targets])
        best, found_at, steps = self.search(Z0, t_index, deadline)
        out = []
        for i, (_, query) in enumerate(queries.iterrows()):
            extra = {"iterations": steps, "found_at": int(found_at[i])}
            if np.isnan(best[i]).any():
                status = "timeout" if steps < self.iterations else "not_found"
                out.append(QueryResult(status, None, f"the ensemble did not flip in {steps} "
                                                     "Adam steps", extra=extra))
                continue
            row = self.space_.rows(best[i][None], Z0[i], query)
            if self.predict_(row)[0] != targets[i]:  # the task's classifier has the last word
                out.append(QueryResult.not_found("the flip did not survive decoding", extra=extra))
            else:
                out.append(QueryResult.ok(row, extra=extra))
        return out
