"""DiCE as a cfbench generator: schema -> ``dice_ml.Data``, classifier -> a DiCE sklearn model.

What is mapped, per query:

- immutables -> ``features_to_vary`` = the mutable features;
- bounds and directions -> ``permitted_range`` for each mutable numeric/ordinal feature
  (``[max(lower, x), upper]`` for increase-only, ``[lower, min(upper, x)]`` for decrease-only);
- categorical features -> DiCE categorical columns (codes passed as strings, as DiCE stores
  them; the model adapter turns them back into numeric codes);
- seeds -> ``random_seed`` for ``random``; ``random``/``numpy`` global seeds for ``genetic``
  (it draws from both); ``kdtree`` is deterministic.

DiCE's public output (``final_cfs_df_sparse`` when it ran its post-hoc sparsity step, else
``final_cfs_df``) is returned as is: CFs DiCE returns that change an immutable, leave a bound or
are not valid are *not* filtered here; the harness's metrics report them.  DiCE's
"no counterfactuals found" becomes ``not_found``.  The per-query ``budget`` (CPU seconds,
``cfbench.core.budget``) is enforced inside the model adapter: once it has passed, the next prediction DiCE asks for raises, and the query
is recorded as ``timeout`` (the runner's hard timeout remains the backstop for hangs outside
model calls).
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from cfbench.api import Deadline, FitContext, QueryResult, UserError

VARIANTS = ("random", "genetic", "kdtree")
OUTCOME = "__cfbench_label__"
POSTHOC_ALGORITHMS = ("linear", "binary")
MAX_DECIMALS = 6


def decimals(values: np.ndarray, cap: int = MAX_DECIMALS) -> int:
    """Fewest decimals (<= ``cap``) that represent every value, e.g. ``[0.5, 1.25] -> 2``."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    for p in range(cap + 1):
        if np.allclose(v, np.round(v, p), rtol=1e-9, atol=1e-12):
            return p
    return cap


def describe(exc: BaseException) -> str:
    """``Type: message at file:line`` of the innermost frame (inside the library, usually)."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"[:1000]


class BudgetExceeded(Exception):
    """Raised from a model call once a query's time budget has passed."""


def code_str(v: float) -> str:
    """A categorical code as the string DiCE stores (``1.0`` -> ``"1"``)."""
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def to_float(df: pd.DataFrame, categorical: set[str]) -> pd.DataFrame:
    """DiCE's frame (strings for categorical codes, float32/int32 otherwise) as float codes."""
    if categorical:
        df = df.assign(**{c: pd.to_numeric(df[c].astype(str)) for c in categorical if c in df})
    return df.astype(float)


class DiceModel:
    """The classifier as DiCE's sklearn backend sees it: ``predict_proba``/``predict`` on frames.

    DiCE hands over frames with categorical columns as strings and numeric ones as float32/int32;
    they are turned back into the schema's float codes before the task's ``predict_proba``.
    """

    def __init__(self, context: FitContext) -> None:
        self.columns = context.schema.names
        self.categorical = set(context.schema.categorical)
        self.classes_ = np.asarray(context.classes)
        self._proba = context.predict_proba
        self.deadline: Deadline | None = None
        self.calls = 0

    def _frame(self, X: Any) -> pd.DataFrame:
        if not self.categorical:  # one float block, no per-column work: this runs per model call
            arr = X[self.columns].to_numpy(float) if isinstance(X, pd.DataFrame) else np.asarray(X, float)
            return pd.DataFrame(np.atleast_2d(arr), columns=self.columns)
        if isinstance(X, pd.DataFrame):
            df = X[self.columns]
        else:
            df = pd.DataFrame(np.atleast_2d(np.asarray(X, dtype=object)), columns=self.columns)
        return to_float(df, self.categorical)

    def predict_proba(self, X: Any) -> np.ndarray:
        if self.deadline is not None and self.deadline.passed():
            raise BudgetExceeded
        self.calls += 1
        return np.asarray(self._proba(self._frame(X)), float)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


@contextlib.contextmanager
def quiet(buffer: io.StringIO) -> Iterator[None]:
    """Capture DiCE's prints and tqdm bars, silence its pandas/numpy warnings."""
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)


