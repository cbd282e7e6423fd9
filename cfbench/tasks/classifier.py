"""The task's classifier: a scaled scikit-learn pipeline built from the spec and cached on disk.

The cache is keyed by a hash of the task spec, the data fingerprint, the seed and the library
versions, so a changed spec, dataset or scikit-learn never reuses a stale model.  Models are
stored with skops, which does not execute code on load: a cached file is used only if its
SHA-256 matches the sidecar written when it was trained *and* every type it contains is on
``ALLOWED_TYPES`` (what our own pipelines produce).  Anything else is discarded with a warning
and the model retrained.  A user's own fitted pipeline is loaded the same way (never a pickle).
An XGBoost pipeline is cached as two files: the fitted preprocessing with skops and the booster
in XGBoost's own JSON model format (``<key>.xgb.json``), both hashed in the sidecar.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import cfbench
from cfbench.core.errors import UserError
from cfbench.core.notices import warn
from cfbench.core.schema import FeatureSchema
from cfbench.tasks.model_digest import xgboost_json
from cfbench.tasks.table import same_value

MODELS = {
    "random-forest": RandomForestClassifier,
    "gradient-boosting": GradientBoostingClassifier,
    "mlp": MLPClassifier,
    "logistic-regression": LogisticRegression,
    "hist-gradient-boosting": HistGradientBoostingClassifier,
}
#: Classifiers from an optional library: name -> (module, class, the extra that installs it).
OPTIONAL_MODELS = {"xgboost": ("xgboost", "XGBClassifier", "dice")}
#: Every ``classifier.model`` a spec may name (besides ``USER_MODEL``).
MODEL_NAMES = (*MODELS, *OPTIONAL_MODELS)
#: What each classifier lets a method use (``cfbench.core.model.KINDS``), known from the spec.
MODEL_KINDS: dict[str, frozenset[str]] = {
    "random-forest": frozenset({"proba", "trees"}),
    "gradient-boosting": frozenset({"proba", "trees"}),
    "mlp": frozenset({"proba", "gradients"}),
    "logistic-regression": frozenset({"proba", "gradients", "linear"}),
    "hist-gradient-boosting": frozenset({"proba"}),
    "xgboost": frozenset({"proba", "trees"}),
}
#: The spec's ``model`` for a user's own fitted pipeline, read from ``classifier.path``.
USER_MODEL = "skops"
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "random-forest": {"n_estimators": 200, "min_samples_leaf": 2, "n_jobs": 1},
    "gradient-boosting": {},
    "mlp": {"hidden_layer_sizes": (64, 32), "max_iter": 800, "early_stopping": True},
    "logistic-regression": {"max_iter": 2000},
    "hist-gradient-boosting": {},
    # one thread: workers and the fork server share the cores; depth 4 keeps trees readable
    "xgboost": {"n_estimators": 200, "max_depth": 4, "learning_rate": 0.1, "n_jobs": 1},
}
#: Types outside skops' default-trusted set that our pipelines (and ordinary users' scikit-learn
#: pipelines) legitimately contain: the tree structures of the forests and boosters, MLP's
#: optimisers, and numpy dtypes (e.g. SimpleImputer's).  Loading none of them runs code; every
#: other type is refused.  Never trust a file blanket-wise.
ALLOWED_TYPES = frozenset({
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
})
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".sav", ".p")


def cache_dir() -> Path:
    """Root of cfbench's on-disk caches: ``$CFBENCH_CACHE`` or ``~/.cache/cfbench``."""
    root = os.environ.get("CFBENCH_CACHE") or os.path.join(Path.home(), ".cache", "cfbench")
    path = Path(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
        writable = os.access(path, os.W_OK | os.X_OK)
    except OSError as exc:
        writable, why = False, exc.strerror or str(exc)
    else:
        why = "not writable"
    if not writable:
        raise UserError(f"cache folder {path} cannot be used ({why}); set CFBENCH_CACHE to a "
                        "writable folder")
    return path


def classifier_kinds(model: str) -> frozenset[str]:
    """The kinds of access a spec's ``classifier.model`` offers (a user's model: ``proba``)."""
    return MODEL_KINDS.get(model, frozenset({"proba"}))


def model_kinds(estimator: Any) -> frozenset[str]:
    """The kinds of access a fitted estimator offers, from its type (as ``MODEL_KINDS``)."""
    for name, cls in MODELS.items():
        if type(estimator) is cls:
            return MODEL_KINDS[name]
    return MODEL_KINDS["xgboost"] if is_xgboost(estimator) else frozenset({"proba"})


def is_xgboost(estimator: Any) -> bool:
    """An XGBoost scikit-learn classifier (checked by name: xgboost need not be installed)."""
    cls = type(estimator)
    return cls.__name__ == "XGBClassifier" and cls.__module__.split(".")[0] == "xgboost"


def estimator_class(model: str) -> type:
    """The estimator class of ``classifier.model``; an optional library that is missing is a
    one-line ``UserError`` naming the extra that installs it."""
    if model in MODELS:
        return MODELS[model]
    module, name, extra = OPTIONAL_MODELS[model]
    if importlib.util.find_spec(module) is None:
        raise UserError(f"classifier.model = {model!r} needs the {module} package: "
                        f"pip install 'cfbench-harness[{extra}]'")
    # an optional library: imported only by the tasks that choose it
    return getattr(importlib.import_module(module), name)


def _estimator_params(model: str, params: dict[str, Any]) -> dict[str, Any]:
    est_params = {**DEFAULT_PARAMS[model], **params}
    if isinstance(est_params.get("hidden_layer_sizes"), list):
        est_params["hidden_layer_sizes"] = tuple(est_params["hidden_layer_sizes"])
    return est_params


def check_params(model: str, params: dict[str, Any], where: str) -> None:
    """Refuse a parameter the estimator does not have or a value of the wrong type or range.

    Checked at spec load through the estimator's own ``get_params``/``set_params`` and its
    declared parameter constraints, so a typo fails in one line before any data is read.
    """
    cls = estimator_class(model)
    valid = sorted(k for k in cls().get_params(deep=False) if k != "random_state")
    for key in params:
        if key == "random_state":
            raise UserError(f"{where}.params.random_state: set classifier.seed instead")
        if key not in valid:
            raise UserError(f"{where}.params: unknown parameter {key!r} for {model} "
                            f"({cls.__name__}); valid: {', '.join(valid)}")
    try:
        est = cls().set_params(**_estimator_params(model, params))
        # scikit-learn's own constraint check (XGBoost inherits the method but not the constraints)
        validate = getattr(est, "_validate_params", None) if model in MODELS else None
        if validate is not None:
            validate()
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{where}.params: {first}") from None


def build_pipeline(model: str, params: dict[str, Any], seed: int, schema: FeatureSchema) -> Pipeline:
    """Scale continuous features, one-hot categorical ones, then the named estimator."""
    estimator = estimator_class(model)(random_state=seed, **_estimator_params(model, params))
    transformers: list[tuple[str, Any, list[str]]] = []
    if schema.continuous:
        transformers.append(("scale", StandardScaler(), schema.continuous))
    if schema.categorical:
        cats = [list(schema[c].categories) for c in schema.categorical]
        if any(not c for c in cats):
            cats = "auto"
        transformers.append(
            ("onehot", OneHotEncoder(categories=cats, handle_unknown="ignore"), schema.categorical)
        )
    if model in OPTIONAL_MODELS:  # dense: XGBoost reads a sparse matrix's zeros as missing
        pre = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0)
    else:
        pre = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("prep", pre), ("model", estimator)])


