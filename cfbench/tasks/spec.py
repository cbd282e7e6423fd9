"""Tasks: a TOML spec (dataset + classifier + target + feature schema) and its loaded form.

``load_spec`` validates a spec file and names the file, the key and what was expected on any
error.  ``Task.load`` turns a spec into data, a seeded stratified split, a cached classifier and
the seeded query set that every method is run on.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from cfbench.core.errors import UserError, choices_error
from cfbench.core.generator import FitContext
from cfbench.core.model import ModelView
from cfbench.core.names import check_name
from cfbench.core.plugins import registry
from cfbench.core.safe_load import load_toml
from cfbench.core.schema import FeatureSchema
from cfbench.tasks.catalogue import LOADERS, check_card
from cfbench.tasks.classifier import (
    MODEL_NAMES,
    USER_MODEL,
    adapt_user_model,
    build_pipeline,
    cache_dir,
    cache_key,
    check_params,
    fit_cached,
    key_extra,
    read_user_model,
)
from cfbench.tasks.datasets import Dataset, feature_matrix
from cfbench.tasks.model_digest import model_digest
from cfbench.tasks.model_view import build_view

TOP_KEYS = {"name", "description", "card", "dataset", "split", "classifier", "target", "queries", "features"}
DATASET_KEYS = {"loader", "options"}
CLASSIFIER_KEYS = {"model", "params", "seed", "path", "sha256", "trusted"}
@dataclass(frozen=True)
class TaskSpec:
    """A validated task spec file."""

    name: str
    description: str
    loader: str
    loader_options: dict[str, Any]
    test_size: float
    split_seed: int
    model: str
    model_params: dict[str, Any]
    model_seed: int
    target: str | int
    n_per_class: int
    query_seed: int
    schema: FeatureSchema
    path: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    #: for ``model = "skops"``: the user's model file (relative to the spec), its hash, trusted types
    model_path: str | None = None
    model_sha256: str | None = None
    model_trusted: tuple[str, ...] = ()
    #: the dataset card (source, citation, licence, rows, balance, missing); empty for user tasks
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        """The spec file's folder: relative paths in the spec are relative to it."""
        return Path(self.path).parent

    @property
    def hash(self) -> str:
        """SHA-256 of the spec's canonical JSON: identifies the task in provenance and caches.

        The card is left out: it describes the data (a corrected citation changes no result).
        """
        blob = json.dumps({k: v for k, v in self.raw.items() if k != "card"},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


def _get(table: Mapping[str, Any], key: str, typ: type | tuple[type, ...], default: Any, where: str) -> Any:
    value = table.get(key, default)
    if value is None and default is None:
        return None
    ok = isinstance(value, typ) and not (isinstance(value, bool) and bool not in _as_tuple(typ))
    if not ok:
        names = " or ".join(t.__name__ for t in _as_tuple(typ))
        raise UserError(f"{where}.{key}: expected {names}, got {value!r}")
    return value


SEED_MAX = 2**32 - 1


def _seed(table: Mapping[str, Any], where: str) -> int:
    """A seed key (default 0), checked against the range numpy's generators accept."""
    value = _get(table, "seed", int, 0, where)
    if not 0 <= value <= SEED_MAX:
        raise UserError(f"{where}.seed: expected an integer in 0..{SEED_MAX}, got {value}")
    return value


def _as_tuple(typ: type | tuple[type, ...]) -> tuple[type, ...]:
    return typ if isinstance(typ, tuple) else (typ,)


def _table(raw: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise UserError(f"{where}.{key}: expected a [{key}] table, got {value!r}")
    return value


def parse_spec(raw: dict[str, Any], path: str) -> TaskSpec:
    """Validate the dict read from a spec file; every error names ``path`` and the key."""
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise UserError(
            f"{path}: unknown key {sorted(unknown)[0]!r}; valid keys: {', '.join(sorted(TOP_KEYS))}"
        )
    name = _get(raw, "name", str, None, path)
    if not name:
        raise UserError(f"{path}: missing key 'name' (expected the task's name as a string)")
    check_name(name, f"{path}: name")
    ds = _table(raw, "dataset", path)
    _known_keys(ds, DATASET_KEYS, f"{path}: dataset")
    loader = _get(ds, "loader", str, None, f"{path}: dataset")
    if not loader:
        raise UserError(f"{path}: dataset.loader: missing (expected a registered loader name)")
    options = _get(ds, "options", dict, {}, f"{path}: dataset")
    if isinstance(options.get("seed"), int):  # a loader's seed (e.g. a synthetic release's)
        _seed(options, f"{path}: dataset.options")
    split = _table(raw, "split", path)
    test_size = _get(split, "test_size", (float, int), 0.3, f"{path}: split")
    if not 0 < test_size < 1:
        raise UserError(f"{path}: split.test_size: expected a fraction in (0, 1), got {test_size}")
    clf = _table(raw, "classifier", path)
    _known_keys(clf, CLASSIFIER_KEYS, f"{path}: classifier")
    model = _get(clf, "model", str, "random-forest", f"{path}: classifier")
    if model not in MODEL_NAMES and model != USER_MODEL:
        raise UserError(
            f"{path}: classifier.model: unknown model {model!r}; valid choices: "
            f"{', '.join([*MODEL_NAMES, USER_MODEL])}"
        )
    model_params = dict(_get(clf, "params", dict, {}, f"{path}: classifier"))
    model_path = _get(clf, "path", str, None, f"{path}: classifier")
    model_sha = _get(clf, "sha256", str, None, f"{path}: classifier")
    trusted = _get(clf, "trusted", list, [], f"{path}: classifier")
    if not all(isinstance(t, str) for t in trusted):
        raise UserError(f"{path}: classifier.trusted: expected a list of type names, got {trusted!r}")
    if model == USER_MODEL:
        if not model_path:
            raise UserError(f"{path}: classifier.path: model = \"skops\" needs the path of the "
                            "fitted pipeline's .skops file (relative to the spec file)")
        if model_params:
            raise UserError(f"{path}: classifier.params: a fitted model from a file takes no params")
    else:
        extra = [k for k in ("path", "sha256", "trusted") if k in clf]
        if extra:
            raise UserError(f"{path}: classifier.{extra[0]}: only for model = \"skops\" (a fitted "
                            f"pipeline from a file), not for {model!r}")
        check_params(model, model_params, f"{path}: classifier")
    target_tbl = _table(raw, "target", path)
    target = target_tbl.get("class", "opposite")
    if target != "opposite" and not (type(target) is int and target in (0, 1)):  # true is not 1
        raise UserError(f"{path}: target.class: expected \"opposite\", 0 or 1, got {target!r}")
    queries = _table(raw, "queries", path)
    n_per_class = _get(queries, "per_class", int, 50, f"{path}: queries")
    if n_per_class < 1:
        raise UserError(f"{path}: queries.per_class: expected a positive integer, got {n_per_class}")
    feats = raw.get("features")
    if not isinstance(feats, list):
        raise UserError(f"{path}: features: expected one or more [[features]] tables")
    schema = FeatureSchema.from_records(feats, where=f"{path}: features")
    card = check_card(raw["card"], path) if "card" in raw else {}
    return TaskSpec(
        name=name,
        description=_get(raw, "description", str, "", path),
        loader=loader,
        loader_options=dict(options),
        test_size=float(test_size),
        split_seed=_seed(split, f"{path}: split"),
        model=model,
        model_params=model_params,
        model_seed=_seed(clf, f"{path}: classifier"),
        target=target,
        n_per_class=n_per_class,
        query_seed=_seed(queries, f"{path}: queries"),
        schema=schema,
        path=path,
        raw=raw,
        model_path=model_path,
        model_sha256=model_sha,
        model_trusted=tuple(trusted),
        card=card,
    )


def _known_keys(table: Mapping[str, Any], valid: set[str], where: str) -> None:
    unknown = set(table) - valid
    if unknown:
        raise UserError(
            f"{where}: unknown key {sorted(unknown)[0]!r}; valid keys: {', '.join(sorted(valid))}"
        )


def load_spec(path: str | Path) -> TaskSpec:
    """Read and validate one spec file (TOML, parsed with the standard safe loader)."""
    path = Path(path)
    return parse_spec(read_raw(path), str(path))


def read_raw(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A spec file's tables, with those of the spec it ``extends`` underneath.

    ``extends = "heart.toml"`` (relative to the file) takes every table of that spec; each table
    given here replaces the base's keys one by one (``[classifier] model = "mlp"`` keeps the
    base's seed), and ``[[features]]``, when given, replaces the whole list.  The merged tables
    are what is validated and hashed, so a derived task is a task of its own.
    """
    raw = load_toml(path, "task file")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base:
        raise UserError(f"{path}: extends: expected the path of the spec to extend, got {base!r}")
    target = (path.parent / base).resolve()
    if target in seen or target == path.resolve():
        raise UserError(f"{path}: extends: {base!r} extends itself (a cycle of specs)")
    if not target.is_file():
        raise UserError(f"{path}: extends: no spec file {target}")
    merged = read_raw(target, (*seen, path.resolve()))
    for key, value in raw.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def available_specs() -> dict[str, Path]:
    """Task name -> spec path, from every plugin's ``cfbench_task_paths``."""

    found: dict[str, Path] = {}
    for p in registry().task_paths:
        files = sorted(p.glob("*.toml")) if p.is_dir() else [p]
        for f in files:
            try:
                name = load_toml(f, "task file").get("name", f.stem)
            except UserError:
                name = f.stem  # still listed; loading it reports the problem
            found.setdefault(str(name), f)
    return found


def resolve_spec(name_or_path: str) -> TaskSpec:
    """A registered task name or the path of a spec file."""
    specs = available_specs()
    if name_or_path in specs:
        return load_spec(specs[name_or_path])
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        spec = load_spec(p)
        check_not_reserved(spec.name, p, f"{p}: name", specs)
        return spec
    raise choices_error("task", name_or_path, specs)


def check_not_reserved(name: str, path: Path, where: str,
                       specs: Mapping[str, Path] | None = None) -> None:
    """Refuse a user spec at ``path`` that takes a registered task's name (``heart`` ...):
    the two would share caches, run folders and leaderboard files."""
    specs = available_specs() if specs is None else specs
    own = specs.get(name)
    if own is None:
        return
    try:
        if path.exists() and path.samefile(own):
            return  # the registered spec itself, given by its path
    except OSError:
        pass
    raise UserError(f"{where} {name!r} is the name of the registered task ({own}); valid: a "
                    "name no registered task has (see `cfbench list tasks`)")


@dataclass
class Task:
    """A spec made concrete: data, split, fitted classifier and its test scores."""

    spec: TaskSpec
    dataset: Dataset
    schema: FeatureSchema
    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: np.ndarray
    y_test: np.ndarray
    model: Any
    scores: dict[str, float]
    model_from_cache: bool = False
    scarcity: tuple[str, float, int] | None = None
    #: the repetition whose stratified train/test split this is (``None``: the spec's own split)
    split: int | None = None
    #: the fitted classifier's identity: ``model_digest`` of its state for a built-in model (the
    #: same for the same fit on every machine), the SHA-256 of the file for the user's model
    model_sha256: str = ""
    _view: ModelView | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def load(
        cls,
        spec: TaskSpec,
        dataset_options: Mapping[str, Any] | None = None,
        use_cache: bool = True,
    ) -> Task:
        """Load the data, check it, split it, and fit (or load) the classifier."""


        loader = registry().loader(spec.loader)
        options = {**spec.loader_options, **(dataset_options or {})}
        try:
            params = inspect.signature(loader).parameters
        except (TypeError, ValueError):  # a builtin or C callable: nothing to inspect
            params = {}
        if "data_dir" in (dataset_options or {}):
            if "data_dir" not in params:  # loaders that read a folder name the parameter
                raise UserError(
                    f"--data-dir {dataset_options['data_dir']!r}: task {spec.name!r} (loader "
                    f"{spec.loader!r}) reads no data folder; only tasks like ai-readi take one"
                )
        if "spec_dir" in params:  # loaders that read a file named relative to the spec
            options.setdefault("spec_dir", str(spec.folder))
        try:
            dataset: Dataset = loader(**options)
        except TypeError as exc:
            raise UserError(f"{spec.path}: dataset.options: {exc}") from None
        where = str(dataset.notes.get("path") or f"{spec.path}: dataset {spec.loader!r}")
        missing = [n for n in spec.schema.names if n not in dataset.X.columns]
        if missing:
            raise UserError(
                f"{spec.path}: feature {missing[0]!r} is not a column of dataset {spec.loader!r}"
                + (f" ({where})" if "path" in dataset.notes else "")
                + f"; columns: {', '.join(map(str, dataset.X.columns))}"
            )
        hint = ("; set missing = \"drop\" or \"impute-median\" in [dataset.options]"
                if spec.loader in ("table", *LOADERS) else "")
        X, y = feature_matrix(dataset, spec.schema, where, hint)
        y = np.asarray(y, dtype=int)
        classes = set(np.unique(y).tolist())
        if classes != {0, 1}:
            if classes <= {0, 1}:
                raise UserError(f"{where}: only class {classes.pop()} is left ({len(y)} rows); "
                                "a classifier needs both classes")
            raise UserError(f"{spec.path}: dataset {spec.loader!r} must have binary labels 0/1")
        _check_split(spec, y, where)
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=spec.test_size, random_state=spec.split_seed, stratify=y
        )
        schema = spec.schema.with_data_bounds(X_train)
        if spec.model == USER_MODEL:
            raw_model, digest = read_user_model(
                spec.folder / spec.model_path, spec.model_sha256, spec.model_trusted,
                f"{spec.path}: classifier")
            model: Any = adapt_user_model(raw_model, schema.names, dataset.notes.get("positive"),
                                          f"{spec.path}: classifier")
            cached = False
        else:
            pipe = build_pipeline(spec.model, spec.model_params, spec.model_seed, schema)
            key = cache_key(spec.hash, dataset.fingerprint(), spec.model_seed,
                            key_extra(spec.model))
            model, cached, _ = _fit(spec, pipe, X_train, y_train, key, use_cache)
            digest = model_digest(model)  # the same for the same fit on every machine
        try:
            pred = model.predict(X_test)
        except Exception as exc:
            raise UserError(f"{spec.path}: classifier {spec.model!r} failed to predict the test "
                            f"split ({type(exc).__name__}: {_first_line(exc)})") from None
        scores = {
            "accuracy": float(accuracy_score(y_test, pred)),
            "f1": float(f1_score(y_test, pred)),
            "n_train": int(len(y_train)),
            "n_test": int(len(y_test)),
        }
        return cls(spec, dataset, schema, X_train, X_test, y_train, y_test, model, scores, cached,
                   model_sha256=digest)

    @property
    def name(self) -> str:
        return self.spec.name

    def retrain(self, X: pd.DataFrame, y: np.ndarray, tag: str) -> Any:
        """A fresh classifier of this task's spec fit on ``(X, y)``, cached under ``tag``."""
        return self._retrain(X, y, tag)[0]

    def _retrain(self, X: pd.DataFrame, y: np.ndarray, tag: str) -> tuple[Any, str]:
        if self.spec.model == USER_MODEL:  # the user's pipeline, unfitted, with its own settings

            pipe = clone(self.model.model)
        else:
            pipe = build_pipeline(self.spec.model, self.spec.model_params, self.spec.model_seed,
                                  self.schema)
        fp = hashlib.sha256(pd.util.hash_pandas_object(X, index=True).values.tobytes()
                            + np.asarray(y, np.int64).tobytes()).hexdigest()
        data = f"{self.dataset.fingerprint()}:{tag}:{fp}:{self.model_sha256}"
        key = cache_key(self.spec.hash, data, self.spec.model_seed, key_extra(self.spec.model))
        model, _, _ = _fit(self.spec, pipe, X, y, key, True)
        return model, model_digest(model)

    def resplit(self, repetition: int) -> Task:
        """The task on repetition ``repetition``'s own stratified train/test split (same test
        share, classifier refit on the new training rows), for studies whose variance must
        include the choice of test set.  Feature bounds come from the new training rows."""
        if isinstance(repetition, bool) or not isinstance(repetition, (int, np.integer)) or repetition < 0:
            raise UserError(f"split repetition must be an integer >= 0, got {repetition!r}")
        X = pd.concat([self.X_train, self.X_test])
        y = np.concatenate([self.y_train, self.y_test])
        order = np.argsort(X.index.to_numpy(), kind="stable")  # the data's own row order
        X, y = X.iloc[order], y[order]
        state = int(np.random.SeedSequence([self.spec.split_seed, int(repetition), 1]).generate_state(1)[0])
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=len(self.y_test),
                                                  random_state=state, stratify=y)
        schema = self.spec.schema.with_data_bounds(X_tr)
        model, digest = self._retrain(X_tr, y_tr, f"split:{int(repetition)}")
        pred = model.predict(X_te[schema.names])
        scores = {"accuracy": float(accuracy_score(y_te, pred)), "f1": float(f1_score(y_te, pred)),
                  "n_train": int(len(y_tr)), "n_test": int(len(y_te))}
        return Task(self.spec, self.dataset, schema, X_tr, X_te, np.asarray(y_tr, int),
                    np.asarray(y_te, int), model, scores, False, split=int(repetition),
                    model_sha256=digest)

    def scarce(self, scenario: str, fraction: float, seed: int) -> tuple[Task, pd.DataFrame, pd.Series]:
        """The task with a share of its training labels removed, and what was removed.

        Scenario ``A`` drops ``fraction`` of the positive training rows, ``B`` of the negative
        ones, ``C`` of each.  Rows are drawn with ``seed``; the classifier is refit on what is
        left; the test split is untouched.  Returns (scarce task, removed rows, removed labels).
        """
        classes = {"A": (1,), "B": (0,), "C": (0, 1)}
        if scenario not in classes:
            raise UserError(f"unknown scarcity scenario {scenario!r}; valid choices: A, B, C")
        if not 0 < fraction < 1:
            raise UserError(f"scarcity fraction must be in (0, 1), got {fraction}")
        rng = np.random.default_rng([seed, ord(scenario)])
        drop: list[int] = []
        for c in classes[scenario]:
            idx = np.flatnonzero(self.y_train == c)
            drop.extend(rng.choice(idx, size=int(round(fraction * len(idx))), replace=False))
        mask = np.ones(len(self.y_train), bool)
        mask[drop] = False
        X_s, y_s = self.X_train[mask], self.y_train[mask]
        model, digest = self._retrain(X_s, y_s, f"scarce:{scenario}:{fraction}:{seed}")
        pred = model.predict(self.X_test)
        scores = {"accuracy": float(accuracy_score(self.y_test, pred)),
                  "f1": float(f1_score(self.y_test, pred)),
                  "n_train": int(len(y_s)), "n_test": int(len(self.y_test))}
        task = Task(self.spec, self.dataset, self.schema, X_s, self.X_test, y_s, self.y_test,
                    model, scores, False, scarcity=(scenario, fraction, seed), split=self.split,
                    model_sha256=digest)
        removed = self.X_train[~mask]
        return task, removed, pd.Series(self.y_train[~mask], index=removed.index)

    def _features(self, X: pd.DataFrame) -> pd.DataFrame:
        names = self.schema.names
        return X if list(X.columns) == names else X[names]  # no copy when already in order

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(self._features(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict(self._features(X)), dtype=int)

    def queries(self, n_per_class: int | None = None, seed: int | None = None) -> pd.DataFrame:
        """Seeded sample of test rows per *predicted* class, with the target class of each.

        Columns: the features, plus ``query_id`` (test-row index), ``source`` (predicted class)
        and ``target``.  With a fixed target class, rows already predicted as it are skipped.
        """
        n = self.spec.n_per_class if n_per_class is None else n_per_class
        rng = np.random.default_rng(self.spec.query_seed if seed is None else seed)
        pred = self.predict(self.X_test)
        parts = []
        for cls_ in (0, 1):
            target = 1 - cls_ if self.spec.target == "opposite" else int(self.spec.target)
            if target == cls_:
                continue
            idx = np.flatnonzero(pred == cls_)
            take = np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))
            part = self.X_test.iloc[take].copy()
            part.insert(0, "target", target)
            part.insert(0, "source", cls_)
            part.insert(0, "query_id", self.X_test.index[take].astype(int))
            parts.append(part)
        return pd.concat(parts).reset_index(drop=True)

    def model_view(self) -> ModelView:
        """The classifier as methods may use it (kinds, encoded space, mirrors), built once."""
        if self._view is None:
            self._view = build_view(self.spec.model, self.model, self.schema, self.X_train)
        return self._view

    def fit_context(self, seed: int, params: Mapping[str, Any] | None = None) -> FitContext:
        """What a generator's ``fit`` receives for this task and seed."""

        return FitContext(
            X_train=self.X_train.copy(),
            y_train=self.y_train.copy(),
            predict_proba=self.predict_proba,
            schema=self.schema,
            seed=seed,
            task_name=self.name,
            class_names=self.class_names(),
            cache_dir=cache_dir(),
            task_description=self.spec.description,
            params=dict(params or {}),
            model=self.model_view(),
        )

    def class_names(self) -> dict[int, str]:
        return dict(self.dataset.class_names)

    def provenance(self) -> dict[str, Any]:
        extra = {} if self.split is None else {"split": self.split}
        return {
            "task": self.spec.name,
            "task_hash": self.spec.hash,
            "task_path": self.spec.path,
            "data_source": self.dataset.source,
            "data_fingerprint": self.dataset.fingerprint(),
            "classifier": self.spec.model,
            "model_sha256": self.model_sha256,
            "scarcity": list(self.scarcity) if self.scarcity else None,
            **extra,
        }


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _fit(spec: TaskSpec, pipe: Any, X: pd.DataFrame, y: np.ndarray, key: str,
         use_cache: bool) -> tuple[Any, bool, str]:
    """``fit_cached`` with a fit failure (e.g. incompatible params) as one line."""
    try:
        return fit_cached(pipe, X, y, key, use_cache=use_cache, extra_trusted=spec.model_trusted)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{spec.path}: classifier {spec.model!r} failed to fit "
                        f"({type(exc).__name__}: {_first_line(exc)})") from None


def _check_split(spec: TaskSpec, y: np.ndarray, where: str) -> None:
    """Each side of the stratified split needs a row of each class; say which setting breaks it."""
    n = len(y)
    n_test = math.ceil(spec.test_size * n)
    n_train = n - n_test
    smallest = int(min(np.sum(y == 0), np.sum(y == 1)))
    if smallest < 2:
        raise UserError(f"{where}: class {int(np.sum(y == 1) < np.sum(y == 0))} has {smallest} row; "
                        "a stratified split needs at least 2 rows of each class")
    if n_test < 2 or n_train < 2:
        side, k = ("test", n_test) if n_test < 2 else ("training", n_train)
        lo, hi = 2 / n, 1 - 2 / n
        raise UserError(
            f"{spec.path}: split.test_size = {spec.test_size:g} leaves {k} {side} row(s) of {n}; "
            f"each split needs a row of each class (for {n} rows use test_size between "
            f"{lo:.3g} and {hi:.3g})"
        )
