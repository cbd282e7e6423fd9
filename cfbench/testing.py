"""Conformance checks for generator plugins, in the spirit of scikit-learn's ``check_estimator``.

``check_generator(spec)`` builds, fits and runs one variant of a method on a small real task
(``heart``: categorical features and immutables) in this process and checks the contract the
runner relies on: result count and shape, determinism under a seed, immutables kept when the
method declares constraints, categorical codes from the schema, declared parameters accepted and
unknown ones refused.  Every failed check is collected; one ``AssertionError`` lists them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cfbench.core.errors import UserError
from cfbench.core.generator import GeneratorSpec, validate_params
from cfbench.execution.worker import normalise_result, seed_everything
from cfbench.tasks.spec import Task, resolve_spec

UNKNOWN_PARAM = "__cfbench_no_such_parameter__"


def refuses_unknown(exc: BaseException, key: str) -> bool:
    """Whether ``exc`` is a factory's refusal of the keyword ``key``: a ``UserError`` naming it,
    or Python's ``TypeError: ... got an unexpected keyword argument 'key'``.  Anything else (an
    ``ImportError`` of a missing dependency, a ``TypeError`` from inside the constructor) is
    not a refusal: the factory may still swallow the key once it gets that far."""
    if type(exc) is TypeError:
        return f"unexpected keyword argument {key!r}" in str(exc)
    return isinstance(exc, UserError) and repr(key) in str(exc)


def _values(p: Any) -> list[Any]:
    """Non-default values a declared parameter accepts, for the acceptance check."""
    if p.choices is not None:
        return [c for c in p.choices if c != p.default]
    if p.type is bool:
        return [not p.default] if p.default is not None else [True]
    return []


def _run(spec: GeneratorSpec, variant: str, params: Mapping[str, Any], task: Any,
         queries: pd.DataFrame, k: int, seed: int, budget: float) -> list[Any]:
    """Build, fit and generate as a worker does (same seeding), in this process."""

    seed_everything(seed)
    gen = spec.build(variant, params).fit(task.fit_context(seed, dict(params)))
    seed_everything(seed * 1_000_003 + int(queries["query_id"].iloc[0]))
    out = gen.generate(queries[task.schema.names].reset_index(drop=True),
                       queries["target"].to_numpy(int), k, budget)
    return list(out) if out is not None else []


def check_generator(spec: GeneratorSpec, variant: str | None = None, *,
                    params: Mapping[str, Any] | None = None, task: Any = None,
                    n_queries: int = 1, k: int = 2, seed: int = 0, budget: float = 30.0,
                    deterministic: bool = True, require_found: bool = True,
                    changes: tuple[str, Any] | None = None) -> dict[str, Any]:
    """Check one variant of ``spec``; raise ``AssertionError`` listing every failed check.

    ``params`` are passed to every build (e.g. a small model for speed); ``task`` defaults to
    ``heart``; ``n_queries`` per source class.  ``deterministic=False`` skips the determinism
    check (for methods bounded by wall-clock time); ``require_found=False`` accepts that no query
    gets a CF (the shape checks then have nothing to look at).  ``changes=(key, value)`` also requires that
    setting that parameter changes the CFs.  Returns ``{"statuses": [...], "n_cfs": [...]}``.
    """

    variant = variant or spec.variants[0]
    params = dict(params or {})
    failures: list[str] = []
    name = f"{spec.name}:{variant}"

    # -- parameters: declaration well-formed, declared ones accepted, unknown ones refused
    names = [p.name for p in spec.params]
    if len(set(names)) != len(names):
        failures.append(f"{name}: parameter names declared twice: {names}")
    try:
        validate_params(spec, {p.name: p.default for p in spec.params})
    except UserError as exc:
        failures.append(f"{name}: a declared default does not pass its own declaration: {exc}")
    try:
        spec.build(variant, {UNKNOWN_PARAM: 1})
        failures.append(f"{name}: spec.build accepted an undeclared parameter")
    except UserError as exc:
        if UNKNOWN_PARAM not in str(exc):
            failures.append(f"{name}: spec.build refused an undeclared parameter without naming "
                            f"it: {exc}")
    try:
        spec.factory(variant, **{UNKNOWN_PARAM: 1})
        failures.append(f"{name}: the factory swallows an unknown parameter; it must raise")
    except Exception as exc:  # noqa: BLE001 - sorted below: only a refusal of the key counts
        if not refuses_unknown(exc, UNKNOWN_PARAM):
            failures.append(f"{name}: the factory raised {type(exc).__name__} for an unknown "
                            f"parameter instead of refusing it by name: {exc}")
    for p in spec.params:
        for value in [p.default, *_values(p)]:
            try:
                spec.build(variant, {**params, p.name: value})
            except UserError as exc:
                if value == p.default:  # a declared default must always be accepted
                    failures.append(f"{name}: declared parameter {p.name}={value!r} refused: {exc}")
            except TypeError as exc:
                failures.append(f"{name}: declared parameter {p.name!r} is not accepted by the "
                                f"factory: {exc}")
                break

    # -- behaviour on a small real task
    task = task or Task.load(resolve_spec("heart"))
    queries = task.queries(n_queries)
    schema = task.schema
    cols = schema.names
    first = _run(spec, variant, params, task, queries, k, seed, budget)
    statuses: list[str] = []
    n_cfs: list[int] = []
    if len(first) != len(queries):
        failures.append(f"{name}: {len(first)} results for {len(queries)} queries")
    else:
        cap = k if spec.capabilities.multiple else 1
        Xq = queries[cols].to_numpy(float)
        for i, res in enumerate(first):
            rec = normalise_result(res, cols, 10**6)  # no truncation: count what was returned
            statuses.append(rec["status"])
            n_cfs.append(len(rec["cfs"]))
            if rec["status"] == "invalid_output":
                failures.append(f"{name}: query {i}: invalid output: {rec['reason']}")
                continue
            # rows as returned: the runner keeps k distinct ones, but a plugin must not rely on it
            returned = len(res.cfs) if getattr(res, "cfs", None) is not None else 0
            if returned > cap:
                failures.append(f"{name}: query {i}: {returned} CFs returned, at most {cap} asked")
            C = np.asarray(rec["cfs"], float).reshape(-1, len(cols))
            for j, f in enumerate(schema.features):
                if f.kind == "categorical" and f.categories:
                    bad = sorted(set(C[:, j]) - {float(c) for c in f.categories})
                    if bad:
                        failures.append(f"{name}: query {i}: feature {f.name!r} has code {bad[0]!r}, "
                                        f"not one of its categories")
                if spec.capabilities.constraints and not f.mutable and len(C) and \
                        not np.allclose(C[:, j], Xq[i, j]):
                    failures.append(f"{name}: query {i}: immutable feature {f.name!r} changed "
                                    "although the method declares constraints")
    if require_found and statuses and not any(s == "ok" for s in statuses):
        failures.append(f"{name}: no query answered with CFs ({', '.join(statuses)})")
    if deterministic and not failures:
        second = _run(spec, variant, params, task, queries, k, seed, budget)
        if [_cf_key(r, cols) for r in first] != [_cf_key(r, cols) for r in second]:
            failures.append(f"{name}: two runs with seed {seed} gave different results")
    if changes is not None and not failures:
        key, value = changes
        other = _run(spec, variant, {**params, key: value}, task, queries, k, seed, budget)
        if [_cf_key(r, cols) for r in first] == [_cf_key(r, cols) for r in other]:
            failures.append(f"{name}: setting {key}={value!r} did not change any CF")
    if failures:
        raise AssertionError("\n".join(failures))
    return {"statuses": statuses, "n_cfs": n_cfs}


def _cf_key(res: Any, cols: list[str]) -> tuple:
    rec = normalise_result(res, cols, 10**6)
    return rec["status"], tuple(tuple(np.round(row, 9)) for row in rec["cfs"])
