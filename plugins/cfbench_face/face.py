"""FACE (Poyiadzi, Sokol, Santos-Rodriguez, De Bie & Flach, AIES 2020), from the paper.

FACE looks for a counterfactual that is reachable from the query through dense regions of the
data: a graph joins the training rows and the query, each edge weighted by its length times a
penalty that grows as the density along it falls; the answer is the training row, classified as
the target with probability >= ``tp`` and lying where the density is >= ``td``, with the
shortest path from the query (Dijkstra).  The variants are the paper's two neighbourhood graphs:

* ``knn``: each point is joined to its ``k`` nearest neighbours (made symmetric);
* ``epsilon``: points closer than ``epsilon`` are joined.

Edge weight (the paper's kernel-density form): ``w_ij = ||x_i - x_j|| * f(p((x_i + x_j) / 2))``
with ``p`` a Gaussian kernel density estimate of the training rows, taken relative to its value
at the densest training row (so ``p <= 1`` there), and ``f(p) = 1 - log(p)``: the paper's
``-log`` penalty, shifted by one so that no edge is free and every weight is positive (a
requirement of Dijkstra the plain ``-log`` of an unnormalised density does not meet).

Distances are Euclidean in a normalised space: numeric and ordinal features divided by their
training range, each categorical a one-hot block scaled by 1/sqrt(2) (a change of category has
length 1).  A query that no candidate can be reached from gets ``not_found``: FACE never jumps
across a gap of the graph.

Constraints: the paper makes paths feasible by allowing only some edges.  Here

* immutables (``immutables="agree"``, the paper's way): edges exist only between points whose
  immutable features are all equal, so the component of the query holds only rows equal to it
  there; with a numeric immutable such as age that can leave few rows, and many queries without
  a CF.  ``immutables="project"`` gives every training row the query's immutable values first
  and classifies the rows again: more CFs, but they are no longer rows seen in the data;
* directions: an edge may only move each increase-only (decrease-only) feature up (down), so
  every step of the path, and the CF, moves the allowed way (the graph becomes directed);
* bounds: the CF is a training row (or one with the query's immutables), so it lies in the data's
  range; it is returned as it is and never clipped: a row outside a schema bound stays outside
  and the metrics count it.

Categorical codes and integers are those of the data rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cfbench.api import Deadline, FitContext, QueryResult, UserError

VARIANTS = ("knn", "epsilon")
ONE_HOT = 1.0 / np.sqrt(2.0)
EDGE_CHUNK = 4096  # edge midpoints per KDE evaluation (bounds the memory of one step)


def _logsumexp(A: np.ndarray, axis: int) -> np.ndarray:
    m = A.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(A - m).sum(axis=axis, keepdims=True))).squeeze(axis)


class FACE:
    """FACE over a ``knn`` or ``epsilon`` graph with kernel-density edge weights.

    Parameters (``cfbench_face.PARAMS``): ``k`` (10, knn), ``epsilon`` (1.5, epsilon),
    ``tp`` (0.6), ``td`` (0.001), ``bandwidth`` (unset: Scott's rule) and ``immutables``
    (``agree``).  Honours immutables, directions, categorical codes and integers by
    construction; bounds only in that CFs are data rows (see the module docstring).
    """

    def __init__(self, variant: str = "knn", k: int = 10, epsilon: float = 1.5, tp: float = 0.6,
                 td: float = 0.001, bandwidth: float | None = None,
                 immutables: str = "agree") -> None:
        if variant not in VARIANTS:
            raise UserError(f"unknown face variant {variant!r}; valid choices: {', '.join(VARIANTS)}")
        if immutables not in ("agree", "project"):
            raise UserError(f"face: immutables must be agree or project, got {immutables!r}")
        if k < 1 or epsilon <= 0 or not 0 <= tp <= 1 or not 0 <= td <= 1 or (
                bandwidth is not None and bandwidth <= 0):
            raise UserError("face: k >= 1, epsilon > 0, tp and td in [0, 1] and bandwidth > 0 "
                            "are required")
        self.variant, self.k, self.epsilon = variant, int(k), float(epsilon)
        self.tp, self.td, self.bandwidth, self.immutables = float(tp), float(td), bandwidth, immutables

    # ------------------------------------------------------------------ fit
    def fit(self, context: FitContext) -> FACE:
        """Encode the training rows, fit the density estimate and classify the rows once."""
        schema = context.schema
        self.columns_ = schema.names
        self.classes_ = np.asarray(context.classes)
        self.predict_proba_ = context.predict_proba
        X = context.X_train[self.columns_].to_numpy(float)
        self.X_ = X
        self.index_ = np.asarray(context.X_train.index)
        span = X.max(axis=0) - X.min(axis=0)
        self.range_ = np.where(span > 0, span, 1.0)
        self.cats_ = [(j, np.asarray(f.categories or np.unique(X[:, j]), float))
                      for j, f in enumerate(schema.features) if f.kind == "categorical"]
        self.num_ = np.array([j for j, f in enumerate(schema.features) if f.kind != "categorical"],
                             dtype=int)
        self.fixed_ = ~schema.mask("mutable")
        self.dirs_ = schema.directions()
        self.Z_ = self.encode(X)
        n, D = self.Z_.shape
        h = self.bandwidth
        if h is None:  # Scott's rule, isotropic: the mean coordinate spread
            h = float(np.mean(self.Z_.std(axis=0))) * n ** (-1.0 / (D + 4))
        self.h_ = max(h, 1e-6)
        self.log_peak_ = float(self._log_density(self.Z_).max())
        self.proba_ = self._proba(X)
        return self

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Rows -> the normalised space (range-scaled numerics, scaled one-hot categoricals)."""
        parts = [X[:, self.num_] / self.range_[self.num_]]
        parts += [(X[:, [j]] == codes[None, :]) * ONE_HOT for j, codes in self.cats_]
        return np.hstack(parts)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.predict_proba_(pd.DataFrame(X, columns=self.columns_)), float)

    def _log_density(self, P: np.ndarray) -> np.ndarray:
        """Log of the Gaussian KDE at the points ``P`` (up to a constant; only ratios are used)."""
        out = np.empty(len(P))
        for s in range(0, len(P), EDGE_CHUNK):
            block = P[s : s + EDGE_CHUNK]
            sq = ((block[:, None, :] - self.Z_[None, :, :]) ** 2).sum(axis=2)
            out[s : s + EDGE_CHUNK] = _logsumexp(-sq / (2 * self.h_**2), axis=1)
        return out

    def relative_density(self, P: np.ndarray) -> np.ndarray:
        """The KDE at ``P`` divided by its value at the densest training row (capped at 1)."""
        return np.minimum(np.exp(self._log_density(P) - self.log_peak_), 1.0)

    # ------------------------------------------------------------------ graph
    def nodes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows joined to the query's graph: their values, training positions and probabilities."""
        if self.immutables == "agree":
            keep = np.all(self.X_[:, self.fixed_] == x[self.fixed_], axis=1)
            pos = np.flatnonzero(keep)
            return self.X_[pos], pos, self.proba_[pos]
        rows = self.X_.copy()
        rows[:, self.fixed_] = x[self.fixed_]
        return rows, np.arange(len(rows)), self._proba(rows)

    def graph(self, V: np.ndarray):
        """The weighted adjacency (sparse) over the points ``V`` (row 0 the query)."""
        from scipy.sparse import csr_matrix  # scipy only when the method runs

        Zv = self.encode(V)
        dist = np.sqrt(((Zv[:, None, :] - Zv[None, :, :]) ** 2).sum(axis=2))
        n = len(V)
        if self.variant == "knn":
            adj = np.zeros((n, n), bool)
            kk = min(self.k, n - 1)
            if kk > 0:
                order = np.argsort(dist + np.diag(np.full(n, np.inf)), axis=1, kind="stable")
                adj[np.repeat(np.arange(n), kk), order[:, :kk].ravel()] = True
            adj |= adj.T
        else:
            adj = dist <= self.epsilon
        np.fill_diagonal(adj, False)
        for j in np.flatnonzero(self.dirs_):  # u -> v only if feature j moves the allowed way
            step = V[None, :, j] - V[:, None, j]
            adj &= step * self.dirs_[j] >= 0
        u, v = np.nonzero(adj)
        mid = (Zv[u] + Zv[v]) / 2.0
        w = dist[u, v] * (1.0 - np.log(np.maximum(self.relative_density(mid), 1e-300)))
        w = np.maximum(w, 1e-12)  # a zero would read as "no edge"
        return csr_matrix((w, (u, v)), shape=(n, n)), dist

    # ------------------------------------------------------------------ generate
    def _one(self, x: np.ndarray, t: int, k: int, deadline: Deadline) -> QueryResult:
        from scipy.sparse.csgraph import dijkstra  # scipy only when the method runs

        rows, pos, proba = self.nodes(x)
        t_col = int(np.searchsorted(self.classes_, t))
        cand = (proba[:, t_col] >= self.tp) & (self.classes_[np.argmax(proba, axis=1)] == t)
        if not cand.any():
            return QueryResult.not_found(
                f"face: no training row {'equal on the immutables ' if self.immutables == 'agree' else ''}"
                f"is classified as the target with probability >= {self.tp:g}")
        dens = self.relative_density(self.encode(rows))
        cand &= dens >= self.td
        if not cand.any():
            return QueryResult.not_found(f"face: no target-class candidate has density >= {self.td:g}")
        if deadline.passed():
            return QueryResult("timeout", None, "face: budget used before the graph was built")
        V = np.vstack([x[None, :], rows])
        W, _ = self.graph(V)
        cost, pred = dijkstra(W, directed=bool(np.any(self.dirs_)), indices=0,
                              return_predecessors=True)
        cost = cost[1:]
        ok = np.flatnonzero(cand & np.isfinite(cost))
        if not len(ok):
            return QueryResult.not_found(
                f"face: no candidate is reachable from the query in the {self.variant} graph")
        best = ok[np.argsort(cost[ok], kind="stable")][:k]
        hops = []
        for b in best:  # path length in edges, from the predecessor tree
            h, node = 0, b + 1
            while node != 0:
                node, h = pred[node], h + 1
            hops.append(h)
        extra = {"path_cost": [float(c) for c in cost[best]], "hops": hops,
                 "train_index": [int(i) for i in self.index_[pos[best]]],
                 "graph_size": len(V)}
        return QueryResult.ok(pd.DataFrame(rows[best], columns=self.columns_), extra=extra)

    def generate(self, queries: pd.DataFrame, targets: np.ndarray, k: int,
                 budget: float) -> list[QueryResult]:
        """Up to ``k`` CFs per query: the candidates with the shortest paths, nearest first."""
        Q = queries[self.columns_].to_numpy(float)
        return [self._one(x, int(t), k, Deadline(budget))
                for x, t in zip(Q, np.asarray(targets), strict=True)]
