"""The task's fitted pipeline described as a ``ModelView`` (``cfbench.core.model``): its
encoded space read from the ``ColumnTransformer`` that ``build_pipeline`` makes, and the
estimator's weights or trees read from scikit-learn's and XGBoost's fitted attributes.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from cfbench.core.model import (
    FLOAT32_TOLERANCE,
    TOLERANCE,
    FeatureBlock,
    Linear,
    ModelMismatch,
    ModelView,
    Network,
    Tree,
    Trees,
)
from cfbench.core.schema import FeatureSchema
from cfbench.tasks.classifier import is_xgboost, model_kinds

#: encode() may differ from the pipeline's own transform by rounding only
ENCODE_TOLERANCE = 1e-9


def build_view(name: str, model: Any, schema: FeatureSchema, X_train: pd.DataFrame) -> ModelView:
    """The view of a task's classifier ``model`` (named ``name`` in the spec).

    A pipeline of cfbench's own shape (scaler and one-hot encoder, then a known estimator) gets
    its encoded space and the kinds of its estimator; anything else (a user's model) offers
    ``proba`` only.  ``encode`` is checked against the pipeline's transform on ``X_train``.
    """
    if not (isinstance(model, Pipeline) and len(model.steps) == 2):
        return ModelView(name, frozenset({"proba"}))
    blocks = _blocks(model.steps[0][1], schema)
    if blocks is None:
        return ModelView(name, frozenset({"proba"}))
    X = X_train[schema.names]
    view = ModelView(name, model_kinds(model.steps[1][1]), blocks, PipelineSource(model), X)
    want = np.asarray(_dense(model.steps[0][1].transform(X)), float)
    got = view.encode(X)
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    if got.shape != want.shape or not diff <= ENCODE_TOLERANCE:
        raise ModelMismatch(f"encoding of classifier {name!r} does not reproduce its "
                            f"preprocessing (shape {got.shape} vs {want.shape}, difference {diff:.3g})")
    return view


def _dense(Z: Any) -> Any:
    return Z.toarray() if hasattr(Z, "toarray") else Z


def _blocks(prep: Any, schema: FeatureSchema) -> tuple[FeatureBlock, ...] | None:
    """One block per feature from a fitted ``ColumnTransformer`` of a ``StandardScaler`` and a
    ``OneHotEncoder`` (``build_pipeline``'s), or None for any other preprocessing."""
    if not hasattr(prep, "transformers_"):
        return None
    found: dict[str, FeatureBlock] = {}
    col = 0
    for _, tr, cols in prep.transformers_:
        if tr == "drop" or (isinstance(cols, list) and not cols):
            continue
        if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
            return None
        if isinstance(tr, StandardScaler):
            mean = tr.mean_ if tr.with_mean else np.zeros(len(cols))
            scale = tr.scale_ if tr.with_std else np.ones(len(cols))
            for i, c in enumerate(cols):
                found[c] = FeatureBlock(c, schema[c].kind, (col,), float(mean[i]), float(scale[i]))
                col += 1
        elif isinstance(tr, OneHotEncoder) and tr.drop is None:
            for c, cats in zip(cols, tr.categories_, strict=True):
                n = len(cats)
                found[c] = FeatureBlock(c, schema[c].kind, tuple(range(col, col + n)),
                                        categories=tuple(float(v) for v in cats))
                col += n
        else:
            return None
    if set(found) != set(schema.names):
        return None
    return tuple(found[n] for n in schema.names)


class PipelineSource:
    """Reads the estimator of a fitted ``build_pipeline`` pipeline (see ``ModelSource``)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.estimator = pipeline.steps[1][1]
        if [int(c) for c in getattr(self.estimator, "classes_", [])] != [0, 1]:
            raise ModelMismatch("the classifier's classes are not [0, 1]")

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict_proba(X)

    def network(self) -> Network:
        est = self.estimator
        if isinstance(est, LogisticRegression):
            lin = self.linear()
            return Network((lin.weights[:, None],), (np.array([lin.intercept]),), "identity")
        if isinstance(est, MLPClassifier):
            if est.out_activation_ != "logistic":
                raise ModelMismatch(f"MLP output {est.out_activation_!r} is not logistic")
            return Network(tuple(np.asarray(W, float) for W in est.coefs_),
                           tuple(np.asarray(b, float) for b in est.intercepts_), est.activation)
        raise ModelMismatch(f"{type(est).__name__} has no gradient mirror")

    def linear(self) -> Linear:
        est = self.estimator
        if not isinstance(est, LogisticRegression) or est.coef_.shape[0] != 1:
            raise ModelMismatch(f"{type(est).__name__} is not a binary logistic regression")
        return Linear(np.asarray(est.coef_[0], float), float(est.intercept_[0]))

    def trees(self) -> tuple[Trees, float]:
        est = self.estimator
        if isinstance(est, RandomForestClassifier):
            return Trees(tuple(_sk_tree(t.tree_, "proba") for t in est.estimators_), "mean"), TOLERANCE
        if isinstance(est, GradientBoostingClassifier):
            if est.estimators_.shape[1] != 1:
                raise ModelMismatch("gradient boosting with more than one tree per stage")
            factor = 2.0 if est.loss == "exponential" else 1.0  # p = sigmoid(2 F) for exponential
            width = est.n_features_in_
            base = float(est._raw_predict_init(np.zeros((1, width)))[0, 0])
            trees = tuple(_sk_tree(t.tree_, "margin", factor * est.learning_rate)
                          for t in est.estimators_[:, 0])
            return Trees(trees, "sigmoid-sum", factor * base), TOLERANCE
        if is_xgboost(est):
            return _xgb_trees(est), FLOAT32_TOLERANCE
        raise ModelMismatch(f"{type(est).__name__} has no tree mirror")


def _sk_tree(tree: Any, what: str, factor: float = 1.0) -> Tree:
    """A fitted ``sklearn.tree._tree.Tree`` as arrays: class-1 probability or scaled margin at leaves."""
    left = np.asarray(tree.children_left, np.int64)
    right = np.asarray(tree.children_right, np.int64)
    leaf = left < 0
    if what == "proba":
        v = np.asarray(tree.value[:, 0, :], float)
        value = v[:, 1] / v.sum(axis=1)
    else:
        value = factor * np.asarray(tree.value[:, 0, 0], float)
    return Tree(np.where(leaf, -1, np.asarray(tree.feature, np.int64)),
                np.where(leaf, np.nan, np.asarray(tree.threshold, float)),
                np.where(leaf, -1, left), np.where(leaf, -1, right), np.where(leaf, value, np.nan))


def _xgb_trees(est: Any) -> Trees:
    """An ``XGBClassifier``'s trees from its own JSON model (``binary:logistic``).

    XGBoost sends a row left when ``float32(z) < split`` (missing values go the default way; the
    encoded space has none), so the threshold becomes the float32 just below the split.
    """
    booster = est.get_booster()
    doc = json.loads(bytes(booster.save_raw("json")))
    learner = doc["learner"]
    objective = learner["objective"]["name"]
    if objective != "binary:logistic":
        raise ModelMismatch(f"XGBoost objective {objective!r} is not binary:logistic")
    p = float(str(learner["learner_model_param"]["base_score"]).strip("[]"))
    base = float(np.log(p / (1 - p)))
    trees = []
    for t in learner["gradient_booster"]["model"]["trees"]:
        left = np.asarray(t["left_children"], np.int64)
        right = np.asarray(t["right_children"], np.int64)
        cond = np.asarray(t["split_conditions"], np.float32)
        leaf = left < 0
        below = np.nextafter(cond, np.float32(-np.inf)).astype(float)
        trees.append(Tree(np.where(leaf, -1, np.asarray(t["split_indices"], np.int64)),
                          np.where(leaf, np.nan, below), np.where(leaf, -1, left),
                          np.where(leaf, -1, right), np.where(leaf, cond.astype(float), np.nan)))
    return Trees(tuple(trees), "sigmoid-sum", base)
