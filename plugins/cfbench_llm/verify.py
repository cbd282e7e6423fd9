"""The classifier in the loop: the ``verified`` variants' search, shared by the local and API models.

A model proposes candidate counterfactuals; the harness holds the one thing the model lacks, the
task's classifier.  ``Verifier.search`` runs the rounds: candidates that change a feature out of
its bounds or against its direction are dropped, the rest are checked with the classifier, the
valid ones are shortened and the closest returned.  A query with none has the edits of its
rejected candidates composed (``compose``), and if that fails too it goes to another round whose
prompt shows the model what was rejected.  Where the candidates come from (a batch of
constrained decodes, or calls to a chat endpoint) is the caller's ``propose``.  Nothing here
imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cfbench.api import FitContext, QueryResult, mad
from cfbench_llm.prompts import ValueFormat, sparsify

#: bisection steps per changed numeric feature when a valid candidate is shortened
REFINE_STEPS = 6
#: rejected candidates shown to the model in the next round (the most probable first)
SHOWN = 3
#: quantiles of the target class's training values tried per feature when ranking features (``steer``)
TYPICAL = (0.25, 0.5, 0.75)
#: per-candidate counters of ``QueryResult.extra`` summed over a query's candidates
COUNTERS = ("new_tokens", "prompt_tokens", "calls")

#: ``propose(pending, notes, round)``: for each pending query (indices into the batch), its
#: candidates as ``QueryResult``s; an empty list means the query is out of budget and leaves
Propose = Callable[[np.ndarray, list[str], int], list[list[QueryResult]]]
#: ``feedback(x, source, target, rejected_rows)``: the text the next round shows the model
Feedback = Callable[[np.ndarray, int, int, list[np.ndarray]], str]


class Verifier:
    """What the verified variants know of the task: its classifier, bounds, directions and scales."""

    def __init__(self, context: FitContext, formats: Sequence[ValueFormat], compose: bool = True) -> None:
        names = context.schema.names
        X_train = context.X_train[names].to_numpy(float)
        self.names = names
        self.classes = np.asarray(context.classes)
        self.predict_proba = context.predict_proba
        self.mad = mad(X_train)
        self.categorical = context.schema.mask("kind", "categorical")
        self.directions = context.schema.directions()
        self.span = np.ptp(X_train, axis=0)
        self.lower, self.upper = context.schema.bounds()
        self.formats = list(formats)
        self.compose_ = bool(compose)
        self.mutable = np.array([f.mutable for f in context.schema], dtype=bool)
        # what each class's training rows (as the classifier labels them) look like, per feature
        labels = self.predict(X_train)
        self.typical = {c: np.nanquantile(X_train[labels == c], TYPICAL, axis=0) if (labels == c).any()
                        else np.nanquantile(X_train, TYPICAL, axis=0) for c in self.classes}

    # ------------------------------------------------------------------ checks
    def proba(self, rows: pd.DataFrame | np.ndarray) -> np.ndarray:
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=self.names)
        return np.asarray(self.predict_proba(frame), dtype=float)

    def predict(self, rows: pd.DataFrame | np.ndarray) -> np.ndarray:
        return self.classes[np.argmax(self.proba(rows), axis=1)]

    def breaks_constraints(self, X: np.ndarray, C: np.ndarray) -> np.ndarray:
        """Per candidate: a *changed* feature left its bounds or moved against its direction.
        A value the query already had out of bounds is the patient's, not the candidate's
        fault, so it is not held against it."""
        change = np.abs(C - X) > 1e-6 * np.where(self.span > 0, self.span, 1.0)
        with np.errstate(invalid="ignore"):
            outside = (C < self.lower) | (C > self.upper)
        against = (self.directions != 0) & (self.directions * (C - X) < 0)
        return ((outside | against) & change).any(axis=1)

    def steer(self, X: np.ndarray, targets: np.ndarray) -> list[np.ndarray]:
        """Per query, its mutable features ranked by how far one change moves the classifier
        toward the target: feature ``j`` set to each ``TYPICAL`` quantile of the target class's
        training values (those within ``j``'s bounds and direction), the best probability kept.
        Features no such value moves come last, in schema order.  The verified variants start
        their sampled candidates from these features, so a long feature list is not searched from
        its top (a small model edits the first features it is shown)."""
        cols = np.flatnonzero(self.mutable)
        rows, owner, feat = [], [], []
        for q, (x, t) in enumerate(zip(X, targets, strict=True)):
            for j in cols:
                for v in np.unique(self.typical[t][:, j]):
                    ok = (np.isnan(self.lower[j]) or v >= self.lower[j]) and (np.isnan(self.upper[j]) or v <= self.upper[j])
                    if v == x[j] or not ok or self.directions[j] * (v - x[j]) < 0:
                        continue
                    row = x.copy()
                    row[j] = v
                    rows.append(row)
                    owner.append(q)
                    feat.append(j)
        gain = np.full((len(X), len(self.names)), -np.inf)
        if rows:
            owners = np.asarray(owner)
            proba = self.proba(np.stack(rows))[np.arange(len(rows)), np.searchsorted(self.classes, targets[owners])]
            np.maximum.at(gain, (owners, np.asarray(feat)), proba)
        return [cols[np.argsort(-gain[q, cols], kind="stable")] for q in range(len(X))]

    def distance(self, x: np.ndarray, c: np.ndarray) -> float:
        """L1 over numeric features in units of their training MAD, plus 1 per changed categorical."""
        d = np.abs(c - x)
        cat = self.categorical
        return float((d[~cat] / self.mad[~cat]).sum() + (d[cat] > 0).sum())

    # ------------------------------------------------------------------ search
    def search(self, X: np.ndarray, sources: np.ndarray, targets: np.ndarray, k: int, rounds: int,
               propose: Propose, feedback: Feedback) -> list[QueryResult]:
        """Up to ``k`` valid CFs per query from the candidates ``propose`` gives, in up to ``rounds``
        rounds.  Candidates that break a bound or direction are dropped, the rest checked with
        the classifier; a query with no valid one goes to another round whose note lists (up to
        ``SHOWN`` of) the rejected candidates, most probable first, unless a merge of the edits
        of its rejected candidates so far (``compose``, when on) is valid.  The valid ones are
        shortened (``refine``) and the ``k`` closest returned, preferring different
        changed-feature sets.  A query none of whose candidates parsed gets its first
        candidate's failure (an endpoint's error stays an error, not a ``not_found``)."""
        n = len(X)
        found: list[list[tuple[float, np.ndarray, QueryResult]]] = [[] for _ in range(n)]
        tried, done, broke, composed = (np.zeros(n, dtype=int) for _ in range(4))
        pool: list[list[tuple[float, np.ndarray, QueryResult]]] = [[] for _ in range(n)]
        totals: list[dict[str, int]] = [{} for _ in range(n)]
        parsed = np.zeros(n, dtype=bool)
        failure: list[QueryResult | None] = [None] * n
        notes = [""] * n
        pending = np.arange(n)
        for r in range(rounds):
            got = propose(pending, [notes[q] for q in pending], r)
            live = [q for q, g in zip(pending, got, strict=True) if g]
            for q, g in zip(pending, got, strict=True):
                tried[q] += len(g)
                done[q] += bool(g)
                for res in g:
                    for key in COUNTERS:
                        if key in res.extra:
                            totals[q][key] = totals[q].get(key, 0) + int(res.extra[key])
                    parsed[q] |= res.status == "ok"
                    if res.status != "ok" and failure[q] is None:
                        failure[q] = res
            cands = [(q, res) for q, g in zip(pending, got, strict=True) for res in g if res.status == "ok"]
            if cands:
                owners = np.array([q for q, _ in cands])
                rows = np.stack([res.cfs.to_numpy(float)[0] for _, res in cands])
                proba = self.proba(rows)
                pred = self.classes[np.argmax(proba, axis=1)]
                p_target = proba[np.arange(len(cands)), np.searchsorted(self.classes, targets[owners])]
                bad = self.breaks_constraints(X[owners], rows)
                for (q, res), row, yhat, pt, b in zip(cands, rows, pred, p_target, bad, strict=True):
                    if b:
                        broke[q] += 1
                    elif yhat == targets[q]:
                        found[q].append((self.distance(X[q], row), row, res))
                    else:
                        pool[q].append((float(pt), row, res))
            if self.compose_:
                for q, row, res in self.compose(X, targets, [q for q in live if not found[q]], pool):
                    found[q].append((self.distance(X[q], row), row, res))
                    composed[q] += 1
            pending = np.array([q for q in live if not found[q]], dtype=int)
            if len(pending) == 0 or r + 1 == rounds:
                break
            for q in pending:  # what the next round shows: the most probable rejected candidates
                rej = sorted(pool[q], key=lambda t: -t[0])
                if rej:
                    notes[q] = feedback(X[q], int(sources[q]), int(targets[q]), [row for _, row, _ in rej[:SHOWN]])
        found = self.refine(X, targets, found)
        out = []
        for q in range(n):
            extra: dict[str, Any] = {"samples": int(tried[q]), "rounds": int(done[q]),
                                     "valid_candidates": len(found[q]), "broke_constraints": int(broke[q]),
                                     "composed": int(composed[q]),
                                     "new_tokens": 0, "prompt_tokens": 0, **totals[q]}
            if not found[q]:
                if not parsed[q] and failure[q] is not None:
                    f = failure[q]
                    out.append(QueryResult(f.status, None, f.reason, raw=f.raw, extra={**f.extra, **extra}))
                else:
                    out.append(QueryResult.not_found(
                        f"no valid counterfactual among {tried[q]} candidates in {done[q]} round(s)", extra=extra))
                continue
            keep = self.closest_diverse(X[q], found[q], k)
            extra["distinct"] = len({tuple(row.tolist()) for _, row, _ in found[q]})
            if any("edited" in res.extra for _, _, res in keep):
                extra["edited"] = [res.extra.get("edited") for _, _, res in keep]
            if any("composed_of" in res.extra for _, _, res in keep):  # merged candidates (compose)
                extra["composed_of"] = [res.extra.get("composed_of", 1) for _, _, res in keep]
            cfs = pd.DataFrame(np.stack([row for _, row, _ in keep]), columns=self.names)
            out.append(QueryResult.ok(cfs, raw="".join(res.raw or "" for _, _, res in keep), extra=extra))
        return out

    def compose(self, X: np.ndarray, targets: np.ndarray, queries: Sequence[int],
                pool: list[list[tuple[float, np.ndarray, QueryResult]]]) -> list[tuple[int, np.ndarray, QueryResult]]:
        """Valid CFs merged from the edits of each query's rejected candidates (one batch).

        A candidate changes a few features (the edits format caps them), and the classifier may
        need more.  Each (feature, value) edit some candidate wrote is scored alone (the target's
        probability with only that change); then, best first, edits are added to a merge (a
        feature keeps its first value) until the classifier gives the target.  The smallest such
        merge is kept, and ``refine`` later reverts what it does not need.  Every value is one
        the model wrote for that feature in a candidate that kept the bounds and directions, so
        the merge keeps them too.  Costs classifier calls only."""
        edits: list[tuple[int, int, float, QueryResult]] = []
        span: dict[int, range] = {}  # each query's edits, in order
        for q in queries:
            start, seen = len(edits), set()
            for _, row, res in sorted(pool[q], key=lambda t: -t[0]):
                for j in np.flatnonzero(row != X[q]):
                    if (j, row[j]) not in seen:
                        seen.add((j, row[j]))
                        edits.append((q, int(j), float(row[j]), res))
            span[q] = range(start, len(edits))
        if not edits:
            return []
        single = np.stack([X[q] for q, _, _, _ in edits])
        single[np.arange(len(edits)), [j for _, j, _, _ in edits]] = [v for _, _, v, _ in edits]
        owners = np.array([q for q, _, _, _ in edits])
        gain = self.proba(single)[np.arange(len(edits)), np.searchsorted(self.classes, targets[owners])]
        trials, owner, parts = [], [], []
        for q in queries:
            merged, used = X[q].copy(), []
            for i in sorted(span[q], key=lambda i: -gain[i]):
                _, j, v, res = edits[i]
                if merged[j] != X[q][j]:
                    continue
                merged = merged.copy()
                merged[j] = v
                used.append(res)
                if len(used) > 1:
                    trials.append(merged)
                    owner.append(q)
                    parts.append(list(used))
        if not trials:
            return []
        rows = np.stack(trials)
        tq = np.asarray(owner)
        ok = (self.predict(rows) == targets[tq]) & ~self.breaks_constraints(X[tq], rows)
        out, done = [], set()
        for i in np.flatnonzero(ok):  # trials are in merge order: the first valid is the smallest
            q = int(tq[i])
            if q in done:
                continue
            done.add(q)
            used = list({id(res): res for res in parts[i]}.values())  # the candidates it drew on
            extra: dict[str, Any] = {"composed_of": len(used)}
            if any("edited" in res.extra for res in used):  # the features the merge changes
                extra["edited"] = [self.names[j] for j in np.flatnonzero(rows[i] != X[q])]
            out.append((q, rows[i], QueryResult.ok(pd.DataFrame([rows[i]], columns=self.names),
                                                   raw="\n".join(res.raw or "" for res in used), extra=extra)))
        return out

    def refine(self, X: np.ndarray, targets: np.ndarray,
               found: list[list[tuple[float, np.ndarray, Any]]]) -> list[list[tuple[float, np.ndarray, Any]]]:
        """Every valid candidate shortened with the classifier (all queries in one batch): the
        changes it does not need are reverted, smallest first (``prompts.sparsify``), then each
        remaining numeric change is moved toward the query by ``REFINE_STEPS`` bisection steps
        on the feature's written grid, kept only while the classifier still gives the target.
        Moving toward the query keeps the change's direction, and values stay in their bounds."""
        owner = [q for q, cands in enumerate(found) for _ in cands]
        if not owner:
            return found
        idx = np.asarray(owner)
        Xq, tq = X[idx], targets[idx]
        C0 = np.stack([row for cands in found for _, row, _ in cands])
        C = sparsify(Xq, C0, tq, self.mad, self.predict, self.names)
        same = (C == Xq).all(axis=1)  # a classifier that accepts the query itself: keep a change
        C[same] = C0[same]
        lo = np.nan_to_num(self.lower, nan=-np.inf)
        hi = np.nan_to_num(self.upper, nan=np.inf)
        for j in np.flatnonzero(~self.categorical):
            moved = np.flatnonzero(C[:, j] != Xq[:, j])
            if not len(moved):
                continue
            good, bad = C[moved, j].copy(), Xq[moved, j].copy()
            fmt = self.formats[j]
            for _ in range(REFINE_STEPS):
                mid = np.clip([float(fmt.format(v)) for v in (good + bad) / 2], lo[j], hi[j])
                step = (mid != good) & (mid != bad)
                if not step.any():
                    break
                trial = C[moved[step]].copy()
                trial[:, j] = mid[step]
                ok = self.predict(trial) == tq[moved[step]]
                rows = np.flatnonzero(step)
                good[rows[ok]] = mid[step][ok]
                bad[rows[~ok]] = mid[step][~ok]
            C[moved, j] = good
        out: list[list[tuple[float, np.ndarray, Any]]] = [[] for _ in found]
        for q, row, (_, _, res) in zip(owner, C, (c for cands in found for c in cands), strict=True):
            out[q].append((self.distance(X[q], row), row, res))
        return out

    @staticmethod
    def closest_diverse(x: np.ndarray, found: list[tuple[float, np.ndarray, Any]], k: int) -> list:
        """Up to ``k`` distinct valid CFs, closest first; a CF changing the same set of features as
        one already chosen waits until every other set has had its turn."""
        ranked, seen_rows = [], set()
        for item in sorted(found, key=lambda t: t[0]):
            key = tuple(item[1].tolist())
            if key not in seen_rows:
                seen_rows.add(key)
                ranked.append(item)
        chosen, sets = [], set()
        for item in ranked:
            changed = tuple(np.flatnonzero(item[1] != x))
            if changed not in sets:
                sets.add(changed)
                chosen.append(item)
        chosen += [item for item in ranked if all(item is not c for c in chosen)]
        return chosen[:k]
