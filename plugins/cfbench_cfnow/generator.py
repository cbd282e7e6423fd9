"""CFNOW as a cfbench generator: ``cfnow.find_tabular`` on the query's mutable subspace.

CFNOW has no notion of immutable features, bounds or directions, and treats categorical
features as 0/1 or one-hot columns.  So, per query, it is handed a vector ``z`` of the *mutable*
features only:

- numeric and ordinal feature ``f`` -> one ``num`` column ``x_f / range_f`` (range from the
  schema bounds), so CFNOW's Manhattan objective is the range-scaled L1 distance;
- categorical feature ``f`` -> one-hot ``cat`` columns ``c<f>_<i>`` (``has_ohe=True``).

Its prediction function decodes ``z`` back to a full row — immutables from the query, one-hot
back to codes — and *projects* it onto the constraints (values moved against a feature's
direction are reset to the query's, values are clipped to the bounds, integer and ordinal
features rounded) before calling the classifier.  Every point CFNOW evaluates is therefore
scored as its projection, and the projection of a CF CFNOW returns is what we return, so
validity is preserved and immutables, bounds and directions hold by construction.

The per-query ``budget`` (CPU seconds, ``cfbench.core.budget``; CFNOW's own timers are put on that
clock for the search) is CFNOW's ``limit_seconds`` (its fine-tuning time) and also a hard
deadline in the prediction function: past it the search is stopped and the closest CFs CFNOW
had already evaluated are returned (what CFNOW itself returns at the end of fine-tuning), or
``timeout`` if it had found none.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from cfbench.api import Deadline, FitContext, QueryResult, UserError, interrupt_after
from cfbench.api import clock as budget_clock

VARIANTS = ("greedy", "random", "random_optim")
STRATEGY = {"greedy": "greedy", "random": "random", "random_optim": "random"}


def describe(exc: BaseException) -> str:
    """``Type: message at file:line`` of the innermost frame (inside the library, usually)."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"[:1000]


class BudgetExceeded(Exception):
    """Raised from a model call once a query's time budget has passed."""


#: CPU seconds past the budget before a search that makes no model calls is interrupted
ALARM_SLACK = 1.0


class _CpuDatetime(datetime.datetime):
    """``datetime`` whose ``now()`` follows the budget's clock (CPU seconds), for CFNOW's timers."""

    @classmethod
    def now(cls, tz: datetime.tzinfo | None = None) -> datetime.datetime:  # type: ignore[override]
        return _EPOCH + datetime.timedelta(seconds=budget_clock())


_EPOCH = datetime.datetime(2000, 1, 1)
#: the cfnow modules that time their search with ``datetime.now()``
TIMED_MODULES = ("cfnow._fine_tune", "cfnow._cf_searchers", "cfnow.cf_finder")


@contextlib.contextmanager
def cpu_timed_cfnow() -> Iterator[None]:
    """CFNOW's ``limit_seconds`` counted in CPU seconds, like every cfbench budget.

    CFNOW measures its fine-tuning time as ``datetime.now() - start`` (wall clock) in the modules
    of ``TIMED_MODULES``; for the duration of one search their ``datetime`` is one whose
    ``now()`` reads ``cfbench.core.budget.clock``, so the search does as much work on a busy machine
    as on an idle one.  Restored afterwards.
    """
    mods = [sys.modules[m] for m in TIMED_MODULES if m in sys.modules]
    previous = [m.datetime for m in mods]
    for m in mods:
        m.datetime = _CpuDatetime
    try:
        yield
    finally:
        for m, d in zip(mods, previous, strict=True):
            m.datetime = d


