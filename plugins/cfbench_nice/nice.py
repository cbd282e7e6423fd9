"""NICE (Brughmans, Leyman & Martens, DMKD 2023), vectorised over training rows and queries.

For a query ``x`` with target class ``t``:

1. the *nearest unlike neighbour* (NUN) is the HEOM-closest training row that carries label ``t``
   and that the classifier also predicts as ``t`` (the paper's "justified" candidates);
2. ``none`` returns the NUN; the other variants start from ``x`` and, one step at a time, copy
   one feature value from the NUN into the current candidate, choosing the copy with the best
   reward, until the classifier predicts ``t``.  The rewards, with ``s`` the target-class score,
   ``c`` the current candidate and ``c'`` a one-feature substitution of it:

   - sparsity:     ``s(c') - s(c)``
   - proximity:    ``(s(c') - s(c)) / (d(x, c') - d(x, c) + eps)``  (d = HEOM)
   - plausibility: ``(s(c') - s(c)) * (AE(c) - AE(c'))``  (AE = autoencoder reconstruction error)

The search ends at the latest when every differing feature has been copied, i.e. at the NUN,
which the classifier assigns to ``t``; so a CF is always found when a NUN exists.

Constraints (not in the paper; see docs/nice.md): a candidate row's immutable features, and any
feature whose value would move against its allowed direction or leave its bounds, are first set
to the query's value; rows the classifier then no longer assigns to ``t`` are dropped.  The NUN is
the closest remaining row, so substitution only ever copies admissible values and still ends in
a valid CF.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cfbench.api import FitContext, QueryResult, UserError, heom, heom_scales

VARIANTS = ("none", "sparsity", "proximity", "plausibility")
EPS = 1e-7  # the paper's epsilon in the proximity reward (nicex uses 1e-7 too)
CHUNK = 200_000  # rows per predict_proba call when re-scoring constrained candidates


class NICE:
    """Nearest-instance counterfactuals with a greedy, reward-steered substitution search.

    Parameters beyond ``variant`` (all optional): ``ae_epochs`` (int, default 100) and
    ``ae_hidden`` (int, bottleneck width, default 2) for the plausibility autoencoder; declared
    in ``cfbench_nice.PARAMS``.
    """

    def __init__(self, variant: str = "sparsity", ae_epochs: int = 100, ae_hidden: int = 2) -> None:
        if variant not in VARIANTS:
            raise UserError(f"unknown NICE variant {variant!r}; valid choices: {', '.join(VARIANTS)}")
        if not isinstance(ae_epochs, int) or ae_epochs < 1:
            raise UserError(f"nice: ae_epochs must be a positive integer, got {ae_epochs!r}")
        if not isinstance(ae_hidden, int) or ae_hidden < 1:
            raise UserError(f"nice: ae_hidden must be a positive integer, got {ae_hidden!r}")
        self.variant = variant
        self.ae_epochs = ae_epochs
        self.ae_hidden = ae_hidden

    # ------------------------------------------------------------------ fit
    def fit(self, context: FitContext) -> NICE:
        """Keep the justified candidates (label == prediction), HEOM scales and, if needed, the AE."""
        schema = context.schema
        self.columns_ = schema.names
        self.classes_ = np.asarray(context.classes)
        self.predict_proba_ = context.predict_proba
        X = context.X_train[self.columns_].to_numpy(float)
        y = np.asarray(context.y_train)
        pred = self._predict(X)
        keep = pred == y
        self.X_ = X[keep]
        self.y_ = y[keep]
        self.train_index_ = np.asarray(context.X_train.index)[keep]
        self.categorical_ = schema.mask("kind", "categorical")
        self.scale_ = heom_scales(context.X_train[self.columns_], self.categorical_)
        self.fixed_ = ~schema.mask("mutable")
        self.lower_, self.upper_ = schema.bounds()
        self.dirs_ = schema.directions()
        self.ae_ = None
        if self.variant == "plausibility":
            # loads torch, which only this variant needs
            from cfbench_nice.autoencoder import fit_autoencoder

            self.ae_ = fit_autoencoder(
                X, schema, seed=context.seed, epochs=self.ae_epochs, bottleneck=self.ae_hidden
            )
        return self

    def _proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.predict_proba_(pd.DataFrame(X, columns=self.columns_)), float)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self._proba(X), axis=1)]

    # ------------------------------------------------------------------ NUN
    def _admissible(self, q: np.ndarray, C: np.ndarray) -> np.ndarray:
        """Candidates with every inadmissible feature value replaced by the query's value."""
        delta = C - q
        bad = self.fixed_ | np.zeros_like(C, dtype=bool)
        bad |= ((self.dirs_ > 0) & (delta < 0)) | ((self.dirs_ < 0) & (delta > 0))
        with np.errstate(invalid="ignore"):
            bad |= (C < self.lower_) | (C > self.upper_)  # NaN bound compares False: open
        return np.where(bad, q, C), bad.any(axis=1)

    def nearest_unlike_neighbours(
        self, Q: np.ndarray, targets: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per query: the NUN (constraint-adjusted), its training index (or -1) and its HEOM distance."""
        n, d = Q.shape
        nun = np.full((n, d), np.nan)
        idx = np.full(n, -1, dtype=int)
        dist = np.full(n, np.inf)
        pending = []  # (query, row ids, adjusted rows, rows the constraints changed)
        to_score: list[np.ndarray] = []
        for i, (q, t) in enumerate(zip(Q, targets, strict=True)):
            rows = np.flatnonzero(self.y_ == t)
            C, changed = self._admissible(q, self.X_[rows])
            pending.append((i, rows, C, changed))
            to_score.append(C[changed])
        # One classifier pass (in chunks) re-scores every row the constraints changed.
        flat = np.concatenate(to_score) if to_score else np.zeros((0, d))
        preds = np.concatenate(
            [self._predict(flat[s : s + CHUNK]) for s in range(0, len(flat), CHUNK)]
        ) if len(flat) else np.zeros(0, dtype=self.classes_.dtype)
        offset = 0
        for (i, rows, C, changed), part in zip(pending, to_score, strict=True):
            ok = np.ones(len(rows), dtype=bool)
            ok[changed] = preds[offset : offset + len(part)] == targets[i]
            offset += len(part)
            if not ok.any():
                continue
            dd = heom(Q[i][None, :], C[ok], self.scale_, self.categorical_)[0]
            j = int(np.argmin(dd))  # first of equally near rows (training order)
            nun[i], idx[i], dist[i] = C[ok][j], self.train_index_[rows[ok][j]], dd[j]
        return nun, idx, dist

    # ------------------------------------------------------------------ search
    def _reward(
        self, cand: np.ndarray, s_new: np.ndarray, s_old: np.ndarray, col: np.ndarray,
        nun_val: np.ndarray, q_val: np.ndarray, ae_old: np.ndarray | None,
    ) -> np.ndarray:
        gain = s_new - s_old
        if self.variant == "sparsity":
            return gain
        if self.variant == "proximity":
            # The current candidate holds the query's value at ``col`` (that feature has not
            # been copied yet), so the HEOM increase is that feature's own term.
            step = np.abs(nun_val - q_val) / self.scale_[col]
            step = np.where(self.categorical_[col], (nun_val != q_val).astype(float), step)
            return gain / (step + EPS)
        ae_new = self.ae_.errors(cand)
        return gain * (ae_old - ae_new)

    def search(self, Q: np.ndarray, nun: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Greedy substitution for all queries at once; returns the CFs and the steps taken.

        Loops over steps (at most the number of features), never over training rows; each step
        scores every one-feature substitution of every unfinished query in one classifier call.
        """
        cur = Q.copy()
        t_col = np.searchsorted(self.classes_, targets)
        proba = self._proba(cur)
        score = proba[np.arange(len(cur)), t_col]
        active = self.classes_[np.argmax(proba, axis=1)] != targets
        steps = np.zeros(len(Q), dtype=int)
        ae_cur = self.ae_.errors(cur) if self.ae_ is not None else None
        while active.any():
            qi = np.flatnonzero(active)
            diff = cur[qi] != nun[qi]  # exact: copied values are identical floats
            stuck = ~diff.any(axis=1)  # already equal to the NUN: cannot happen, never loop
            if stuck.any():
                active[qi[stuck]] = False
                continue
            row, col = np.nonzero(diff)  # row indexes qi
            owner = qi[row]
            cand = cur[owner].copy()
            cand[np.arange(len(cand)), col] = nun[owner, col]
            p = self._proba(cand)
            s_new = p[np.arange(len(cand)), t_col[owner]]
            reward = self._reward(
                cand, s_new, score[owner], col, nun[owner, col], Q[owner, col],
                None if ae_cur is None else ae_cur[owner],
            )
            # Best substitution per query: sort by (query, -reward), keep the first of each.
            order = np.lexsort((-reward, owner))
            first = order[np.r_[True, owner[order][1:] != owner[order][:-1]]]
            win = owner[first]
            cur[win] = cand[first]
            score[win] = s_new[first]
            if ae_cur is not None:
                ae_cur[win] = self.ae_.errors(cand[first])
            steps[win] += 1
            pred = self.classes_[np.argmax(p[first], axis=1)]
            active[win[pred == targets[win]]] = False
        return cur, steps

    # ------------------------------------------------------------------ generate
    def generate(
        self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float
    ) -> list[QueryResult]:
        """One CF per query (NICE is not a multiple-CF method); ``k`` and ``budget`` are not used."""
        Q = queries[self.columns_].to_numpy(float)
        targets = np.asarray(targets)
        nun, idx, dist = self.nearest_unlike_neighbours(Q, targets)
        found = idx >= 0
        cfs = nun.copy()
        steps = np.zeros(len(Q), dtype=int)
        if self.variant != "none" and found.any():
            cfs[found], steps[found] = self.search(Q[found], nun[found], targets[found])
        out: list[QueryResult] = []
        for i in range(len(Q)):
            if not found[i]:
                out.append(QueryResult.not_found(
                    "no correctly classified target-class training row satisfies the constraints"
                ))
                continue
            extra = {"nun_index": int(idx[i]), "nun_heom": float(dist[i]), "steps": int(steps[i])}
            out.append(QueryResult.ok(pd.DataFrame(cfs[i : i + 1], columns=self.columns_), extra=extra))
        return out