def cache_key(task_hash: str, data_fingerprint: str, seed: int,
              extra: dict[str, str] | None = None) -> str:
    """The cache entry's name; ``extra`` (e.g. an optional library's version) joins the hashed
    fields only when given, so the keys of the scikit-learn models never change."""
    blob = json.dumps(
        {
            "task": task_hash,
            "data": data_fingerprint,
            "seed": seed,
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "cfbench": cfbench.__version__,
            "format": "skops",
            **(extra or {}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class UntrustedModel(Exception):
    """A model file that is not a skops file, or holds a type outside the allow-list."""


def loads_skops(data: bytes, allowed: Iterable[str] = ALLOWED_TYPES) -> Any:
    """Load skops bytes, trusting only the listed types beyond skops' own safe defaults.

    Raises ``UntrustedModel`` for a pickle, a non-skops file or any type not in ``allowed``;
    nothing in the file is executed before that check.
    """
    # skops loads torch's array-API shim (~1.5 s): imported when a model is read, not with cfbench
    import skops.io as sio

    if data[:1] == b"\x80":
        raise UntrustedModel("it is a pickle")
    if not data.startswith(b"PK"):
        raise UntrustedModel("it is not a skops file (a zip archive)")
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # a truncated or crafted archive
        raise UntrustedModel(f"it is not a readable skops file ({type(exc).__name__})") from None
    allowed = set(allowed)
    bad = [t for t in untrusted if t not in allowed]
    if bad:
        raise UntrustedModel(f"it contains types outside the allow-list: {', '.join(bad)}")
    return sio.loads(data, trusted=list(untrusted))


def dumps_skops(model: Any) -> bytes:
    """The model as skops bytes (the classifier cache's and ``--model-file``'s format)."""
    import skops.io as sio  # slow to import, as above

    return sio.dumps(model)


def key_extra(model: str) -> dict[str, str] | None:
    """What besides the usual fields keys ``model``'s cache entry: XGBoost's version and format."""
    if model not in OPTIONAL_MODELS:
        return None
    module = OPTIONAL_MODELS[model][0]
    return {module: importlib.import_module(module).__version__, "format": "skops+xgboost-json"}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _load_cached(path: Path, sidecar: Path, allowed: Iterable[str]) -> tuple[Any, str] | None:
    """The cached model and its hash, or None (with a one-line warning) if it must not be used."""
    if not path.exists() and not sidecar.exists():
        return None
    try:
        data = path.read_bytes()
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = f"missing or unreadable ({type(exc).__name__})"
    else:
        digest = sha256_bytes(data)
        if digest != recorded:
            why = f"its SHA-256 {digest[:12]} does not match the {str(recorded)[:12]} recorded at training"
        else:
            try:
                return loads_skops(data, allowed), digest
            except UntrustedModel as exc:
                why = str(exc)
            except Exception as exc:
                why = f"it failed to load ({type(exc).__name__})"
    warn(f"discarding cached classifier {path.name}: {why}; retraining")
    path.unlink(missing_ok=True)
    sidecar.unlink(missing_ok=True)
    return None


def fit_cached(
    pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray, key: str, use_cache: bool = True,
    extra_trusted: Iterable[str] = (),
) -> tuple[Pipeline, bool, str]:
    """Fit ``pipeline`` or load the copy cached under ``key``.

    Returns (model, loaded_from_cache, SHA-256 of the model's skops bytes).  Old ``.joblib``
    entries are never read.
    """
    folder = cache_dir() / "classifiers"
    path = folder / f"{key}.skops"
    sidecar = folder / f"{key}.skops.json"
    allowed = ALLOWED_TYPES | set(extra_trusted)
    if is_xgboost(pipeline.steps[-1][1]):
        return _fit_cached_xgboost(pipeline, X, y, path, sidecar, use_cache, allowed)
    if use_cache:
        hit = _load_cached(path, sidecar, allowed)
        if hit is not None:
            return hit[0], True, hit[1]
    pipeline.fit(X, y)
    data = dumps_skops(pipeline)
    digest = sha256_bytes(data)
    if use_cache:
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, data)
        _write_atomic(sidecar, json.dumps({"sha256": digest, "sklearn": sklearn.__version__}).encode())
    return pipeline, False, digest


def _fit_cached_xgboost(pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray, path: Path,
                        sidecar: Path, use_cache: bool, allowed: Iterable[str]
                        ) -> tuple[Pipeline, bool, str]:
    """``fit_cached`` for an XGBoost pipeline: the preprocessing as skops in ``path``, the booster
    as XGBoost JSON next to it (``<key>.xgb.json``); nothing is pickled.  The hash is the SHA-256
    of the skops bytes followed by the JSON bytes, checked against the sidecar before loading."""
    booster_path = path.with_name(path.name.removesuffix(".skops") + ".xgb.json")
    if use_cache:
        hit = _load_cached_xgboost(path, booster_path, sidecar, allowed)
        if hit is not None:
            return hit[0], True, hit[1]
    pipeline.fit(X, y)
    prep = dumps_skops(pipeline.steps[0][1])
    booster = xgboost_json(pipeline.steps[-1][1])
    digest = sha256_bytes(prep + booster)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, prep)
        _write_atomic(booster_path, booster)
        _write_atomic(sidecar, json.dumps({"sha256": digest, "sklearn": sklearn.__version__,
                                           **(key_extra("xgboost") or {})}).encode())
    return pipeline, False, digest


def _load_cached_xgboost(path: Path, booster_path: Path, sidecar: Path,
                         allowed: Iterable[str]) -> tuple[Pipeline, str] | None:
    """The cached XGBoost pipeline and its hash, or None (with a one-line warning)."""
    if not (path.exists() or booster_path.exists() or sidecar.exists()):
        return None
    try:
        prep, booster = path.read_bytes(), booster_path.read_bytes()
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = f"missing or unreadable ({type(exc).__name__})"
    else:
        digest = sha256_bytes(prep + booster)
        if digest != recorded:
            why = f"its SHA-256 {digest[:12]} does not match the {str(recorded)[:12]} recorded at training"
        else:
            try:
                if not isinstance(json.loads(booster), dict):  # XGBoost JSON, never a pickle
                    raise UntrustedModel("the booster is not an XGBoost JSON model")
                estimator = estimator_class("xgboost")()
                estimator.load_model(bytearray(booster))
                return Pipeline([("prep", loads_skops(prep, allowed)), ("model", estimator)]), digest
            except UntrustedModel as exc:
                why = str(exc)
            except Exception as exc:
                why = f"it failed to load ({type(exc).__name__})"
    warn(f"discarding cached classifier {path.name}: {why}; retraining")
    for f in (path, booster_path, sidecar):
        f.unlink(missing_ok=True)
    return None


# --------------------------------------------------------------------------- user's own model


class UserModel:
    """A user's fitted binary classifier presented as cfbench expects: classes 0/1, DataFrames in.

    ``positive`` is the model's class that is the task's class 1 (``None`` when the model was
    fit on 0/1 labels); a model fit on plain arrays receives arrays, so it warns about nothing.
    """

    def __init__(self, model: Any, positive_index: int | None, as_array: bool) -> None:
        self.model = model
        self.positive_index = positive_index
        self.as_array = as_array
        self.classes_ = np.array([0, 1])

    def _x(self, X: Any) -> Any:
        return np.asarray(X, dtype=float) if self.as_array else X

    def predict_proba(self, X: Any) -> np.ndarray:
        p = np.asarray(self.model.predict_proba(self._x(X)), dtype=float)
        if self.positive_index is None:
            return p
        return p[:, [1 - self.positive_index, self.positive_index]]

    def predict(self, X: Any) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] > 0.5).astype(int)


