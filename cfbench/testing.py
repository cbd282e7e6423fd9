"""Conformance checks for generator plugins, in the spirit of scikit-learn's ``check_estimator``.

Each property of the generator contract is one named check function taking a ``GeneratorRun``
(one variant of a method, run on a small real task in this process) and raising an
``AssertionError`` that names the check and every violation it found:

* ``check_declared_params``: the declaration is well formed and the factory accepts it;
* ``check_unknown_params_refused``: an undeclared key is refused by name;
* ``check_result_count``: one result per query, at most ``k`` CFs (one unless ``multiple``);
* ``check_valid_output``: every result is a record the runner accepts;
* ``check_finds_cfs``: some query is answered with CFs;
* ``check_category_codes``: categorical and ordinal features only at their schema's codes;
* ``check_integers``: integer features only at integers;
* ``check_immutables``, ``check_bounds``, ``check_directions``: the schema's constraints, for a
  method that declares it honours them (``Capabilities.constraints``);
* ``check_determinism``: the same CFs twice under the same seed;
* ``check_param_changes``: a given parameter changes the CFs.

Constraints are judged exactly as the metrics count violations (``cfbench.score.metrics``), so a
method that passes is not charged with one on the board for the same rows.  ``heart``, the
default task, has categoricals, an ordinal, integer features and immutables but declares no
direction; whenever the task declares none, the checks declare one (``check_task``) so that
``check_directions`` has something to check.

``check_generator(spec)`` runs them all and raises one ``AssertionError`` listing every failed
check; ``generator_checks`` and ``parametrize_with_checks`` give each check its own test, as
scikit-learn's ``parametrize_with_checks`` does.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from cfbench.core.errors import UserError
from cfbench.core.generator import GeneratorSpec, validate_params
from cfbench.core.schema import FeatureSchema
from cfbench.execution.worker import normalise_result, seed_everything
from cfbench.score.metrics import CODE_TOL, changed
from cfbench.tasks.spec import Task, resolve_spec

UNKNOWN_PARAM = "__cfbench_no_such_parameter__"
#: the direction ``check_task`` declares on a task that declares none
CHECK_DIRECTION = "decrease-only"


def refuses_unknown(exc: BaseException, key: str) -> bool:
    """Whether ``exc`` is a factory's refusal of the keyword ``key``: a ``UserError`` naming it,
    or Python's ``TypeError: ... got an unexpected keyword argument 'key'``.  Anything else (an
    ``ImportError`` of a missing dependency, a ``TypeError`` from inside the constructor) is
    not a refusal: the factory may still swallow the key once it gets that far."""
    if type(exc) is TypeError:
        return f"unexpected keyword argument {key!r}" in str(exc)
    return isinstance(exc, UserError) and repr(key) in str(exc)


@functools.lru_cache(maxsize=1)
def _heart() -> Task:
    """The default task, loaded once per process (every run shares it read-only)."""
    return Task.load(resolve_spec("heart"))


def check_task(task: Any = None) -> Any:
    """The task the checks run on: ``task`` (``heart`` by default), as it is when it declares a
    direction; otherwise a copy whose first mutable numeric feature is declared decrease-only
    (on ``heart``: ``trestbps``, the resting blood pressure), so that the directions check has
    something to check.  The data, the split and the classifier are the same."""
    task = _heart() if task is None else task
    schema: FeatureSchema = task.schema
    numeric = [f.name for f in schema if f.mutable and f.kind == "numeric"]
    if schema.directions().any() or not numeric:
        return task
    out = copy.copy(task)
    out.schema = FeatureSchema(tuple(
        dataclasses.replace(f, direction=CHECK_DIRECTION) if f.name == numeric[0] else f
        for f in schema))
    return out


@dataclasses.dataclass
class GeneratorRun:
    """One variant of a method as the checks see it: how to build it, where to run it, and its
    run on the check task, made on first use and shared by every check.

    ``params`` are passed to every build (a small model for speed); ``task`` defaults to
    ``heart`` (see ``check_task``); ``n_queries`` per source class; ``k`` CFs asked per query;
    ``budget`` CPU seconds per query.  ``deterministic``, ``require_found`` and ``changes`` say
    which of the optional checks apply (``applies``).
    """

    spec: GeneratorSpec
    variant: str | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    task: Any = None
    n_queries: int = 1
    k: int = 2
    seed: int = 0
    budget: float = 30.0
    deterministic: bool = True
    require_found: bool = True
    changes: tuple[str, Any] | None = None

    def __post_init__(self) -> None:
        self.variant = self.variant or self.spec.variants[0]
        if self.variant not in self.spec.variants:
            raise UserError(f"unknown variant {self.variant!r} of method {self.spec.name!r}; "
                            f"valid variants: {', '.join(self.spec.variants)}")
        self.params = dict(self.params or {})
        self._runs: dict[tuple, list[Any] | Exception] = {}

    @property
    def name(self) -> str:
        return f"{self.spec.name}:{self.variant}"

    @functools.cached_property
    def run_task(self) -> Any:
        """The task the checks run on (``check_task``)."""
        return check_task(self.task)

    @functools.cached_property
    def queries(self) -> pd.DataFrame:
        return self.run_task.queries(self.n_queries)

    @property
    def schema(self) -> FeatureSchema:
        return self.run_task.schema

    def results(self, params: Mapping[str, Any] | None = None, again: bool = False) -> list[Any]:
        """What ``generate`` returned for the queries, built with ``params`` (default: the run's).

        Made once per ``(params, again)`` and kept; ``again=True`` is a second, independent
        build, fit and run (the determinism check).  An exception of the method is kept too
        and raised to every check that asks, so a failing fit is not repeated per check."""
        params = dict(self.params if params is None else params)
        key = (repr(sorted(params.items())), again)
        if key not in self._runs:
            try:
                self._runs[key] = self._run(params)
            except Exception as exc:  # noqa: BLE001 - kept and raised again below
                self._runs[key] = exc
        out = self._runs[key]
        if isinstance(out, Exception):
            raise out
        return out

    def _run(self, params: Mapping[str, Any]) -> list[Any]:
        """Build, fit and generate as a worker does (same seeding), in this process."""
        task, queries = self.run_task, self.queries
        seed_everything(self.seed)
        gen = self.spec.build(self.variant, params).fit(task.fit_context(self.seed, dict(params)))
        seed_everything(self.seed * 1_000_003 + int(queries["query_id"].iloc[0]))
        out = gen.generate(queries[task.schema.names].reset_index(drop=True),
                           queries["target"].to_numpy(int), self.k, self.budget)
        return list(out) if out is not None else []

    def records(self, params: Mapping[str, Any] | None = None,
                again: bool = False) -> list[dict[str, Any]]:
        """The results as the runner records them (no truncation: what was returned counts)."""
        return [normalise_result(r, self.schema.names, 10**6) for r in self.results(params, again)]

    def answered(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(query index, query row, CFs (n, d))`` for every query answered with valid CFs."""
        records = self.records()
        if len(records) != len(self.queries):
            raise AssertionError(f"{self.name}: {len(records)} results for {len(self.queries)} "
                                 "queries, so no CF can be matched to its query")
        X = self.queries[self.schema.names].to_numpy(float)
        for i, rec in enumerate(records):
            if rec["status"] == "ok":
                yield i, X[i], np.asarray(rec["cfs"], float).reshape(-1, X.shape[1])

    @functools.cached_property
    def span(self) -> np.ndarray:
        """Per-feature training range (1 where it is 0): the metrics' scale of a change."""
        X = self.run_task.X_train[self.schema.names].to_numpy(float)
        span = X.max(axis=0) - X.min(axis=0)
        return np.where(span > 0, span, 1.0)


def _fail(run: GeneratorRun, check: str, failures: list[str]) -> None:
    """Raise one ``AssertionError`` naming the method, the check and every failure."""
    if failures:
        raise AssertionError("\n".join(f"{run.name}: {check}: {f}" for f in failures))


def _values(p: Any) -> list[Any]:
    """Non-default values a declared parameter accepts, for the acceptance check."""
    if p.choices is not None:
        return [c for c in p.choices if c != p.default]
    if p.type is bool:
        return [not p.default] if p.default is not None else [True]
    return []


# ----------------------------------------------------------------------------- parameters


def check_declared_params(run: GeneratorRun) -> None:
    """Parameter names are declared once, every declared default passes its own declaration,
    and the factory accepts each declared parameter at its default (and at the other choices
    of a closed set, the other value of a bool)."""
    spec, failures = run.spec, []
    names = [p.name for p in spec.params]
    if len(set(names)) != len(names):
        failures.append(f"parameter names declared twice: {names}")
    try:
        validate_params(spec, {p.name: p.default for p in spec.params})
    except UserError as exc:
        failures.append(f"a declared default does not pass its own declaration: {exc}")
    for p in spec.params:
        for value in [p.default, *_values(p)]:
            try:
                spec.build(run.variant, {**run.params, p.name: value})
            except UserError as exc:
                if value == p.default:  # a declared default must always be accepted
                    failures.append(f"declared parameter {p.name}={value!r} refused: {exc}")
            except TypeError as exc:
                failures.append(f"declared parameter {p.name!r} is not accepted by the "
                                f"factory: {exc}")
                break
    _fail(run, "check_declared_params", failures)


def check_unknown_params_refused(run: GeneratorRun) -> None:
    """``spec.build`` and the factory itself refuse an undeclared key, naming it: a factory
    that swallows ``**kwargs`` would let a misspelt parameter pass silently."""
    spec, failures = run.spec, []
    try:
        spec.build(run.variant, {UNKNOWN_PARAM: 1})
        failures.append("spec.build accepted an undeclared parameter")
    except UserError as exc:
        if UNKNOWN_PARAM not in str(exc):
            failures.append(f"spec.build refused an undeclared parameter without naming it: {exc}")
    try:
        spec.factory(run.variant, **{UNKNOWN_PARAM: 1})
        failures.append("the factory swallows an unknown parameter; it must raise")
    except Exception as exc:  # noqa: BLE001 - sorted below: only a refusal of the key counts
        if not refuses_unknown(exc, UNKNOWN_PARAM):
            failures.append(f"the factory raised {type(exc).__name__} for an unknown parameter "
                            f"instead of refusing it by name: {exc}")
    _fail(run, "check_unknown_params_refused", failures)


# ----------------------------------------------------------------------------- results


def check_result_count(run: GeneratorRun) -> None:
    """One result per query, in order, and at most ``k`` CF rows in each (one unless the
    method declares ``multiple``); the runner would drop the extra rows, a plugin must not
    rely on it."""
    results, failures = run.results(), []
    if len(results) != len(run.queries):
        failures.append(f"{len(results)} results for {len(run.queries)} queries")
    cap = run.k if run.spec.capabilities.multiple else 1
    for i, res in enumerate(results):
        cfs = getattr(res, "cfs", None)
        returned = len(cfs) if getattr(res, "status", None) == "ok" and cfs is not None else 0
        if returned > cap:
            failures.append(f"query {i}: {returned} CFs returned, at most {cap} asked")
    _fail(run, "check_result_count", failures)


def check_valid_output(run: GeneratorRun) -> None:
    """Every result is a ``QueryResult`` the runner records as it is, never as
    ``invalid_output`` (CFs of the schema's columns, real and finite numbers, a known status)."""
    failures = [f"query {i}: invalid output: {rec['reason']}"
                for i, rec in enumerate(run.records()) if rec["status"] == "invalid_output"]
    _fail(run, "check_valid_output", failures)


def check_finds_cfs(run: GeneratorRun) -> None:
    """At least one query is answered with CFs (without any, the other checks see nothing)."""
    statuses = [rec["status"] for rec in run.records()]
    failures = [] if "ok" in statuses else [
        f"no query answered with CFs ({', '.join(statuses) or 'no results'})"]
    _fail(run, "check_finds_cfs", failures)


# ----------------------------------------------------------------------------- feature values


def check_category_codes(run: GeneratorRun) -> None:
    """Categorical and ordinal features hold one of their schema's codes
    (``Feature.categories``, within 1e-9): a generator working in a continuous space must snap
    them."""
    failures = []
    for i, _, C in run.answered():
        for j, f in enumerate(run.schema):
            if not f.categories:
                continue
            codes = np.asarray(f.categories, float)
            bad = C[~np.isclose(C[:, [j]], codes[None, :], rtol=0, atol=CODE_TOL).any(axis=1), j]
            if len(bad):
                failures.append(f"query {i}: feature {f.name!r} has code {bad[0]:.10g}, not one "
                                f"of its categories ({', '.join(f'{c:g}' for c in codes)})")
    _fail(run, "check_category_codes", failures)


def check_integers(run: GeneratorRun) -> None:
    """Integer features (``Feature.integer``) hold integers (within 1e-9): a generator working
    in a continuous space must round them.  Features with codes are the codes check's."""
    failures = []
    for i, _, C in run.answered():
        for j, f in enumerate(run.schema):
            if not f.integer or f.categories:
                continue
            bad = C[~(np.abs(C[:, j] - np.round(C[:, j])) <= CODE_TOL), j]
            if len(bad):
                failures.append(f"query {i}: integer feature {f.name!r} has value {bad[0]:.10g}")
    _fail(run, "check_integers", failures)


# ----------------------------------------------------------------------------- constraints


def check_immutables(run: GeneratorRun) -> None:
    """A method that declares ``constraints`` keeps every immutable feature at the query's
    value (a change counts as the metrics count it: more than 1e-6 of the training range)."""
    failures = []
    if run.spec.capabilities.constraints:
        for i, x, C in run.answered():
            moved = changed(x[None, :], C, run.span).any(axis=0)
            failures += [f"query {i}: immutable feature {f.name!r} changed although the method "
                         "declares constraints"
                         for f, m in zip(run.schema, moved, strict=True) if m and not f.mutable]
    _fail(run, "check_immutables", failures)


def check_bounds(run: GeneratorRun) -> None:
    """A method that declares ``constraints`` keeps every feature within its bounds
    (``schema.bounds()``); a NaN bound is open and bounds nothing."""
    failures = []
    if run.spec.capabilities.constraints:
        lower, upper = run.schema.bounds()
        for i, _, C in run.answered():
            for j, f in enumerate(run.schema):
                if (C[:, j] < lower[j]).any():  # False against NaN: an open bound
                    failures.append(f"query {i}: feature {f.name!r} has value "
                                    f"{C[:, j].min():.10g}, below its lower bound {lower[j]:g}")
                if (C[:, j] > upper[j]).any():
                    failures.append(f"query {i}: feature {f.name!r} has value "
                                    f"{C[:, j].max():.10g}, above its upper bound {upper[j]:g}")
    _fail(run, "check_bounds", failures)


def check_directions(run: GeneratorRun) -> None:
    """A method that declares ``constraints`` moves an increase-only feature only up and a
    decrease-only one only down (``schema.directions()``: +1, -1, 0 for any)."""
    failures = []
    if run.spec.capabilities.constraints:
        dirs = run.schema.directions()
        for i, x, C in run.answered():
            against = (dirs * (C - x) < 0) & changed(x[None, :], C, run.span)
            for j in np.flatnonzero(against.any(axis=0)):
                f = run.schema.features[j]
                worst = C[against[:, j], j][0]
                failures.append(f"query {i}: {f.direction} feature {f.name!r} moved from "
                                f"{x[j]:.10g} to {worst:.10g}")
    _fail(run, "check_directions", failures)


# ----------------------------------------------------------------------------- reruns


def _cf_key(rec: dict[str, Any]) -> tuple:
    return rec["status"], tuple(tuple(np.round(row, 9)) for row in rec["cfs"])


def check_determinism(run: GeneratorRun) -> None:
    """A second build, fit and run under the same seed gives the same CFs (the runner seeds
    ``random``, numpy and torch as here; a method must not draw from anything else)."""
    first = [_cf_key(r) for r in run.records()]
    second = [_cf_key(r) for r in run.records(again=True)]
    failures = [] if first == second else [
        f"two runs with seed {run.seed} gave different results"]
    _fail(run, "check_determinism", failures)


def check_param_changes(run: GeneratorRun) -> None:
    """Setting the parameter ``run.changes = (key, value)`` changes the CFs: the declared
    parameter reaches the method."""
    failures = []
    if run.changes is not None:
        key, value = run.changes
        first = [_cf_key(r) for r in run.records()]
        other = [_cf_key(r) for r in run.records({**run.params, key: value})]
        if first == other:
            failures.append(f"setting {key}={value!r} did not change any CF")
    _fail(run, "check_param_changes", failures)


#: every check, in the order ``check_generator`` runs them
CHECKS: tuple[Callable[[GeneratorRun], None], ...] = (
    check_declared_params, check_unknown_params_refused, check_result_count, check_valid_output,
    check_finds_cfs, check_category_codes, check_integers, check_immutables, check_bounds,
    check_directions, check_determinism, check_param_changes,
)
#: checks that build, fit and run the method again: ``check_generator`` runs them only for a
#: method that passes the others (a second run of a broken method says nothing new)
RERUNS = ("check_determinism", "check_param_changes")


def applies(check: Callable[[GeneratorRun], None], run: GeneratorRun) -> bool:
    """Whether ``check`` has anything to check for ``run``: the constraint checks need a method
    declaring ``constraints``; ``check_finds_cfs``, ``check_determinism`` and
    ``check_param_changes`` are off with ``require_found=False``, ``deterministic=False`` and
    no ``changes``."""
    name = check.__name__
    if name in ("check_immutables", "check_bounds", "check_directions"):
        return run.spec.capabilities.constraints
    return {"check_finds_cfs": run.require_found, "check_determinism": run.deterministic,
            "check_param_changes": run.changes is not None}.get(name, True)


def generator_checks(spec: GeneratorSpec, variant: str | None = None,
                     **options: Any) -> list[tuple[str, Callable[[], None]]]:
    """``(check name, check)`` for every check that applies to one variant of ``spec``; each
    check takes no argument and raises ``AssertionError`` on a violation.  The checks share
    one ``GeneratorRun`` (``options`` are its fields), so the method runs once for all of them.
    """
    run = GeneratorRun(spec, variant, **options)
    return [(c.__name__, functools.partial(c, run)) for c in CHECKS if applies(c, run)]


def parametrize_with_checks(generators: Iterable[GeneratorSpec | tuple[GeneratorSpec, str]],
                            **options: Any) -> Any:
    """A ``pytest.mark.parametrize`` over every check of every variant, one test each (ids such
    as ``shift:linear-check_bounds``).  ``generators`` holds specs (all their variants) or
    ``(spec, variant)`` pairs; ``options`` are ``GeneratorRun`` fields.  The decorated test
    takes one argument, ``check``, and calls it::

        @parametrize_with_checks([registry().generator("shift")])
        def test_shift(check):
            check()
    """
    import pytest  # only a test session needs it

    cases, ids = [], []
    for item in generators:
        spec, variants = (item, item.variants) if isinstance(item, GeneratorSpec) else (
            item[0], (item[1],))
        for variant in variants:
            for name, check in generator_checks(spec, variant, **options):
                cases.append(check)
                ids.append(f"{spec.name}:{variant}-{name}")
    return pytest.mark.parametrize("check", cases, ids=ids)


def check_generator(spec: GeneratorSpec, variant: str | None = None, *,
                    params: Mapping[str, Any] | None = None, task: Any = None,
                    n_queries: int = 1, k: int = 2, seed: int = 0, budget: float = 30.0,
                    deterministic: bool = True, require_found: bool = True,
                    changes: tuple[str, Any] | None = None) -> dict[str, Any]:
    """Run every check that applies to one variant of ``spec``; raise one ``AssertionError``
    listing each failure, prefixed with the method and the failed check's name.

    ``params`` are passed to every build (e.g. a small model for speed); ``task`` defaults to
    ``heart``; ``n_queries`` per source class.  ``deterministic=False`` skips the determinism
    check (for methods bounded by wall-clock time); ``require_found=False`` accepts that no
    query gets a CF (the value and constraint checks then have nothing to look at).
    ``changes=(key, value)`` also requires that setting that parameter changes the CFs.  The
    reruns (determinism, ``changes``) run only when every other check passed.  Returns
    ``{"statuses": [...], "n_cfs": [...]}`` for the queries.
    """
    run = GeneratorRun(spec, variant, params or {}, task, n_queries, k, seed, budget,
                       deterministic, require_found, changes)
    failures: list[str] = []
    for check in CHECKS:
        if not applies(check, run) or (failures and check.__name__ in RERUNS):
            continue
        try:
            check(run)
        except AssertionError as exc:
            failures += str(exc).splitlines()
    if failures:  # a line several checks share (results not matching queries) is said once
        raise AssertionError("\n".join(dict.fromkeys(failures)))
    records = run.records()
    return {"statuses": [r["status"] for r in records], "n_cfs": [len(r["cfs"]) for r in records]}

