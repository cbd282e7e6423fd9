"""Tasks: a TOML spec (dataset + classifier + target + feature schema) and its loaded form.

``load_spec`` validates a spec file and names the file, the key and what was expected on any
error.  ``Task.load`` turns a spec into data, a seeded stratified split, a cached classifier and
the seeded query set that every method is run on.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from cfbench.classifier import MODELS, build_pipeline, cache_key, fit_cached
from cfbench.datasets import Dataset
from cfbench.errors import UserError, choices_error
from cfbench.generator import FitContext
from cfbench.schema import FeatureSchema

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOP_KEYS = {"name", "description", "dataset", "split", "classifier", "target", "queries", "features"}


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

    @property
    def hash(self) -> str:
        """SHA-256 of the spec's canonical JSON: identifies the task in provenance and caches."""
        blob = json.dumps(self.raw, sort_keys=True, default=str)
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
    ds = _table(raw, "dataset", path)
    loader = _get(ds, "loader", str, None, f"{path}: dataset")
    if not loader:
        raise UserError(f"{path}: dataset.loader: missing (expected a registered loader name)")
    options = _get(ds, "options", dict, {}, f"{path}: dataset")
    split = _table(raw, "split", path)
    test_size = _get(split, "test_size", (float, int), 0.3, f"{path}: split")
    if not 0 < test_size < 1:
        raise UserError(f"{path}: split.test_size: expected a fraction in (0, 1), got {test_size}")
    clf = _table(raw, "classifier", path)
    model = _get(clf, "model", str, "random-forest", f"{path}: classifier")
    if model not in MODELS:
        raise UserError(
            f"{path}: classifier.model: unknown model {model!r}; valid choices: {', '.join(MODELS)}"
        )
    target_tbl = _table(raw, "target", path)
    target = target_tbl.get("class", "opposite")
    if target != "opposite" and target not in (0, 1):
        raise UserError(f"{path}: target.class: expected \"opposite\", 0 or 1, got {target!r}")
    queries = _table(raw, "queries", path)
    n_per_class = _get(queries, "per_class", int, 50, f"{path}: queries")
    if n_per_class < 1:
        raise UserError(f"{path}: queries.per_class: expected a positive integer, got {n_per_class}")
    feats = raw.get("features")
    if not isinstance(feats, list):
        raise UserError(f"{path}: features: expected one or more [[features]] tables")
    schema = FeatureSchema.from_records(feats, where=f"{path}: features")
    return TaskSpec(
        name=name,
        description=_get(raw, "description", str, "", path),
        loader=loader,
        loader_options=dict(options),
        test_size=float(test_size),
        split_seed=_get(split, "seed", int, 0, f"{path}: split"),
        model=model,
        model_params=dict(_get(clf, "params", dict, {}, f"{path}: classifier")),
        model_seed=_get(clf, "seed", int, 0, f"{path}: classifier"),
        target=target,
        n_per_class=n_per_class,
        query_seed=_get(queries, "seed", int, 0, f"{path}: queries"),
        schema=schema,
        path=path,
        raw=raw,
    )