def read_user_model(path: Path, sha256: str | None, trusted: Iterable[str], where: str) -> tuple[Any, str]:
    """Load a user's fitted pipeline from a skops file: (model, SHA-256 of the file).

    Pickles are refused outright: loading one runs whatever code it contains.
    """
    how = "save the fitted pipeline with skops.io.dump(model, 'model.skops')"
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UserError(f"{where}: {path} is a pickle ({path.suffix}); cfbench never loads pickles, "
                        f"which run code when loaded: {how}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{where}: cannot read model file {path} ({exc.strerror or exc})") from None
    digest = sha256_bytes(data)
    if sha256 and digest != sha256.lower():
        raise UserError(f"{where}: {path} has SHA-256 {digest}, not the {sha256} given in classifier.sha256")
    try:
        model = loads_skops(data, ALLOWED_TYPES | set(trusted))
    except UntrustedModel as exc:
        hint = (f"cfbench never loads pickles, which run code when loaded: {how}"
                if "pickle" in str(exc) else
                "if you trust them, list them in classifier.trusted" if "allow-list" in str(exc)
                else how)
        raise UserError(f"{where}: cannot use model file {path}: {exc}; {hint}") from None
    except Exception as exc:
        raise UserError(f"{where}: cannot load model file {path} ({type(exc).__name__}: {exc})") from None
    return model, digest


