"""Actionable feature tweaking (Tolomei, Silvestri, Haines & Lalmas, KDD 2017) on ``Z``.

For a query ``x`` the ensemble assigns to the wrong class, every tree that votes for the wrong
class offers its *target-class leaves*: each leaf's root-to-leaf path is a box in ``Z``
(``lo < z <= hi`` per column), and ``x`` moved into the box with tolerance ``epsilon``
(``hi - epsilon`` / ``lo + epsilon``, the box's middle when it is narrower than ``2 epsilon``) is
the leaf's *epsilon-satisfactory instance*.  Candidates the whole ensemble assigns to the target
class are kept and the one of least cost (the paper's Euclidean distance, here in ``Z``) wins.

Boxes of all leaves are built once in ``fit``; a query is then a few array operations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cfbench.api import Deadline, Encoded, FitContext, QueryResult, UserError

COSTS = ("euclidean", "manhattan")


def leaf_boxes(tree, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(leaves, lo, hi)``: every leaf of ``tree`` and the box of ``Z`` its path selects
    (a row reaches the leaf iff ``lo < float32(z) <= hi`` column by column)."""
    leaves, los, his = [], [], []
    stack = [(0, np.full(d, -np.inf), np.full(d, np.inf))]
    while stack:
        node, lo, hi = stack.pop()
        if tree.left[node] < 0:
            leaves.append(node)
            los.append(lo)
            his.append(hi)
            continue
        f, t = tree.feature[node], tree.threshold[node]
        left_hi, right_lo = hi.copy(), lo.copy()
        left_hi[f] = min(hi[f], t)
        right_lo[f] = max(lo[f], t)
        stack.append((tree.right[node], right_lo, hi))
        stack.append((tree.left[node], lo, left_hi))
    return np.asarray(leaves), np.asarray(los), np.asarray(his)


class FeatureTweak:
    """Least-cost epsilon-satisfactory tweak over the target-class leaves of wrong-voting trees.

    ``epsilon`` is the tolerance in ``Z`` (standard-deviation units of scaled features);
    ``cost`` the distance the cheapest candidate minimises.
    """

    def __init__(self, epsilon: float = 0.1, cost: str = "euclidean") -> None:
        if not epsilon > 0:
            raise UserError(f"feature-tweak: epsilon must be positive, got {epsilon!r}")
        if cost not in COSTS:
            raise UserError(f"feature-tweak: unknown cost {cost!r}; valid choices: {', '.join(COSTS)}")
        self.epsilon, self.cost = float(epsilon), cost

    def fit(self, context: FitContext) -> FeatureTweak:
        """Extract the leaf boxes of every tree and each leaf's vote."""
        self.view_ = context.model
        self.trees_ = self.view_.trees()
        self.space_ = Encoded(self.view_, context.schema)
        self.predict_ = context.predict
        self.classes_ = np.asarray(context.classes)
        d = self.view_.n_encoded
        self.boxes_ = []  # per tree: leaf node ids, lo, hi, vote (class index) per leaf
        cut = 0.5 if self.trees_.combine == "mean" else 0.0
        for tree in self.trees_.trees:
            leaves, lo, hi = leaf_boxes(tree, d)
            self.boxes_.append((leaves, lo, hi, (tree.value[leaves] > cut).astype(int)))
        return self

    def _vote(self, tree_index: int, z: np.ndarray) -> int:
        tree = self.trees_.trees[tree_index]
        cut = 0.5 if self.trees_.combine == "mean" else 0.0
        return int(tree.leaf_values(z[None])[0] > cut)

    def _candidates(self, z: np.ndarray, target: int, deadline: Deadline) -> np.ndarray:
        """The epsilon-satisfactory instances of all target leaves of wrong-voting trees."""
        eps, parts = self.epsilon, []
        for i, (_leaves, lo, hi, vote) in enumerate(self.boxes_):
            if deadline.passed():
                break
            if self._vote(i, z) == target:
                continue
            lo, hi = lo[vote == target], hi[vote == target]
            c = np.broadcast_to(z, lo.shape).copy()
            c = np.where(c > hi, hi - eps, c)
            c = np.where(c <= lo, lo + eps, c)
            with np.errstate(invalid="ignore"):  # open sides: inf - inf is no narrow box
                narrow = (hi - lo) <= 2 * eps
                c = np.where(narrow, (lo + hi) / 2, c)
            parts.append(self._categories(c, z, lo, hi))
        return np.concatenate(parts) if parts else np.empty((0, len(z)))

    def _categories(self, C: np.ndarray, z: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """One-hot blocks of ``C`` set to a category inside the box: the query's if it is, else
        the first that is; rows whose box admits no category of some block are dropped."""
        keep = np.ones(len(C), dtype=bool)
        for cols in self.space_.onehot:
            one = (lo[:, cols] < 1) & (hi[:, cols] >= 1)
            zero = (lo[:, cols] < 0) & (hi[:, cols] >= 0)
            # category j fits when its column may be 1 and every other column 0
            fits = one & (zero.sum(axis=1, keepdims=True) - zero == len(cols) - 1)
            current = int(np.argmax(z[cols]))
            choice = np.where(fits[:, current], current, np.argmax(fits, axis=1))
            keep &= fits.any(axis=1)
            C[:, cols] = 0.0
            C[np.arange(len(C)), cols[choice]] = 1.0
        return C[keep]

    def _distance(self, C: np.ndarray, z: np.ndarray) -> np.ndarray:
        diff = C - z
        return np.sqrt((diff**2).sum(axis=1)) if self.cost == "euclidean" else np.abs(diff).sum(axis=1)

    def generate(self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float):
        out = []
        Zq = self.view_.encode(queries)
        for (_, query), z, t in zip(queries.iterrows(), Zq, targets, strict=True):
            deadline = Deadline(budget)
            t_index = int(np.flatnonzero(self.classes_ == t)[0])
            C = self._candidates(z, t_index, deadline)
            n_raw = len(C)
            C = self.space_.project(C, z)
            C = C[self.space_.admissible(C, z)]
            if len(C):
                C = np.unique(C, axis=0)
                C = C[np.argmax(self.trees_.proba(C), axis=1) == t_index]
            if deadline.passed() and not len(C):
                out.append(QueryResult("timeout", None, "budget used up before a candidate flipped"))
                continue
            if not len(C):
                out.append(QueryResult.not_found(
                    f"none of {n_raw} epsilon-satisfactory tweaks is admissible and flips the "
                    "ensemble", extra={"candidates": n_raw}))
                continue
            order = np.argsort(self._distance(C, z), kind="stable")
            rows = self.space_.rows(C[order], z, query)
            rows = rows[self.predict_(rows) == t].head(k)  # the task's classifier has the last word
            if rows.empty:
                out.append(QueryResult.not_found("no flipping tweak survives decoding",
                                                 extra={"candidates": n_raw}))
            else:
                out.append(QueryResult.ok(rows, extra={"candidates": n_raw}))
        return out