class DiceGenerator:
    """One DiCE explainer (``random``, ``genetic`` or ``kdtree``) fitted to a task.

    Optional parameters (declared in ``cfbench_dice.PARAMS``):

    - ``total_cfs``: CFs DiCE is asked for per query (its ``total_CFs``; default: ``k``); DiCE
      optimises them jointly for diversity, and the first ``k`` it returns are kept;
    - ``posthoc_sparsity_algorithm``: ``"binary"`` (default here for every variant) or
      ``"linear"`` (DiCE's default for random and kdtree; it steps by one unit of the last
      decimal, one model call per step, and is far too slow at 4-6 decimals);
    - ``posthoc_sparsity_param``: 0..1 (default: DiCE's, 0.1); 0 switches the post-hoc step off;
    - ``dice_precision``: False (default) passes each feature's decimals as found in the training
      data (``continuous_features_precision``); True lets DiCE infer them from the column mode,
      which rounds e.g. every value of a feature whose mode is 0.0 to one decimal and so
      destroys validity (interpretml/DiCE#473) or crashes on modes like 1e-05 (DiCE#442).
    """

    def __init__(self, variant: str = "random", total_cfs: int | None = None,
                 posthoc_sparsity_algorithm: str = "binary",
                 posthoc_sparsity_param: float | None = None,
                 dice_precision: bool = False) -> None:
        if variant not in VARIANTS:
            raise UserError(f"unknown DiCE variant {variant!r}; valid choices: {', '.join(VARIANTS)}")
        if posthoc_sparsity_algorithm not in POSTHOC_ALGORITHMS:
            raise UserError(
                f"dice: posthoc_sparsity_algorithm={posthoc_sparsity_algorithm!r}; "
                f"valid choices: {', '.join(POSTHOC_ALGORITHMS)}"
            )
        if posthoc_sparsity_param is not None and not (
            isinstance(posthoc_sparsity_param, (int, float)) and 0 <= posthoc_sparsity_param <= 1
        ):
            raise UserError(
                f"dice: posthoc_sparsity_param must be a number in [0, 1], got {posthoc_sparsity_param!r}"
            )
        if total_cfs is not None and (
            isinstance(total_cfs, bool) or not isinstance(total_cfs, int) or total_cfs < 1
        ):
            raise UserError(f"dice: total_cfs must be a positive integer, got {total_cfs!r}")
        if not isinstance(dice_precision, bool):
            raise UserError(f"dice: dice_precision must be true or false, got {dice_precision!r}")
        self.variant = variant
        self.total_cfs = total_cfs
        self.dice_precision = dice_precision
        self.posthoc_sparsity_algorithm = posthoc_sparsity_algorithm
        self.posthoc_sparsity_param = posthoc_sparsity_param

    # ------------------------------------------------------------------ encoding
    def _to_dice(self, X: pd.DataFrame) -> pd.DataFrame:
        """Schema frame (all float) -> the dtypes DiCE is given (int, float, categorical strings)."""
        out = {}
        for f in self.schema_.features:
            col = X[f.name]
            if f.name in self.categorical_:
                out[f.name] = col.map(code_str).astype(object)
            elif f.name in self.integer_:
                out[f.name] = col.round().astype("int64")
            else:
                out[f.name] = col.astype(float)
        return pd.DataFrame(out, index=X.index)

    def _from_dice(self, df: pd.DataFrame) -> pd.DataFrame:
        return to_float(df[self.schema_.names], self.categorical_).reset_index(drop=True)

    # ------------------------------------------------------------------ fit
    def fit(self, context: FitContext) -> DiceGenerator:
        """Build ``dice_ml.Data`` from the training split and a ``dice_ml.Dice`` explainer."""
        # optional extra `dice`, slow to import: loaded at fit
        import dice_ml

        self.schema_ = schema = context.schema
        self.seed_ = int(context.seed)
        X = context.X_train[schema.names].astype(float)
        self.categorical_ = set(schema.categorical)
        self.integer_ = {
            f.name for f in schema.features
            if f.name not in self.categorical_ and f.integer
            and np.allclose(X[f.name], X[f.name].round())
        }
        df = self._to_dice(X)
        df[OUTCOME] = np.asarray(context.y_train, dtype=int)
        self.train_min_ = X.min()
        self.train_max_ = X.max()
        self.model_ = DiceModel(context)
        continuous = [n for n in schema.names if n not in self.categorical_]
        extra: dict[str, Any] = {}
        if not self.dice_precision:
            extra["continuous_features_precision"] = {
                n: decimals(X[n].to_numpy()) for n in continuous if n not in self.integer_
            }
        buf = io.StringIO()
        with quiet(buf):
            data = dice_ml.Data(
                dataframe=df, continuous_features=continuous, outcome_name=OUTCOME, **extra
            )
            model = dice_ml.Model(model=self.model_, backend="sklearn")
            self.explainer_ = dice_ml.Dice(data, model, method=self.variant)
        return self

    # ------------------------------------------------------------------ per query
    def _permitted_range(self, q: pd.Series) -> dict[str, list[float]]:
        """Bounds and directions of the mutable numeric/ordinal features, for this query."""
        out: dict[str, list[float]] = {}
        for f in self.schema_.features:
            if not f.mutable or f.name in self.categorical_:
                continue
            x = float(q[f.name])
            lo = float(self.train_min_[f.name]) if f.lower is None else f.lower
            hi = float(self.train_max_[f.name]) if f.upper is None else f.upper
            if f.direction == "increase-only":
                lo = max(lo, x)
            elif f.direction == "decrease-only":
                hi = min(hi, x)
            if f.name in self.integer_:
                lo, hi = float(np.ceil(lo)), float(np.floor(hi))
            if lo > hi:  # the query already lies beyond the bound it may move towards
                lo = hi = x
            out[f.name] = [int(lo), int(hi)] if f.name in self.integer_ else [lo, hi]
        return out

    def _kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"posthoc_sparsity_algorithm": self.posthoc_sparsity_algorithm}
        if self.posthoc_sparsity_param is not None:
            kw["posthoc_sparsity_param"] = self.posthoc_sparsity_param
        if self.variant == "random":
            kw["random_seed"] = self.seed_
        return kw

    def _one(self, q: pd.DataFrame, target: int, k: int, budget: float) -> QueryResult:
        # comes with dice-ml (optional extra `dice`)
        from raiutils.exceptions import UserConfigValidationException

        mutable = self.schema_.mutable
        if not mutable:
            return QueryResult.not_found("the task has no mutable features")
        qd = self._to_dice(q)
        if self.variant == "genetic":  # DiCE's genetic search draws from both global generators
            random.seed(self.seed_)
            np.random.seed(self.seed_ % 2**32)
        buf = io.StringIO()
        self.model_.deadline = Deadline(budget)
        self.model_.calls = 0
        try:
            with quiet(buf):
                res = self.explainer_.generate_counterfactuals(
                    qd, total_CFs=self.total_cfs or k, desired_class=int(target),
                    features_to_vary=mutable, permitted_range=self._permitted_range(q.iloc[0]),
                    verbose=False, **self._kwargs(),
                )
        except BudgetExceeded:
            return QueryResult(
                "timeout", None,
                f"DiCE {self.variant} exceeded the budget of {budget:g} s per query "
                f"after {self.model_.calls} model calls",
            )
        except UserConfigValidationException as exc:
            if "No counterfactuals found" in str(exc):
                return QueryResult.not_found(f"DiCE: {exc}")
            raise
        finally:
            self.model_.deadline = None
        ex = res.cf_examples_list[0]
        df = ex.final_cfs_df_sparse if ex.final_cfs_df_sparse is not None else ex.final_cfs_df
        if df is None or len(df) == 0:
            said = " ".join(buf.getvalue().split())[-300:]
            return QueryResult.not_found(f"DiCE returned no counterfactuals{': ' + said if said else ''}")
        cfs = self._from_dice(df).iloc[:k]
        extra = {"model_calls": self.model_.calls, "total_cfs": self.total_cfs or k,
                 "output": "sparse" if ex.final_cfs_df_sparse is not None else "final"}
        reason = "" if len(cfs) >= k else f"DiCE returned {len(cfs)} of {k} requested CFs"
        return QueryResult.ok(cfs, reason=reason, extra=extra)

    def generate(
        self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float
    ) -> list[QueryResult]:
        """Up to ``k`` CFs per query, one DiCE call per query, each within ``budget`` seconds."""
        out = []
        for i, t in enumerate(np.asarray(targets)):
            q = queries.iloc[[i]][self.schema_.names].astype(float)
            try:
                out.append(self._one(q, int(t), k, budget))
            except Exception as exc:  # one failing query must not take its batch down
                out.append(QueryResult.error(f"DiCE {self.variant} failed: {describe(exc)}"))
        return out
