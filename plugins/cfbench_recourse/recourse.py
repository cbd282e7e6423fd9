"""Actionable Recourse (Ustun, Spangher & Liu, FAT* 2019): an integer program over action grids.

For a linear classifier with class-1 logit ``w . z + b`` (``z`` the encoded row), each mutable
feature gets a grid of values it may move to: the training column's percentiles in steps of
``1 / grid`` (the paper's percentile discretisation), kept inside the schema's bounds and on the
allowed side of a direction; a categorical feature's grid is its other categories (the one-hot
block changes as one); an immutable feature has only the zero action.  One binary per (feature,
grid value), at most one per feature, and the integer program

    minimise   cost(a; x)    subject to   w . z(x + a) + b  >=  margin   (target class 1)
                                                           <= -margin   (target class 0)

is solved with HiGHS (``scipy.optimize.milp``).  The cost is the paper's percentile shift:
``Q_j(x_j + a_j) - Q_j(x_j)`` in absolute value with ``Q_j`` the training ECDF of feature ``j``,
either its maximum over features (``max``, the paper's default) or its sum (``total``).  A
category switch costs the shift of both indicator columns it flips.  ``k > 1``: the next
solution must differ in its action set (the paper's flipset enumeration).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cfbench.api import Deadline, FitContext, QueryResult, UserError

COSTS = ("max", "total")
#: secondary objective: among actions of equal max cost, the smaller total shift (not in the paper)
TIE_BREAK = 1e-3


class ActionableRecourse:
    """Least-cost flipping action on a percentile grid, one integer program per CF."""

    def __init__(self, grid: int = 100, cost: str = "max") -> None:
        if not isinstance(grid, int) or grid < 1:
            raise UserError(f"actionable-recourse: grid must be a positive integer, got {grid!r}")
        if cost not in COSTS:
            raise UserError(f"actionable-recourse: unknown cost {cost!r}; valid choices: "
                            f"{', '.join(COSTS)}")
        self.grid, self.cost = grid, cost

    def fit(self, context: FitContext) -> ActionableRecourse:
        """The linear model in ``Z``, each feature's training ECDF and percentile grid."""
        self.view_ = context.model
        self.linear_ = self.view_.linear()
        self.schema_ = context.schema
        self.predict_ = context.predict
        self.classes_ = np.asarray(context.classes)
        X = context.X_train[self.schema_.names]
        lower, upper = self.schema_.bounds()
        dirs = self.schema_.directions()
        self.features_ = []
        for i, (f, b) in enumerate(zip(self.schema_.features, self.view_.blocks, strict=True)):
            col = np.sort(X[f.name].to_numpy(float))
            if b.one_hot:
                grid = np.asarray(b.categories, float)
            elif f.kind == "ordinal" and f.categories:
                grid = np.asarray(f.categories, float)
            else:
                q = np.linspace(0, 1, self.grid + 1)
                grid = np.unique(np.quantile(col, q, method="inverted_cdf"))  # training values
            self.features_.append((f, b, col, grid, lower[i], upper[i], int(dirs[i])))
        return self

    @staticmethod
    def _ecdf(col: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.searchsorted(col, v, side="right") / len(col)

    def actions(self, x: pd.Series) -> list[tuple[int, float, float, float]]:
        """``(feature index, new value, logit change, cost)`` of every admissible non-zero action."""
        w = self.linear_.weights
        out = []
        for i, (f, b, col, grid, lo, hi, direction) in enumerate(self.features_):
            if not f.mutable:
                continue
            v0 = float(x[f.name])
            if b.one_hot:
                cats = list(b.categories)
                if v0 not in cats:
                    continue
                old = b.columns[cats.index(v0)]
                share = {c: float(np.mean(col == v)) for c, v in zip(b.columns, cats, strict=True)}
                for c, v in zip(b.columns, cats, strict=True):
                    if v == v0:
                        continue
                    shifts = (share[old], share[c])  # the indicator columns that flip
                    cost = max(shifts) if self.cost == "max" else sum(shifts)
                    out.append((i, float(v), float(w[c] - w[old]), cost))
                continue
            cand = grid[grid != v0]
            keep = np.ones(len(cand), dtype=bool)
            if not np.isnan(lo):
                keep &= cand >= lo
            if not np.isnan(hi):
                keep &= cand <= hi
            if direction > 0:
                keep &= cand > v0
            elif direction < 0:
                keep &= cand < v0
            cand = cand[keep]
            dlogit = w[b.columns[0]] * (cand - v0) / b.scale
            cost = np.abs(self._ecdf(col, cand) - self._ecdf(col, np.array([v0]))[0])
            out += [(i, float(v), float(dl), float(c)) for v, dl, c in zip(cand, dlogit, cost, strict=True)]
        return out

    def _solve(self, acts, logit0: float, up: bool, exclude: list[list[int]], seconds: float):
        """One integer program; the chosen action indices, or None when infeasible/out of time."""
        # scipy is the recourse extra: loaded when a query is solved
        from scipy.optimize import Bounds, LinearConstraint, milp

        n = len(acts)
        feats = sorted({a[0] for a in acts})
        dl = np.array([a[2] for a in acts])
        cost = np.array([a[3] for a in acts])
        margin = 1e-6 * max(1.0, abs(logit0))
        use_max = self.cost == "max"
        nv = n + int(use_max)  # binaries, then the max-cost variable t
        c = np.zeros(nv)
        rows, lo, hi = [], [], []

        def row(coefs: dict[int, float], lb: float, ub: float) -> None:
            r = np.zeros(nv)
            for j, val in coefs.items():
                r[j] = val
            rows.append(r)
            lo.append(lb)
            hi.append(ub)

        if use_max:
            c[n] = 1.0
            c[:n] = TIE_BREAK * cost
            for fi in feats:  # t >= cost of feature fi's action
                coefs = {j: cost[j] for j in range(n) if acts[j][0] == fi}
                coefs[n] = -1.0
                row(coefs, -np.inf, 0.0)
        else:
            c[:n] = cost + TIE_BREAK * 1e-3  # ties: fewer features changed
        for fi in feats:  # one grid value per feature at most
            row({j: 1.0 for j in range(n) if acts[j][0] == fi}, 0.0, 1.0)
        flip = {j: dl[j] for j in range(n)}
        if up:
            row(flip, -logit0 + margin, np.inf)
        else:
            row(flip, -np.inf, -logit0 - margin)
        for chosen in exclude:  # not the same action set again
            row({j: 1.0 for j in chosen}, -np.inf, len(chosen) - 1.0)
        integrality = np.ones(nv)
        upper = np.ones(nv)
        if use_max:
            integrality[n], upper[n] = 0, np.inf
        res = milp(c, integrality=integrality, bounds=Bounds(np.zeros(nv), upper),
                   constraints=LinearConstraint(np.array(rows), lo, hi),
                   options={"time_limit": max(seconds, 0.05), "disp": False})
        if res.x is None or res.status not in (0,):
            return None, res.status
        return [j for j in range(n) if res.x[j] > 0.5], res.status

    def generate(self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float):
        out = []
        Zq = self.view_.encode(queries)
        logits = Zq @ self.linear_.weights + self.linear_.intercept
        for (_, x), logit0, t in zip(queries.iterrows(), logits, targets, strict=True):
            deadline = Deadline(budget)
            up = int(np.flatnonzero(self.classes_ == t)[0]) == 1
            acts = self.actions(x)
            found, exclude, status = [], [], 0
            while len(found) < k and acts and not deadline.passed():
                chosen, status = self._solve(acts, float(logit0), up, exclude, deadline.left())
                if chosen is None:
                    break
                exclude.append(chosen)
                row = x[self.schema_.names].astype(float).copy()
                for j in chosen:
                    row[self.schema_.names[acts[j][0]]] = acts[j][1]
                found.append(row)
            if not found:
                why = ("time limit reached" if status == 1 or deadline.passed()
                       else "no action on the grid flips the linear score")
                status_name = "timeout" if why.startswith("time") else "not_found"
                out.append(QueryResult(status_name, None, why, extra={"actions": len(acts)}))
                continue
            cfs = pd.DataFrame(found).reset_index(drop=True)
            cfs = cfs[self.predict_(cfs) == t]  # the task's classifier has the last word
            if cfs.empty:
                out.append(QueryResult.not_found("the flipping action did not flip the classifier"))
            else:
                out.append(QueryResult.ok(cfs, extra={"actions": len(acts)}))
        return out