def adapt_user_model(model: Any, names: list[str], positive: Any, where: str) -> UserModel:
    """Check a user's model against the spec (features in order, binary) and wrap it."""
    if not hasattr(model, "predict_proba"):
        raise UserError(f"{where}: the model ({type(model).__name__}) has no predict_proba; "
                        "cfbench needs a probabilistic classifier")
    fin = getattr(model, "feature_names_in_", None)
    if fin is not None:
        fin = [str(c) for c in fin]
        if fin != names:
            missing = [n for n in names if n not in fin]
            extra = [n for n in fin if n not in names]
            if missing or extra:
                what = "; ".join(p for p in (
                    f"spec features the model lacks: {', '.join(missing)}" if missing else "",
                    f"model columns missing from the spec: {', '.join(extra)}" if extra else "") if p)
            else:
                what = f"same columns in another order: list the [[features]] as {', '.join(fin)}"
            raise UserError(f"{where}: the model was fit on other features than the spec's ({what})")
    else:
        n = getattr(model, "n_features_in_", None)
        if n is not None and int(n) != len(names):
            raise UserError(f"{where}: the model expects {n} features; the spec has {len(names)}")
    classes = [c.item() if hasattr(c, "item") else c for c in getattr(model, "classes_", [])]
    if len(classes) != 2:
        raise UserError(f"{where}: the model has classes {classes}; cfbench needs a binary classifier")
    as_array = fin is None
    matches = [i for i, c in enumerate(classes) if positive is not None and same_value(c, positive)]
    if matches:
        return UserModel(model, matches[0], as_array)
    if [str(c) for c in classes] in (["0", "1"], ["False", "True"]):  # fit on the 0/1 label
        return UserModel(model, None, as_array)
    raise UserError(f"{where}: the model's classes are {classes}; none is the task's positive "
                    f"value {positive!r} (fit the model on the label column's own values, or on "
                    "0/1 with 1 = positive)")