def _no_download(*_args: object, **_kwargs: object) -> bool:
    return False


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Swallow prints, warnings and root-logger records (cfnow logs through ``logging.log``)."""
    buf = io.StringIO()
    previous = logging.root.manager.disable
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.CRITICAL)
        try:
            yield buf
        finally:
            logging.disable(previous)


def import_cfnow() -> Callable[..., Any]:
    """``cfnow.find_tabular``, imported without network access and without output.

    At import, ``cfnow._data_standardizer`` runs ``nltk.data.find('corpora/wordnet')`` and, when
    the corpus is missing, ``nltk.download('wordnet')`` (a network call that prints to stderr;
    the text helpers that need it are never used for tabular data).  The downloader is replaced
    by a no-op for the duration of the import, so nothing is fetched or printed; the wordnet
    reader cfnow then binds is NLTK's lazy loader and is never touched.
    """
    mod = sys.modules.get("cfnow")
    if mod is not None and hasattr(mod, "find_tabular"):
        return mod.find_tabular
    # nltk comes with cfnow (optional extra `cfnow`): imported on first use
    import nltk

    real = nltk.download
    nltk.download = _no_download
    try:
        with quiet():
            # optional extra `cfnow`, slow to import: loaded on first use
            from cfnow import find_tabular
    finally:
        nltk.download = real
    return find_tabular


class Space:
    """The mutable subspace CFNOW searches for one query, and the way back to full rows."""

    def __init__(self, gen: CfnowGenerator, q: np.ndarray) -> None:
        self.q = q
        self.gen = gen
        names: list[str] = []
        types: dict[str, str] = {}
        z0: list[float] = []
        self.num: list[tuple[int, int]] = []  # (feature, z column)
        self.cat: list[tuple[int, list[int], np.ndarray]] = []  # (feature, z columns, codes)
        for j, f in enumerate(gen.schema_.features):
            if not f.mutable:
                continue
            if f.kind == "categorical":
                codes = np.unique(np.r_[np.asarray(gen.categories_[j], float), q[j]])
                if len(codes) < 2:
                    continue
                cols = []
                for i, c in enumerate(codes):
                    name = f"c{j}_{i}"
                    names.append(name)
                    types[name] = "cat"
                    z0.append(1.0 if c == q[j] else 0.0)
                    cols.append(len(names) - 1)
                self.cat.append((j, cols, codes))
            else:
                name = f"n{j}"
                names.append(name)
                types[name] = "num"
                z0.append(q[j] / gen.scale_[j])
                self.num.append((j, len(names) - 1))
        self.names = names
        self.types = types
        self.z0 = np.asarray(z0, float)
        self.has_ohe = bool(self.cat)

    def decode(self, Z: np.ndarray) -> np.ndarray:
        """Full rows for ``Z``: immutables from the query, then projected onto the constraints."""
        g = self.gen
        X = np.tile(self.q, (len(Z), 1))
        for j, c in self.num:
            X[:, j] = Z[:, c] * g.scale_[j]
        for j, cols, codes in self.cat:
            X[:, j] = codes[np.argmax(Z[:, cols], axis=1)]
        delta = X - self.q
        against = ((g.dirs_ > 0) & (delta < 0)) | ((g.dirs_ < 0) & (delta > 0))
        X = np.where(against, self.q, X)
        P = np.where(np.isnan(g.lower_), X, np.maximum(X, g.lower_))
        P = np.where(np.isnan(g.upper_), P, np.minimum(P, g.upper_))
        P[:, g.integer_] = np.round(P[:, g.integer_])
        for j, codes in g.ordinal_:
            P[:, j] = codes[np.abs(P[:, j][:, None] - codes[None, :]).argmin(axis=1)]
        # Only values CFNOW moved are projected: a query value outside a bound is left alone.
        return np.where(X != self.q, P, X)


class Predictor:
    """What CFNOW calls: target-class probability of the decoded, projected rows (1-D).

    Also enforces the budget and remembers every evaluated point CFNOW would count as a CF
    (probability >= 0.5), so the search can be cut at the deadline without losing them.
    """

    def __init__(self, gen: CfnowGenerator, space: Space, target: int, deadline: Deadline) -> None:
        self.gen, self.space, self.deadline = gen, space, deadline
        self.t_col = int(np.searchsorted(gen.classes_, target))
        self.hits: list[np.ndarray] = []
        self.calls = 0

    def __call__(self, Z: Any) -> np.ndarray:
        if self.deadline.passed():
            raise BudgetExceeded
        self.calls += 1
        Z = np.atleast_2d(np.asarray(Z, dtype=float))
        X = self.space.decode(Z)
        p = np.asarray(self.gen.predict_proba_(pd.DataFrame(X, columns=self.gen.columns_)), float)
        p = p[:, self.t_col]
        if (p >= 0.5).any():
            self.hits.append(Z[p >= 0.5])
        return p


class CfnowGenerator:
    """``cfnow.find_tabular`` with the ``greedy``, ``random`` or ``random_optim`` strategy.

    ``random`` returns CFNOW's first CFs of the random search (``cfs_not_optimized``, the
    authors' "cfnow_random_simple"); ``greedy`` and ``random_optim`` add CFNOW's fine-tuning,
    limited to ``budget`` seconds.  CFNOW fine-tunes until its time limit, so those two variants
    take the whole budget per query; ``limit_seconds`` (float) sets a shorter fine-tuning limit.
    Optional parameters passed to ``find_tabular``: ``it_max`` (int), ``ft_change_factor``
    (float), ``size_tabu`` (int, or a float share of the features).  Declared in
    ``cfbench_cfnow.PARAMS``; there are no others.
    """

    def __init__(self, variant: str = "greedy", limit_seconds: float | None = None,
                 it_max: int | None = None,
                 ft_change_factor: float | None = None,
                 size_tabu: int | float | None = None) -> None:
        if variant not in VARIANTS:
            raise UserError(f"unknown CFNOW variant {variant!r}; valid choices: {', '.join(VARIANTS)}")
        if it_max is not None and (not isinstance(it_max, int) or it_max < 1):
            raise UserError(f"cfnow: it_max must be a positive integer, got {it_max!r}")
        if ft_change_factor is not None and not (
            isinstance(ft_change_factor, (int, float)) and ft_change_factor > 0
        ):
            raise UserError(f"cfnow: ft_change_factor must be a positive number, got {ft_change_factor!r}")
        if limit_seconds is not None and not (
            isinstance(limit_seconds, (int, float)) and limit_seconds >= 0
        ):
            raise UserError(f"cfnow: limit_seconds must be a number >= 0, got {limit_seconds!r}")
        self.variant = variant
        self.limit_seconds = limit_seconds
        self.options = {k: v for k, v in (("it_max", it_max), ("ft_change_factor", ft_change_factor),
                                          ("size_tabu", size_tabu)) if v is not None}

    def fit(self, context: FitContext) -> CfnowGenerator:
        """Import cfnow and keep the schema's scales, categories and constraints."""
        self.find_tabular_ = import_cfnow()
        schema = context.schema
        self.schema_ = schema
        self.columns_ = schema.names
        self.classes_ = np.asarray(context.classes)
        self.predict_proba_ = context.predict_proba
        self.seed_ = int(context.seed)
        X = context.X_train[self.columns_].to_numpy(float)
        lo, hi = schema.bounds()
        span = np.where(np.isnan(hi - lo), X.max(axis=0) - X.min(axis=0), hi - lo)
        self.scale_ = np.where(span > 0, span, 1.0)
        self.lower_, self.upper_ = lo, hi
        self.dirs_ = schema.directions()
        self.categories_ = [
            f.categories or tuple(np.unique(X[:, j])) for j, f in enumerate(schema.features)
        ]
        self.integer_ = np.array([f.integer and f.kind == "numeric" for f in schema.features])
        self.ordinal_ = [
            (j, np.asarray(self.categories_[j], float))
            for j, f in enumerate(schema.features) if f.kind == "ordinal" and self.categories_[j]
        ]
        return self

    def _tabu_size(self, space: Space) -> int:
        """CFNOW's default tabu size, but below the number of features it can change.

        CFNOW caps the tabu list at the number of *columns* minus one.  But a one-hot group is
        one entry that blocks all its columns, and a numeric feature at 0 never moves (CFNOW's
        steps are a share of the value), so with few mutable features the list can forbid every
        change; ``_greedy_generator`` then ``continue``s forever without counting an iteration or
        calling the model.  Capping at the number of features that can move, minus one, avoids it.
        """
        default = 5 if STRATEGY[self.variant] == "greedy" else int(round(0.2 * len(space.names)))
        movable = int(sum(space.z0[c] != 0 for _, c in space.num)) + len(space.cat)
        return int(max(0, min(default, movable - 1)))

    def _one(self, q: np.ndarray, target: int, k: int, budget: float) -> QueryResult:
        space = Space(self, q)
        if not space.names:
            return QueryResult.not_found("no mutable feature CFNOW could change")
        pred = Predictor(self, space, target, Deadline(budget))
        if pred(space.z0[None, :])[0] >= 0.5:
            return QueryResult.not_found("the query is already scored as the target class")
        pred.hits.clear()
        np.random.seed(self.seed_ % 2**32)  # CFNOW's random search draws from numpy's global RNG
        options = {"size_tabu": self._tabu_size(space), **self.options}
        limit = float(budget) if self.limit_seconds is None else min(self.limit_seconds, budget)
        if self.variant == "random":
            limit = 0.0  # no fine-tuning: CFNOW returns the CFs of the search itself
        stopped = False
        try:
            with quiet(), cpu_timed_cfnow(), interrupt_after(budget + ALARM_SLACK, BudgetExceeded):
                res = self.find_tabular_(
                    factual=pd.Series(space.z0, index=space.names),
                    model_predict_proba=pred,
                    count_cf=k,
                    feat_types=space.types,
                    cf_strategy=STRATEGY[self.variant],
                    limit_seconds=limit,
                    has_ohe=space.has_ohe,
                    verbose=False,
                    **options,
                )
            Z = res.cfs_not_optimized if self.variant == "random" else res.cfs
            Z = np.asarray(Z, float).reshape(-1, len(space.names))[:k * 4]
        except BudgetExceeded:
            stopped = True
            if not pred.hits:
                return QueryResult(
                    "timeout", None,
                    f"CFNOW {self.variant} found no CF within the budget of {budget:g} s "
                    f"({pred.calls} model calls)",
                )
            Z = np.unique(np.vstack(pred.hits), axis=0)  # every CF it had evaluated
            Z = Z[np.argsort(np.abs(Z - space.z0).sum(axis=1), kind="stable")]
        if len(Z) == 0:
            return QueryResult.not_found(f"CFNOW {self.variant} found no counterfactual")
        X = space.decode(Z)
        _, first = np.unique(X, axis=0, return_index=True)  # projections may coincide
        X = X[np.sort(first)][:k]
        extra = {"model_calls": pred.calls, "stopped_at_budget": stopped}
        reason = "budget reached; closest CFs evaluated so far" if stopped else ""
        return QueryResult.ok(pd.DataFrame(X, columns=self.columns_), reason=reason, extra=extra)

    def generate(
        self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float
    ) -> list[QueryResult]:
        """Up to ``k`` CFs per query, one ``find_tabular`` call each, within ``budget`` seconds."""
        Q = queries[self.columns_].to_numpy(float)
        out = []
        for q, t in zip(Q, np.asarray(targets), strict=True):
            try:
                out.append(self._one(q, int(t), k, budget))
            except Exception as exc:  # one failing query must not take its batch down
                out.append(QueryResult.error(f"CFNOW {self.variant} failed: {describe(exc)}"))
        return out
