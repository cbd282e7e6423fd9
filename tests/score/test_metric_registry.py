"""The metric registry is the one home of metric knowledge: a new metric is one entry, and
every consumer (scoring, summary, tables, ranks, plots, schema, ``list metrics``) follows it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from cfbench.core.schema import Feature, FeatureSchema
from cfbench.score import registry as R

SCHEMA = FeatureSchema((Feature("a"), Feature("b", kind="categorical", categories=(0.0, 1.0))))


def test_registry_is_consistent():
    names = [m.name for m in R.REGISTRY]
    assert len(set(names)) == len(names)
    for m in R.REGISTRY:
        assert m.description and m.formula and m.header, m.name
        assert (m.per_cf is None) == (m.aggregation in ("coverage", "valid_coverage", "query_mean",
                                                         "median", "p95", "pooled_actionable"))
        if m.rank:
            assert m.per_cf is not None and m.rank_group in ("validity", "quality")
    assert [m.name for m in R.ranked() if m.rank_group == "validity"] == ["validity"]
    with pytest.raises(KeyError, match="unknown metric 'valid'; valid: coverage, returned, validity"):
        R.get("valid")
    with pytest.raises(ValueError, match="scopes"):
        R.Metric("x", "x", "d", "f", ("everywhere",), "mean", "lower")


def test_committed_schema_is_generated_from_the_registry():
    from pathlib import Path

    from cfbench.report.schema import text

    committed = Path(__file__).parents[2] / "leaderboard" / "schema.json"
    assert committed.read_text() == text(), "run: python -m cfbench.report.schema"


def test_a_new_metric_is_one_entry(monkeypatch):
    """Register ``abs_b`` (|c_b - x_b|) and nothing else: it is scored, summarised in its
    scopes, shown as a column, ranked, plotted, in the schema and in ``list metrics``."""
    from cfbench.report import board as leaderboard
    from cfbench.report import schema as board_schema
    from cfbench.report import svg as plots
    from cfbench.score.ranking import per_query_values, rank_methods
    from cfbench.score.scorer import Scorer
    from cfbench.score.summary import summarize_frames

    extra = R.Metric("abs_b", "|Δb|", "absolute change of b", "|c_b - x_b|", ("valid", "found"),
                     "mean", "lower", per_cf=lambda ctx: np.abs(ctx.C[:, 1] - ctx.X[:, 1]),
                     table=("valid",), rank="min", rank_group="quality")
    monkeypatch.setattr(R, "REGISTRY", (*R.REGISTRY, extra))

    X_train = pd.DataFrame({"a": np.linspace(0, 1, 30), "b": np.tile([0.0, 1.0], 15)})
    scorer = Scorer(SCHEMA).fit(X_train, np.tile([0, 1], 15))
    X = np.array([[0.5, 0.0], [0.5, 0.0]])
    C = np.array([[0.6, 1.0], [0.5, 1.0]])
    cf = scorer.score(X, C, np.array([1, 1]), np.array([1, 0]))
    assert cf["abs_b"].tolist() == [1.0, 1.0]
    cf.insert(0, "qidx", [0, 1])
    q = pd.DataFrame({"qidx": [0, 1], "method_label": "m", "direction": "0->1", "k": 1,
                      "status": "ok", "n_cfs": 1, "seconds": 0.1, "seed": 0, "query_id": [3, 4]})
    meta = {"task": "t", "task_hash": "h", "data_source": "d", "classifier": {},
            "features": ["a", "b"]}
    d = summarize_frames(cf, q, meta)["methods"]["m"]["all"]
    assert d["valid"]["abs_b"] == 1.0 and d["found"]["abs_b"] == 1.0 and "abs_b" not in d["all"]
    assert ("valid", "abs_b", "|Δb|", ".2f") in leaderboard.columns()
    assert "|Δb|" in leaderboard.headers()
    assert "abs_b" in rank_methods(per_query_values(cf, q))["metrics"]
    assert ("abs_b", "|Δb| (valid CFs)") in plots.bar_metrics()
    direction = board_schema.board_schema()["$defs"]["direction"]["properties"]
    assert "abs_b" in direction["valid"]["required"]
    assert "abs_b" in board_schema.board_schema()["properties"]["ci"]["required"]


def test_list_metrics_shows_every_registered_metric(capsys):
    from cfbench.cli.app import main

    assert main(["list", "metrics", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in cards] == [m.name for m in R.REGISTRY]
    assert {"respects_constraints", "invalid_value", "validity"} <= {c["name"] for c in cards}
    assert all(c["formula"] for c in cards)


def test_cards_say_what_and_how():
    card = R.get("l1_mad_cat").card()
    assert card["per"] == "CF" and card["ranked"] and card["better"] == "lower"
    assert "1[c_f != x_f]" in card["formula"]
    assert dataclasses.is_dataclass(R.get("ynn")) and "f(x_i)" in R.get("ynn").formula