def load_spec(path: str | Path) -> TaskSpec:
    """Read and validate one spec file (TOML, parsed with the standard safe loader)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read task file ({exc.strerror or exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    return parse_spec(raw, str(path))


def available_specs() -> dict[str, Path]:
    """Task name -> spec path, from every plugin's ``cfbench_task_paths``."""
    from cfbench.plugins import registry

    found: dict[str, Path] = {}
    for p in registry().task_paths:
        files = sorted(p.glob("*.toml")) if p.is_dir() else [p]
        for f in files:
            try:
                name = tomllib.loads(f.read_text(encoding="utf-8")).get("name", f.stem)
            except (OSError, tomllib.TOMLDecodeError):
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
        return load_spec(p)
    raise choices_error("task", name_or_path, specs)


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

    @classmethod
    def load(
        cls,
        spec: TaskSpec,
        dataset_options: Mapping[str, Any] | None = None,
        use_cache: bool = True,
    ) -> Task:
        """Load the data, split it, and fit (or load) the classifier."""
        from cfbench.plugins import registry

        loader = registry().loader(spec.loader)
        options = {**spec.loader_options, **(dataset_options or {})}
        if "data_dir" in (dataset_options or {}):
            import inspect

            params = inspect.signature(loader).parameters
            if "data_dir" not in params:  # loaders that read a folder name the parameter
                raise UserError(
                    f"--data-dir {dataset_options['data_dir']!r}: task {spec.name!r} (loader "
                    f"{spec.loader!r}) reads no data folder; only tasks like ai-readi take one"
                )
        try:
            dataset: Dataset = loader(**options)
        except TypeError as exc:
            raise UserError(f"{spec.path}: dataset.options: {exc}") from None
        missing = [n for n in spec.schema.names if n not in dataset.X.columns]
        if missing:
            raise UserError(
                f"{spec.path}: feature {missing[0]!r} is not a column of dataset {spec.loader!r}; "
                f"columns: {', '.join(map(str, dataset.X.columns))}"
            )
        X = dataset.X[spec.schema.names].astype(float).reset_index(drop=True)
        y = np.asarray(dataset.y, dtype=int)
        if set(np.unique(y)) != {0, 1}:
            raise UserError(f"{spec.path}: dataset {spec.loader!r} must have binary labels 0/1")
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=spec.test_size, random_state=spec.split_seed, stratify=y
        )
        schema = spec.schema.with_data_bounds(X_train)
        pipe = build_pipeline(spec.model, spec.model_params, spec.model_seed, schema)
        key = cache_key(spec.hash, dataset.fingerprint(), spec.model_seed)
        model, cached = fit_cached(pipe, X_train, y_train, key, use_cache=use_cache)
        pred = model.predict(X_test)
        scores = {
            "accuracy": float(accuracy_score(y_test, pred)),
            "f1": float(f1_score(y_test, pred)),
            "n_train": int(len(y_train)),
            "n_test": int(len(y_test)),
        }
        return cls(spec, dataset, schema, X_train, X_test, y_train, y_test, model, scores, cached)

    @property
    def name(self) -> str:
        return self.spec.name

    def retrain(self, X: pd.DataFrame, y: np.ndarray, tag: str) -> Any:
        """A fresh classifier of this task's spec fit on ``(X, y)``, cached under ``tag``."""
        pipe = build_pipeline(self.spec.model, self.spec.model_params, self.spec.model_seed, self.schema)
        fp = hashlib.sha256(pd.util.hash_pandas_object(X, index=True).values.tobytes()
                            + np.asarray(y, np.int64).tobytes()).hexdigest()
        key = cache_key(self.spec.hash, f"{self.dataset.fingerprint()}:{tag}:{fp}", self.spec.model_seed)
        return fit_cached(pipe, X, y, key)[0]

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
        model = self.retrain(X_s, y_s, f"scarce:{scenario}:{fraction}:{seed}")
        pred = model.predict(self.X_test)
        scores = {"accuracy": float(accuracy_score(self.y_test, pred)),
                  "f1": float(f1_score(self.y_test, pred)),
                  "n_train": int(len(y_s)), "n_test": int(len(self.y_test))}
        task = Task(self.spec, self.dataset, self.schema, X_s, self.X_test, y_s, self.y_test,
                    model, scores, False, scarcity=(scenario, fraction, seed))
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

    def fit_context(self, seed: int, params: Mapping[str, Any] | None = None) -> FitContext:
        """What a generator's ``fit`` receives for this task and seed."""
        from cfbench.classifier import cache_dir

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
        )

    def class_names(self) -> dict[int, str]:
        return dict(self.dataset.class_names)

    def provenance(self) -> dict[str, Any]:
        return {
            "task": self.spec.name,
            "task_hash": self.spec.hash,
            "task_path": self.spec.path,
            "data_source": self.dataset.source,
            "data_fingerprint": self.dataset.fingerprint(),
            "scarcity": list(self.scarcity) if self.scarcity else None,
        }
