"""Leaderboards: ranks, the board files, the CI smoke check (fails on a changed metric), the schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cfbench.score.ranking import bootstrap_ci, nemenyi_cd, rank_methods
from cfbench.smoke import compare

SCHEMA = Path(__file__).parents[2] / "leaderboard" / "schema.json"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cfbench.cli", *args], capture_output=True,
                          text=True, timeout=900)


def test_ranks_by_hand():
    # 3 queries x 3 methods; validity higher is better, a failure is ranked last
    rows = []
    for qid, (a, b, c) in enumerate([(1, 0, 0), (1, 1, 0), (1, 0, 1)]):
        for m, v in zip("abc", (a, b, c), strict=True):
            rows.append({"method_label": m, "seed": 0, "query_id": qid, "validity": float(v),
                         "l1_mad_cat": float(qid + 1) if m == "b" else np.inf,
                         "n_changed": 1.0, "redundancy": 0.0, "lof_p95": 1.0,
                         "respects_constraints": 1.0})
    r = rank_methods(pd.DataFrame(rows))
    # validity ranks per query: (1, 2.5, 2.5), (1.5, 1.5, 3), (1.5, 3, 1.5)
    assert r["metrics"]["validity"]["mean_rank"] == pytest.approx(
        {"a": 4 / 3, "b": 7 / 3, "c": 7 / 3})
    assert r["metrics"]["l1_mad_cat"]["mean_rank"]["b"] == 1.0
    assert r["metrics"]["n_changed"]["mean_rank"] == {"a": 2.0, "b": 2.0, "c": 2.0}
    assert np.isnan(r["metrics"]["n_changed"]["friedman"]["p_value"])  # all tied
    # q_0.05 for k = 3 is 2.343 (Demšar 2006, Table 5): CD = 2.343 * sqrt(3*4 / (6*3))
    assert r["metrics"]["validity"]["nemenyi_cd"] == pytest.approx(2.343 * np.sqrt(12 / 18), abs=1e-3)
    assert nemenyi_cd(1, 10) != nemenyi_cd(1, 10)  # nan for one method
    # overall: validity once, then the mean of the five quality ranks (L1 b 1, a and c 2.5;
    # the other four all tied at 2): validity weighs one half, not one sixth per copy of it
    quality = {"a": (2.5 + 8) / 5, "b": (1 + 8) / 5, "c": (2.5 + 8) / 5}
    validity = {"a": 4 / 3, "b": 7 / 3, "c": 7 / 3}
    assert r["overall"] == pytest.approx({m: (validity[m] + quality[m]) / 2 for m in "abc"})
    assert {x["group"] for x in r["metrics"].values()} == {"validity", "quality"}


def test_bootstrap_ci_brackets_the_mean():
    mean, lo, hi = bootstrap_ci(np.r_[np.zeros(50), np.ones(50)])
    assert mean == 0.5 and lo < 0.5 < hi and hi - lo < 0.3


def test_compare_reports_changed_missing_and_new_numbers():
    old = {"methods": {"m": {"all": {"all": {"valid": 0.80, "coverage": 1.0}}}},
           "augmentation": [{"scenario": "A", "method": "m", "cfs": "all", "f1": 0.5}]}
    new = json.loads(json.dumps(old))
    assert compare(new, old, 0.01, 0.05) == []
    new["methods"]["m"]["all"]["all"]["valid"] = 0.805  # inside 0.01 + 0.05 * 0.8
    assert compare(new, old, 0.01, 0.05) == []
    new["methods"]["m"]["all"]["all"]["valid"] = 0.70
    new["augmentation"][0]["f1"] = 0.9
    del new["methods"]["m"]["all"]["all"]["coverage"]
    diffs = compare(new, old, 0.01, 0.05)
    assert any(d.startswith("~ methods/m/all/all/valid: committed 0.8, now 0.7") for d in diffs)
    assert any("augmentation/A|m|all/f1" in d for d in diffs)
    assert any(d.startswith("- methods/m/all/all/coverage") for d in diffs)


@pytest.mark.slow
def test_update_check_and_validate_end_to_end(tmp_path):
    board_dir = tmp_path / "leaderboard"
    board_dir.mkdir()
    (board_dir / "schema.json").write_text(SCHEMA.read_text())
    (board_dir / "smoke.suite.toml").write_text(
        '[check]\natol = 0.01\nrtol = 0.05\n[[runs]]\ntask = "breast-cancer"\n'
        'methods = "nearest-neighbour"\nn_queries = 3\nseeds = [0]\n'
        'augment = { max_per_class = 5, seeds = [0, 1] }\n')
    run = tmp_path / "run"
    assert cli("run", "--task", "breast-cancer", "--methods", "nearest-neighbour", "--n-queries", "4",
               "--k", "2", "--out", str(run), "--quiet").returncode == 0
    aug = tmp_path / "aug"
    assert cli("augment", "--task", "breast-cancer", "--methods", "nearest-neighbour", "--seeds", "0,1",
               "--max-per-class", "5", "--curve", "0.75", "--out", str(aug), "--quiet").returncode == 0
    up = cli("leaderboard", str(run), "--update", "--augment", str(aug), "--dir", str(board_dir))
    assert up.returncode == 0, up.stderr
    md = (board_dir / "breast-cancer.md").read_text()
    assert "## Direction 0->1" in md and "## Direction 1->0" in md and "| A | smote | reference |" in md
    assert "![scarcity curve](breast-cancer-scarcity.svg)" in md
    assert (board_dir / "breast-cancer-scarcity.svg").read_text().lstrip().startswith("<?xml")
    assert (board_dir / "breast-cancer-metrics.svg").read_text().lstrip().startswith("<?xml")

    v = cli("leaderboard", "--validate", "--dir", str(board_dir))
    assert v.returncode == 0, v.stdout + v.stderr
    board = json.loads((board_dir / "breast-cancer.json").read_text())
    del board["ranks"]
    (board_dir / "breast-cancer.json").write_text(json.dumps(board))
    v = cli("leaderboard", "--validate", "--dir", str(board_dir))
    assert v.returncode == 1 and "'ranks' is a required property" in v.stdout

    assert cli("leaderboard", "--check", "--write", "--dir", str(board_dir)).returncode == 0
    ok = cli("leaderboard", "--check", "--dir", str(board_dir))
    assert ok.returncode == 0, ok.stdout
    smoke = board_dir / "smoke" / "breast-cancer.json"
    doc = json.loads(smoke.read_text())
    doc["methods"]["nearest-neighbour"]["all"]["valid"]["heom"] *= 1.5  # a deliberate change
    smoke.write_text(json.dumps(doc))
    bad = cli("leaderboard", "--check", "--dir", str(board_dir))
    assert bad.returncode == 1
    assert "~ methods/nearest-neighbour/all/valid/heom: committed" in bad.stdout


def test_invalid_cfs_do_not_win_proximity_or_sparsity_ranks():
    """A method that returns the query unchanged (distance 0, never valid) does not rank first on
    proximity: it gets the neutral quality rank, and ranks last overall through validity."""
    import pandas as pd

    from cfbench.score.ranking import per_query_values, rank_methods

    q = pd.DataFrame({"qidx": [0, 1, 2, 3], "method_label": ["copy", "copy", "real", "real"],
                      "seed": 0, "query_id": [7, 8, 7, 8], "k": 1})
    cf = pd.DataFrame({"qidx": [0, 1, 2, 3], "validity": [False, False, True, True],
                       "respects_constraints": True, "lof_p95": True, "redundancy": 0.0,
                       "l1_mad_cat": [0.0, 0.0, 0.4, 0.6], "n_changed": [0, 0, 2, 3]})
    vals = per_query_values(cf, q).set_index("method_label")
    assert (vals.loc["copy", "l1_mad_cat"] == float("inf")).all()
    assert (vals.loc["copy", "lof_p95"] == 0).all() and (vals.loc["real", "l1_mad_cat"] > 0).all()
    ranks = rank_methods(per_query_values(cf, q))
    assert ranks["metrics"]["l1_mad_cat"]["mean_rank"] == {"copy": 1.5, "real": 1.5}
    # 1.00 / 0 for every valid CF of every method: constant, so not ranked, and the board says so
    assert set(ranks["unranked"]) == {"lof_p95", "respects_constraints", "redundancy"}
    assert ranks["unranked"]["lof_p95"].startswith("not ranked: 1 for every valid CF")
    assert ranks["metrics"]["validity"]["mean_rank"] == {"copy": 2.0, "real": 1.0}
    assert ranks["overall"] == {"copy": 1.75, "real": 1.25}


def test_conditional_ranks_count_validity_once():
    """Quality ranks among the methods with a valid CF, spread over 1..m; the others (and a
    lone valid one) neutral, so each block averages (m + 1)/2 whoever found a valid CF."""
    from cfbench.score.ranking import conditional_ranks

    data = np.array([[0.1, 0.2, 0.3, np.inf],   # a, b, c valid; d not
                     [0.5, np.inf, np.inf, np.inf],  # only a valid
                     [0.2, 0.2, np.inf, 0.1]])   # a, b tied; d best
    has = np.isfinite(data)
    r = conditional_ranks(data, has, higher=False)
    assert r[0].tolist() == [1.0, 2.5, 4.0, 2.5]
    assert r[1].tolist() == [2.5] * 4
    assert r[2].tolist() == pytest.approx([3.25, 3.25, 2.5, 1.0])  # ranks 2.5, 2.5, 1 of 3
    assert r.mean(axis=1).tolist() == pytest.approx([2.5] * 3)


def test_quality_ranks_are_over_valid_cfs_and_cis_over_queries_with_one():
    """LOF and constraints are shares of the query's valid CFs (not of its k slots), and their
    bootstrap CIs leave out the queries without a valid CF (whose value is the failure value)."""
    from cfbench.score.ranking import ci_values, per_query_values

    q = pd.DataFrame({"qidx": [0, 1], "method_label": "m", "seed": 0, "query_id": [1, 2], "k": 2})
    cf = pd.DataFrame({"qidx": [0, 0, 1], "validity": [True, False, False],
                       "respects_constraints": [True, False, True], "lof_p95": [True, True, True],
                       "l1_mad_cat": [0.5, 0.1, 0.2], "n_changed": [2, 1, 1],
                       "redundancy": [1.0, 0.0, 0.0]})
    vals = per_query_values(cf, q)
    assert vals["validity"].tolist() == [0.5, 0.0]  # 1 valid of 2 slots; none
    assert vals["lof_p95"].tolist() == [1.0, 0.0]  # share of the 1 valid CF; failure 0
    assert vals["respects_constraints"].tolist() == [1.0, 0.0]
    assert vals["l1_mad_cat"].tolist() == [0.5, np.inf]  # the invalid 0.1 does not count
    assert ci_values(vals, "lof_p95").tolist() == [1.0]
    assert ci_values(vals, "validity").tolist() == [0.5, 0.0]

