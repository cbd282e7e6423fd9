"""Growing Spheres (Laugel, Lesot, Marsala, Renard & Detyniecki, IPMU 2018), from the paper.

For a query ``x`` and target class ``t`` (an *enemy* is a point the classifier assigns to ``t``):

1. **Zoom in.** Sample ``n_in_layer`` points uniformly in the ball of radius ``eta`` (first
   ``first_radius``) around ``x``; while that ball holds an enemy, divide ``eta`` by
   ``decrease_radius`` and sample again.
2. **Grow.** Sample uniformly in spherical layers ``{z : a0 <= ||z - x|| < a1}``, starting at
   ``a0 = eta`` and moving outwards by ``layer_step`` (the paper: ``eta``), until a layer holds
   an enemy; keep the enemy closest to ``x`` (L2).
3. **Feature selection** (``sparse``, the paper's sparsification): repeatedly reset the changed
   feature with the smallest move back to the query's value, as long as the result is still an
   enemy; return the last enemy.

The space is the paper's normalised one, built from the training ranges: numeric and ordinal
features divided by their range, each categorical as a one-hot block scaled by 1/sqrt(2) (so
that a change of category is a move of length 1).  Sampled points are decoded before they
are classified: a categorical takes the category whose one-hot coordinate is largest (a code of
its schema), an ordinal its nearest code, integer features are rounded.

Constraints: immutable features are left out of the space, so every point keeps the query's
values.  Bounds and directions are not part of the method (it samples a sphere around the query)
and are not enforced: nothing is clipped, the metrics count what violates them.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from cfbench.api import Deadline, FitContext, QueryResult, UserError

VARIANTS = ("default",)
ONE_HOT = 1.0 / np.sqrt(2.0)  # one-hot scale: two blocks differing in one category are 1 apart


class Space:
    """The normalised space of the mutable features: range-scaled numerics, one-hot categoricals."""

    def __init__(self, context: FitContext) -> None:
        schema = context.schema
        X = context.X_train[schema.names].to_numpy(float)
        self.d = len(schema.names)
        self.mutable = schema.mask("mutable")
        self.integer = schema.mask("integer")
        span = X.max(axis=0) - X.min(axis=0)
        self.range = np.where(span > 0, span, 1.0)
        self.numeric: list[int] = []  # feature index, per numeric coordinate
        self.blocks: list[tuple[int, np.ndarray, int]] = []  # (feature, codes, first coordinate)
        self.ordinal: list[tuple[int, np.ndarray]] = []  # (feature, codes)
        width = 0
        for j, f in enumerate(schema.features):
            if not f.mutable:
                continue
            if f.kind == "categorical":
                codes = np.asarray(f.categories or np.unique(X[:, j]), float)
                self.blocks.append((j, codes, width))
                width += len(codes)
            else:
                self.numeric.append(j)
                width += 1
                if f.kind == "ordinal":
                    self.ordinal.append((j, np.asarray(f.categories or np.unique(X[:, j]), float)))
        self.width = width
        self.num_cols = np.array([c for c in range(width) if not any(
            s <= c < s + len(codes) for _, codes, s in self.blocks)], dtype=int)
        # the farthest the training box reaches from any point, in this space: no enemy beyond
        lo, hi = X.min(axis=0), X.max(axis=0)
        self.box = (lo, hi)

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Rows in feature order -> coordinates of the mutable features."""
        Z = np.zeros((len(X), self.width))
        Z[:, self.num_cols] = X[:, self.numeric] / self.range[self.numeric]
        for j, codes, s in self.blocks:
            Z[:, s : s + len(codes)] = (X[:, [j]] == codes[None, :]) * ONE_HOT
        return Z

    def decode(self, Z: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Coordinates -> rows: the query's immutables, categories by largest one-hot, ordinals at
        their nearest code (a sphere reaches past the first and last), integers rounded."""
        X = np.repeat(x[None, :], len(Z), axis=0)
        X[:, self.numeric] = Z[:, self.num_cols] * self.range[self.numeric]
        for j, codes, s in self.blocks:
            X[:, j] = codes[np.argmax(Z[:, s : s + len(codes)], axis=1)]
        for j, codes in self.ordinal:
            X[:, j] = codes[np.argmin(np.abs(X[:, [j]] - codes[None, :]), axis=1)]
        X[:, self.integer & self.mutable] = np.round(X[:, self.integer & self.mutable])
        return X

    def reach(self, x: np.ndarray) -> float:
        """Distance from ``x`` to the farthest corner of the training box (every category moved)."""
        lo, hi = self.box
        far = np.maximum(np.abs(x - lo), np.abs(hi - x))[self.numeric] / self.range[self.numeric]
        return float(np.sqrt(np.sum(far**2) + len(self.blocks)))


def sample_layer(rng: np.random.Generator, center: np.ndarray, a0: float, a1: float,
                 n: int) -> np.ndarray:
    """``n`` points uniform in the layer ``a0 <= ||z - center|| < a1`` (a ball when ``a0 = 0``).

    A uniform direction times a radius whose D-th power is uniform on ``[a0^D, a1^D]``; written
    as ``a1 * (t + u (1 - t))^(1/D)`` with ``t = (a0/a1)^D`` so high dimensions do not overflow.
    """
    D = len(center)
    u = rng.normal(size=(n, D))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    t = (a0 / a1) ** D
    r = a1 * (t + rng.random(n) * (1.0 - t)) ** (1.0 / D)
    return center + u * r[:, None]


class GrowingSpheres:
    """Growing Spheres: the closest enemy found in growing spherical layers, then sparsified.

    Parameters (``cfbench_growing_spheres.PARAMS``): ``n_in_layer`` (2000), ``first_radius``
    (0.1), ``decrease_radius`` (10, the reference package; the paper halves), ``layer_step``
    (unset: the radius the zoom-in ended at, the paper's eta) and ``sparse`` (True).  Honours
    immutables, categorical and ordinal codes and integers; bounds and directions are not part of the
    method and are not enforced (see the module docstring).
    """

    def __init__(self, variant: str = "default", n_in_layer: int = 2000, first_radius: float = 0.1,
                 decrease_radius: float = 10.0, layer_step: float | None = None,
                 sparse: bool = True) -> None:
        if variant not in VARIANTS:
            raise UserError(f"unknown growing-spheres variant {variant!r}; valid choices: "
                            f"{', '.join(VARIANTS)}")
        if n_in_layer < 1 or first_radius <= 0 or decrease_radius <= 1 or (
                layer_step is not None and layer_step <= 0):
            raise UserError("growing-spheres: n_in_layer >= 1, first_radius > 0, "
                            "decrease_radius > 1 and layer_step > 0 are required")
        self.variant = variant
        self.n_in_layer = int(n_in_layer)
        self.first_radius = float(first_radius)
        self.decrease_radius = float(decrease_radius)
        self.layer_step = None if layer_step is None else float(layer_step)
        self.sparse = bool(sparse)

    def fit(self, context: FitContext) -> GrowingSpheres:
        """Keep the classifier, the seed and the normalised space of the training ranges."""
        self.columns_ = context.schema.names
        self.classes_ = np.asarray(context.classes)
        self.predict_proba_ = context.predict_proba
        self.seed_ = int(context.seed)
        self.space_ = Space(context)
        return self

    def _enemy(self, X: np.ndarray, t: int) -> np.ndarray:
        proba = np.asarray(self.predict_proba_(pd.DataFrame(X, columns=self.columns_)), float)
        return self.classes_[np.argmax(proba, axis=1)] == t

    def _rng(self, x: np.ndarray, t: int) -> np.random.Generator:
        """Seeded by the run's seed and the query itself: the same CF whatever the batch."""
        return np.random.default_rng([self.seed_, zlib.crc32(x.tobytes()), int(t)])

    def explore(self, x: np.ndarray, t: int, deadline: Deadline) -> tuple[np.ndarray | None, dict]:
        """Steps 1 and 2: the closest enemy (a decoded row) or None, and what the search did."""
        sp, rng = self.space_, self._rng(x, t)
        c = sp.encode(x[None, :])[0]
        info = {"zoom": 0, "layers": 0, "calls": 0}

        def enemies(a0: float, a1: float) -> np.ndarray:
            rows = sp.decode(sample_layer(rng, c, a0, a1, self.n_in_layer), x)
            info["calls"] += 1
            return rows[self._enemy(rows, t)]

        eta = self.first_radius
        found = enemies(0.0, eta)
        while len(found):  # zoom in until the ball holds no enemy
            if deadline.passed() or eta < 1e-12:
                break
            eta /= self.decrease_radius
            info["zoom"] += 1
            found = enemies(0.0, eta)
        step = self.layer_step or eta
        a0, reach = eta, sp.reach(x)
        while not len(found):  # grow layer by layer until one holds an enemy
            if a0 > reach:
                info["radius"] = a0
                return None, info
            if deadline.passed():
                info["radius"], info["timeout"] = a0, True
                return None, info
            found = enemies(a0, a0 + step)
            a0 += step
            info["layers"] += 1
        info["radius"] = a0
        dist = np.linalg.norm(sp.encode(found) - c, axis=1)
        return found[int(np.argmin(dist))], info

    def select_features(self, x: np.ndarray, e: np.ndarray, t: int) -> np.ndarray:
        """Step 3: reset the smallest move back to ``x`` while the point stays an enemy."""
        sp = self.space_
        cat = np.zeros(len(x), bool)
        cat[[j for j, _, _ in sp.blocks]] = True
        best = e.copy()
        while True:
            moved = np.flatnonzero(best != x)
            if not len(moved):
                return best
            size = np.where(cat[moved], 1.0, np.abs(best[moved] - x[moved]) / sp.range[moved])
            j = moved[np.argmin(size)]  # first of equal moves: feature order
            cand = best.copy()
            cand[j] = x[j]
            if not self._enemy(cand[None, :], t)[0]:
                return best
            best = cand

    def generate(self, queries: pd.DataFrame, targets: np.ndarray, k: int,
                 budget: float) -> list[QueryResult]:
        """One CF per query, each search stopped once ``budget`` CPU seconds have passed."""
        Q = queries[self.columns_].to_numpy(float)
        out: list[QueryResult] = []
        for x, t in zip(Q, np.asarray(targets), strict=True):
            deadline = Deadline(budget)
            e, info = self.explore(x, int(t), deadline)
            if e is None:
                if info.get("timeout"):
                    out.append(QueryResult("timeout", None, f"growing-spheres: no enemy within "
                                           f"radius {info['radius']:.3g} after {budget:g} s",
                                           extra=info))
                else:
                    out.append(QueryResult.not_found(
                        f"growing-spheres: no enemy up to radius {info['radius']:.3g}, beyond "
                        "the training data's reach", extra=info))
                continue
            cf = self.select_features(x, e, int(t)) if self.sparse else e
            info["changed_before_selection"] = int((e != x).sum())
            out.append(QueryResult.ok(pd.DataFrame(cf[None, :], columns=self.columns_),
                                      extra=info))
        return out
