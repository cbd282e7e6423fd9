"""Promise: scoring never dies on a classifier's exception (docs/guarantees.md).

A user's own pipeline may reject values a CF holds: scikit-learn's ``OneHotEncoder`` with its
default ``handle_unknown="error"`` raises on a category code it never saw. Such a CF is scored
as ``unscorable`` (and invalid), the other CFs keep their scores, and the summary is written.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from cfbench.core.schema import Feature, FeatureSchema
from cfbench.score.summary import decisions, score_records, summarize_frames

SCHEMA = FeatureSchema((Feature("dose"),
                        Feature("site", kind="categorical", categories=(0.0, 1.0, 2.0, 3.0))))


def strict_task() -> SimpleNamespace:
    """A task whose model raises on ``site = 3`` (a valid code the training rows never hold)."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"dose": rng.uniform(0, 10, 80), "site": rng.integers(0, 3, 80).astype(float)})
    y = (X["dose"] > 5).astype(int).to_numpy()
    enc = ColumnTransformer([("site", OneHotEncoder(handle_unknown="error"), ["site"])],
                            remainder="passthrough")
    model = make_pipeline(enc, LogisticRegression()).fit(X, y)
    return SimpleNamespace(schema=SCHEMA, X_train=X.iloc[:60], X_test=X.iloc[60:], model=model,
                           predict_proba=lambda D: model.predict_proba(pd.DataFrame(
                               np.asarray(D, float), columns=SCHEMA.names)))


def record(query_id: int, cfs: list[list[float]], target: int) -> dict:
    return {"method": "m", "variant": "default", "seed": 0, "query_id": query_id, "source": 1 - target,
            "target": target, "direction": f"{1 - target}->{target}", "k": len(cfs), "status": "ok",
            "n_cfs": len(cfs), "seconds": 0.1, "cfs": cfs}


def test_a_cf_the_model_rejects_is_unscorable_and_the_summary_is_written():
    task = strict_task()
    q = int(task.X_test.index[0])
    x = task.X_test.loc[q].to_list()
    good, rejected = [9.5, x[1]], [9.5, 3.0]
    labels, bad = decisions(task, np.array([good, rejected]))
    assert bad.tolist() == [False, True] and labels[1] == -1  # one row rejected, one decided
    cf, qtab = score_records(task, [record(q, [good, rejected], target=1)])
    assert cf["unscorable"].tolist() == [False, True]
    assert cf["validity"].tolist() == [bool(labels[0] == 1), False]
    assert np.isfinite(cf["l1_mad_cat"]).all()  # distances need no model: still scored
    meta = {"task": "t", "task_hash": "h", "data_source": "d", "classifier": {},
            "features": SCHEMA.names}
    found = summarize_frames(cf, qtab, meta)["methods"]["m"]["all"]["found"]
    assert found["unscorable"] == 0.5


def test_a_model_that_rejects_every_row_costs_only_validity():
    task = strict_task()
    task.predict_proba = lambda D: (_ for _ in ()).throw(ValueError("no"))
    labels, bad = decisions(task, np.zeros((3, 2)))
    assert bad.all() and (labels == -1).all()


def test_a_broken_pipe_that_is_not_stdout_is_no_success(monkeypatch, capfd):
    """A worker's or server's pipe breaking used to read as `| head` leaving: exit 0, no summary."""
    from cfbench.cli import app as cli

    def boom(args):  # noqa: ANN001, ANN202
        raise BrokenPipeError("fork server gone")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv: __import__("argparse").Namespace(
        func=boom))
    assert cli.main(["list", "metrics"]) == 1
    assert "closed unexpectedly" in capfd.readouterr().err
