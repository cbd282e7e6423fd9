"""The metric registry: one ``Metric`` entry per metric, read by scoring, the summary, ranks,
plots, the board schema, the HTML report and ``cfbench list metrics``.

Adding a metric is one entry in ``REGISTRY`` (plus its test): a per-CF function of a
``metrics.CFContext`` (or a query-level aggregation), the scopes it is reported in, how it is
aggregated there, which direction is better, whether it is ranked, and its column header.

Scopes (``summary.json``: method -> direction -> scope -> metric):

* ``all``: every query's ``k`` slots; a slot scores only with a *valid* CF, so failures and
  invalid CFs count as 0 (``sum over valid CFs / (n_queries * k)``); coverage and runtime too.
* ``valid``: the mean over valid CFs, the primary figure of distance, sparsity, plausibility and
  constraints (a CF that misses its target class is no counterfactual).
* ``found``: the mean over every returned CF, valid or not (secondary).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cfbench.score import metrics as M

SCOPES = ("all", "valid", "found")
#: how a metric becomes one number in a scope
AGGREGATIONS = ("share", "mean", "coverage", "valid_coverage", "pooled_actionable", "query_mean",
                "median", "p95")
#: per-query value a ranked metric is ranked on: the share of the k slots holding a valid CF
#: (``slot_mean``), or the best (``min``) / mean (``mean``) value over the query's valid CFs
RANKINGS = ("slot_mean", "min", "mean")


@dataclass(frozen=True)
class Metric:
    """One metric: what it measures (``description``, ``formula``, ``citation``), how it is
    computed (``per_cf``) and aggregated (``scopes``, ``aggregation``), and how it is shown."""

    name: str
    header: str
    description: str
    formula: str
    scopes: tuple[str, ...]
    aggregation: str
    better: str | None  # "higher", "lower" or None (runtime: no better direction)
    per_cf: Callable[[M.CFContext], np.ndarray] | None = None  # None: a query-level metric
    citation: str = ""
    fmt: str = ".2f"
    #: scopes shown as leaderboard columns, the first as ``header``, the others as "header (scope)"
    table: tuple[str, ...] = ()
    #: one of the narrow terminal table's columns (its first table scope)
    key: bool = False
    #: per-query ranking (``RANKINGS``) or None (not ranked)
    rank: str | None = None
    #: ranks are averaged within a group, then the groups are averaged into the overall rank
    rank_group: str = ""

    def __post_init__(self) -> None:
        if not set(self.scopes) <= set(SCOPES) or not set(self.table) <= set(self.scopes):
            raise ValueError(f"metric {self.name}: scopes {self.scopes}, table {self.table}")
        if self.aggregation not in AGGREGATIONS or self.rank not in (None, *RANKINGS):
            raise ValueError(f"metric {self.name}: aggregation {self.aggregation}, rank {self.rank}")
        if self.better not in (None, "higher", "lower"):
            raise ValueError(f"metric {self.name}: better {self.better!r}")

    @property
    def higher_is_better(self) -> bool:
        return self.better == "higher"

    def column_header(self, scope: str) -> str:
        return self.header if scope == self.table[0] else f"{self.header} ({scope})"

    def card(self) -> dict[str, Any]:
        """The metric as data, for ``cfbench list metrics --json`` and the docs."""
        return {"name": self.name, "header": self.header, "description": self.description,
                "formula": self.formula, "citation": self.citation, "scopes": list(self.scopes),
                "aggregation": self.aggregation, "better": self.better,
                "per": "CF" if self.per_cf else "query", "ranked": self.rank is not None,
                "rank": self.rank, "rank_group": self.rank_group or None}


def _flag(name: str) -> Callable[[M.CFContext], np.ndarray]:
    return lambda ctx: ctx.flags[name]


def _violates(ctx: M.CFContext) -> np.ndarray:
    return np.any([ctx.flags[f] for f in CONSTRAINT_FLAGS], axis=0) if len(ctx.C) else np.zeros(0, bool)


def _carla(which: str) -> Callable[[M.CFContext], np.ndarray]:
    return lambda ctx: M.carla_distances(ctx.carla_delta)[which]


def _redundancy(ctx: M.CFContext) -> np.ndarray:
    if ctx.predict is None:
        return np.full(len(ctx.C), np.nan)
    return M.redundancy(ctx.X, ctx.C, ctx.change, ctx.target, ctx.predict)


CONSTRAINT_FLAGS = ("changes_immutable", "against_direction", "out_of_bounds", "invalid_value")
_CF_SCOPES = ("valid", "found")
_SHARE_SCOPES = ("all", "valid", "found")
_CARLA = "Pawelczyk et al. 2021 (CARLA)"
_CARLA_SPACE = ("CARLA's encoding: numeric and ordinal features min-max scaled over every row, "
                "a two-code categorical one 0/1 column, others one-hot")

REGISTRY: tuple[Metric, ...] = (
    Metric("coverage", "coverage", "share of queries with at least one valid CF (CF-Bench's "
           "coverage)", "mean_q 1[exists c in C_q: f(c) = t]", ("all",), "valid_coverage",
           "higher", citation="de Oliveira and Martens 2021 (CF-Bench)", table=("all",)),
    Metric("returned", "returned", "share of queries with at least one CF, valid or not",
           "mean_q 1[|C_q| > 0]", ("all",), "coverage", "higher", table=("all",)),
    Metric("validity", "validity", "share of CFs the classifier assigns to the target class "
           "(a CF exactly on the decision boundary is valid towards neither class)",
           "1[p_t(c) > max_{j != t} p_j(c)]; all: sum / (n_queries * k), found: mean over "
           "returned CFs", ("all", "found"), "share", "higher",
           per_cf=lambda ctx: M.validity(ctx.pred, ctx.target), citation="Wachter et al. 2017",
           table=("all", "found"), key=True, rank="slot_mean", rank_group="validity"),
    Metric("unscorable", "unscorable", "share of CFs the classifier raised an error on (e.g. an "
           "unseen category code); counted invalid", "1[f(c) raised]", _CF_SCOPES[1:], "mean",
           "lower", per_cf=lambda ctx: ctx.unscorable),
    Metric("l1_mad_cat", "L1/MAD+cat", "mixed-type L1: numeric and ordinal changes in training "
           "MADs plus 1 per changed categorical feature (the headline proximity)",
           "sum_{F_cont} |c_f - x_f| / MAD_f + sum_{F_cat} 1[c_f != x_f]", _CF_SCOPES, "mean",
           "lower", per_cf=lambda ctx: M.l1_mad_cat(ctx.X, ctx.C, ctx.scorer.mad_, ctx.scorer.cat_),
           citation="Mothilal et al. 2020 (DiCE's two proximities, summed)",
           table=("valid", "found"), key=True, rank="min", rank_group="quality"),
    Metric("l1_mad", "L1/MAD numeric", "L1 over numeric and ordinal features only, in "
           "training MADs (ignores categorical changes: read with cat. changed)",
           "sum_{f in F_cont} |c_f - x_f| / MAD_f", _CF_SCOPES, "mean", "lower",
           per_cf=lambda ctx: M.l1_mad(ctx.X, ctx.C, ctx.scorer.mad_, ctx.scorer.cont_),
           citation="Wachter et al. 2017"),
    Metric("heom", "HEOM", "heterogeneous Euclidean-overlap distance: range-normalised numeric "
           "and ordinal differences, categorical features as 0/1 overlap (NICE's distance)",
           "sqrt(sum_{F_cont} ((c_f - x_f)/(max_f - min_f))^2 + sum_{F_cat} 1[c_f != x_f])",
           _CF_SCOPES, "mean", "lower",
           per_cf=lambda ctx: M.heom(ctx.X, ctx.C, ctx.scorer.span_, ctx.scorer.cat_),
           citation="Wilson and Martinez 1997; Brughmans et al. 2023 (NICE)", fmt=".3f",
           table=("valid",)),
    Metric("carla_l0", "L0 (CARLA)", "changed columns in CARLA's encoding (" + _CARLA_SPACE
           + "): a multi-code categorical change counts 2", "sum_j 1[|enc(c)_j - enc(x)_j| > 1e-5]",
           _CF_SCOPES, "mean", "lower", per_cf=_carla("l0"), citation=_CARLA),
    Metric("carla_l1", "L1 (CARLA)", "L1 in CARLA's encoding (" + _CARLA_SPACE + ")",
           "sum_j |enc(c)_j - enc(x)_j|", _CF_SCOPES, "mean", "lower", per_cf=_carla("l1"),
           citation=_CARLA, fmt=".3f"),
    Metric("carla_l2sq", "L2² (CARLA)", "squared L2 in CARLA's encoding, which CARLA reports as "
           "'L2_distance'", "sum_j (enc(c)_j - enc(x)_j)^2", _CF_SCOPES, "mean", "lower",
           per_cf=_carla("l2sq"), citation=_CARLA, fmt=".3f"),
    Metric("carla_linf", "L∞ (CARLA)", "largest single change in CARLA's encoding",
           "max_j |enc(c)_j - enc(x)_j|", _CF_SCOPES, "mean", "lower", per_cf=_carla("linf"),
           citation=_CARLA, fmt=".3f"),
    Metric("cat_mismatch", "cat. changed", "number of categorical features changed",
           "sum_{f in F_cat} 1[c_f != x_f]", _CF_SCOPES, "mean", "lower",
           per_cf=lambda ctx: M.categorical_mismatch(ctx.X, ctx.C, ctx.scorer.cat_)),
    Metric("n_changed", "#changed", "number of features changed (an L0 over features; lower is "
           "sparser)", "sum_f 1[|c_f - x_f| > 1e-6 (max_f - min_f)]", _CF_SCOPES, "mean",
           "lower", per_cf=lambda ctx: M.sparsity(ctx.change)[0],
           table=("valid",), key=True, rank="min", rank_group="quality"),
    Metric("sparsity", "sparsity", "share of features left unchanged (DiCE's and CF-Bench's "
           "sparsity; higher is sparser)", "1 - n_changed / d", _CF_SCOPES, "mean", "higher",
           per_cf=lambda ctx: M.sparsity(ctx.change)[1], citation="Mothilal et al. 2020"),
    Metric("redundancy", "redundant", "changed features that can each be reverted alone with the "
           "CF still classified as the target", "sum_{f changed} 1[f(c with c_f := x_f) = t]",
           _CF_SCOPES, "mean", "lower", per_cf=_redundancy, citation=_CARLA,
           table=("valid",), rank="min", rank_group="quality"),
    Metric("lof_p95", "LOF ≤ p95", "share of CFs whose local outlier factor is at most the 95th "
           "percentile of the training rows' own (each without itself): calibrated, so about "
           "95 % of real rows pass", "1[LOF(enc(c)) <= q_0.95{LOF(x_i) : x_i in X_train}]",
           _SHARE_SCOPES, "share", "higher",
           per_cf=lambda ctx: M.lof_within(ctx.lof, ctx.scorer.lof_threshold_),
           citation="Breunig et al. 2000", table=("valid",), key=True, rank="mean",
           rank_group="quality"),
    Metric("lof_inlier", "LOF inlier", "share of CFs scikit-learn's LocalOutlierFactor "
           "(novelty, 20 neighbours, its default offset 1.5) calls inliers (uncalibrated: "
           "nearly every point passes on small tables)", "1[LOF(enc(c)) <= 1.5]", _SHARE_SCOPES,
           "share", "higher", per_cf=lambda ctx: M.lof_within(ctx.lof, -ctx.scorer.lof_.offset_),
           citation="Breunig et al. 2000; Kanamori et al. 2020"),
    Metric("ynn", "yNN", "share of the CF's 5 nearest rows of the whole data set (training and "
           "test, CARLA's encoding) the classifier assigns to the target class",
           "(1/5) sum_{i in 5NN(enc(c))} 1[f(x_i) = t]", _SHARE_SCOPES, "share", "higher",
           per_cf=lambda ctx: M.y_nn(ctx.carla, ctx.target, ctx.scorer.nn_, ctx.scorer.pool_labels_),
           citation=_CARLA, table=("valid",)),
    Metric("changes_immutable", "immutable changed", "share of CFs that change an immutable feature",
           "exists f not mutable: c_f changed", _CF_SCOPES, "mean", "lower",
           per_cf=_flag("changes_immutable")),
    Metric("against_direction", "against direction",
           "share of CFs that move a feature against its allowed direction",
           "exists f increase-only: c_f < x_f, or decrease-only: c_f > x_f", _CF_SCOPES, "mean",
           "lower", per_cf=_flag("against_direction")),
    Metric("out_of_bounds", "out of bounds", "share of CFs outside a feature's plausible bounds",
           "exists f: c_f < lower_f or c_f > upper_f", _CF_SCOPES, "mean", "lower",
           per_cf=_flag("out_of_bounds")),
    Metric("invalid_value", "invalid value", "share of CFs holding a value the feature cannot "
           "take: not one of a categorical or ordinal feature's codes, or a fraction for an "
           "integer feature", "exists f: c_f not in codes_f, or f integer and c_f not integer",
           _CF_SCOPES, "mean", "lower", per_cf=_flag("invalid_value")),
    Metric("violates_constraints", "violations", "share of CFs with any of the four violations "
           "above", "changes_immutable or against_direction or out_of_bounds or invalid_value",
           _CF_SCOPES, "mean", "lower", per_cf=_violates, table=("valid",)),
    Metric("respects_constraints", "respects constraints", "share of CFs with none of the four "
           "violations", "1 - violates_constraints", _SHARE_SCOPES, "share", "higher",
           per_cf=lambda ctx: ~_violates(ctx), rank="mean", rank_group="quality"),
    Metric("actionable_share", "actionable", "share of all feature changes that fall on "
           "actionable features (pooled over CFs)",
           "sum_CFs #changed actionable / sum_CFs #changed", _CF_SCOPES, "pooled_actionable",
           "higher", table=("valid",)),
    Metric("diversity", "diversity", "mean pairwise distance among one query's returned CFs "
           "(queries with k > 1 and at least 2 CFs)",
           "mean_{i<j} [sum_{F_cont} |c_if - c_jf|/MAD_f + sum_{F_cat} 1[c_if != c_jf]]",
           ("found",), "query_mean", "higher", citation="Mothilal et al. 2020 (DiCE)",
           table=("found",)),
    Metric("count_diversity", "count diversity", "mean share of features that differ between "
           "two returned CFs of a query (k > 1)", "mean_{i<j} (1/d) sum_f 1[c_if != c_jf]",
           ("found",), "query_mean", "higher", citation="Mothilal et al. 2020 (DiCE)"),
    Metric("seconds_median", "s/query", "median seconds per query (batched generators: batch "
           "time / batch size)", "median_q seconds_q", ("all",), "median", None, fmt=".3g",
           table=("all",), key=True),
    Metric("seconds_p95", "s/query p95", "95th-percentile seconds per query",
           "percentile_95 seconds_q", ("all",), "p95", None, fmt=".3g"),
)


def _by_name() -> dict[str, Metric]:
    names = [m.name for m in REGISTRY]
    if len(set(names)) != len(names):
        raise ValueError("metric registry: duplicate names")
    return {m.name: m for m in REGISTRY}


def get(name: str) -> Metric:
    """The metric called ``name``; one clear line naming the valid names otherwise."""
    try:
        return _by_name()[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; valid: {', '.join(_by_name())}") from None


def per_cf_metrics() -> list[Metric]:
    """Metrics computed per CF, in registry order (the columns of ``scores.parquet``)."""
    return [m for m in REGISTRY if m.per_cf is not None]


def in_scope(scope: str) -> list[Metric]:
    """Metrics reported in ``scope``, in registry order."""
    return [m for m in REGISTRY if scope in m.scopes]


def ranked() -> list[Metric]:
    """Ranked metrics, in registry order."""
    return [m for m in REGISTRY if m.rank is not None]


def columns() -> list[tuple[str, Metric]]:
    """The leaderboard's numeric columns: (scope, metric), in registry order."""
    return [(scope, m) for m in REGISTRY for scope in m.table]


def key_columns() -> list[str]:
    """Headers of the narrow terminal table's metric columns."""
    return [m.column_header(m.table[0]) for m in REGISTRY if m.key]
