"""The conformance checks themselves (``cfbench.testing``): each named check fails on the one
violation it is about and on nothing else, open bounds bound nothing, and the checks run one
test each through ``parametrize_with_checks``."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandas as pd
import pytest

from cfbench.core.generator import Capabilities, GeneratorSpec, Param, QueryResult
from cfbench.core.plugins import registry
from cfbench.core.schema import FeatureSchema
from cfbench.testing import (
    CHECKS,
    GeneratorRun,
    check_bounds,
    check_generator,
    check_task,
    generator_checks,
    parametrize_with_checks,
)


@pytest.fixture(scope="module", autouse=True)
def heart():
    """The default check task, loaded once up front (~10 s the first time: the classifier)."""
    return check_task()


class Echo:
    """A toy generator answering each query with the query itself, changed by ``edit``: each
    test gives it the one flaw it is about."""

    def __init__(self, variant: str = "default", n: int = 1) -> None:
        self.n = n

    def fit(self, context):
        self.columns = context.schema.names
        return self

    def edit(self, i: int, cf: pd.Series) -> None:
        """Change the CF of query ``i`` in place (the honest echo changes nothing)."""

    def generate(self, queries, targets, k, budget):
        out = []
        for i, (_, q) in enumerate(queries[self.columns].iterrows()):
            cf = q.astype(float).copy()
            self.edit(i, cf)
            out.append(QueryResult.ok(pd.DataFrame([cf])))
        return out


N = (Param("n", int, 1, "unused"),)


def toy(edit=None, *, factory=None, params=N,
        constraints: bool = True, generate=None) -> GeneratorSpec:
    """A spec of ``Echo`` with ``edit`` (and ``generate``) replaced."""
    cls = type("Toy", (Echo,), {
        **({"edit": lambda self, i, cf: edit(i, cf)} if edit else {}),
        **({"generate": generate} if generate else {})})
    return GeneratorSpec(name="toy", factory=factory or cls, params=params,
                         capabilities=Capabilities(multiple=True, constraints=constraints))


def _set(name: str, value: float):
    def edit(i, cf):
        cf[name] = value
    return edit


def _add(name: str, delta: float):
    def edit(i, cf):
        cf[name] += delta
    return edit


def _unseeded(i, cf):
    cf["oldpeak"] += 1e-3 * np.random.default_rng().random()


def _too_many(self, queries, targets, k, budget):
    rows = queries[self.columns].astype(float)
    return [QueryResult.ok(pd.DataFrame([row] * (k + 1)).assign(oldpeak=np.arange(k + 1) / 10))
            for _, row in rows.iterrows()]


def _nan_first(self, queries, targets, k, budget):
    out = Echo.generate(self, queries, targets, k, budget)
    out[0].cfs.iloc[0, 0] = np.nan
    return out


def _none_found(self, queries, targets, k, budget):
    return [QueryResult.not_found("nothing") for _ in range(len(queries))]


# heart's bounds: trestbps [80, 220] (declared decrease-only by check_task), oldpeak [0, 7],
# thalach [60, 220] integer, thal codes 3, 6, 7, age immutable
VIOLATIONS = {
    "check_declared_params": (toy(params=(*N, Param("m", int, 1, "not a keyword of the factory"))),
                              {}),
    "check_unknown_params_refused": (toy(factory=lambda variant="default", **kw: Echo(variant)),
                                     {}),
    "check_result_count": (toy(generate=_too_many), {}),
    "check_valid_output": (toy(generate=_nan_first), {}),
    "check_finds_cfs": (toy(generate=_none_found), {}),
    "check_category_codes": (toy(_set("thal", 4.0)), {}),
    "check_integers": (toy(_add("thalach", 0.5)), {}),
    "check_immutables": (toy(_add("age", 1.0)), {}),
    "check_bounds": (toy(_set("oldpeak", 8.0)), {}),
    "check_directions": (toy(_add("trestbps", 1.0)), {}),
    "check_determinism": (toy(_unseeded), {}),
    "check_param_changes": (toy(), {"changes": ("n", 2)}),
}


def test_every_check_has_a_violation_here():
    assert sorted(VIOLATIONS) == sorted(c.__name__ for c in CHECKS)


def test_the_honest_echo_passes_every_check():
    report = check_generator(toy())
    assert report == {"statuses": ["ok", "ok"], "n_cfs": [1, 1]}


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_each_check_fails_on_its_violation_and_only_that_check_does(name):
    spec, options = VIOLATIONS[name]
    checks = dict(generator_checks(spec, **options))
    with pytest.raises(AssertionError, match=f"^toy:default: {name}: "):
        checks[name]()
    failed = []
    for other, check in checks.items():
        try:
            check()
        except AssertionError:
            failed.append(other)
    assert failed == [name]
    with pytest.raises(AssertionError) as err:  # the whole check names it on every line
        check_generator(spec, **options)
    assert all(line.startswith(f"toy:default: {name}: ") for line in str(err.value).splitlines())


@pytest.mark.parametrize("name", ["check_immutables", "check_bounds", "check_directions"])
def test_constraints_are_checked_only_when_declared(name):
    spec = dataclasses.replace(VIOLATIONS[name][0], capabilities=Capabilities(multiple=True))
    assert name not in dict(generator_checks(spec))
    check_generator(spec)


@pytest.mark.parametrize("value", [-1.0, 8.0])
def test_an_open_bound_bounds_nothing(value):
    """``schema.bounds()`` gives NaN for an open bound: no value is outside it."""
    task = copy.copy(check_task())
    task.schema = FeatureSchema(tuple(
        dataclasses.replace(f, lower=None, upper=None) if f.name == "oldpeak" else f
        for f in task.schema))
    assert np.isnan(task.schema.bounds()[1][task.schema.names.index("oldpeak")])
    spec = toy(_set("oldpeak", value))
    check_bounds(GeneratorRun(spec, task=task))
    with pytest.raises(AssertionError, match="'oldpeak' has value"):
        check_bounds(GeneratorRun(spec))  # heart's own bounds, [0, 7]


def test_the_check_task_declares_a_direction_only_where_none_is():
    task = check_task()
    assert [(f.name, f.direction) for f in task.schema if f.direction != "any"] == [
        ("trestbps", "decrease-only")]
    assert check_task(task) is task
    assert check_task().X_train is task.X_train  # the same loaded task, not a reload


def test_an_unknown_variant_is_refused_by_name():
    with pytest.raises(Exception, match="unknown variant 'nope' of method 'toy'; valid variants: "
                                        "default"):
        generator_checks(toy(), "nope")


# ----------------------------------------------------------------------------- earlier cases


class Sloppy:
    """Changes an immutable feature, writes an unknown categorical code, and ignores its seed."""

    def __init__(self, variant: str = "default", **_ignored: object) -> None:
        pass

    def fit(self, context):
        self.schema = context.schema
        return self

    def generate(self, queries, targets, k, budget):
        out = []
        for _, q in queries.iterrows():
            cf = q.copy()
            cf[self.schema.immutable[0]] += 1
            cat = self.schema.categorical[0]
            cf[cat] = 99.0
            cf[self.schema.names[-1]] += np.random.default_rng().random()  # unseeded
            out.append(QueryResult.ok(pd.DataFrame([cf] * (k + 1))))
        return out


def test_a_sloppy_generator_fails_every_check_it_should():
    spec = GeneratorSpec(name="sloppy", factory=Sloppy, params=N,
                         capabilities=Capabilities(multiple=True, constraints=True))
    with pytest.raises(AssertionError) as err:
        check_generator(spec)
    msg = str(err.value)
    assert "check_unknown_params_refused: the factory swallows an unknown parameter" in msg
    assert "check_immutables: query 0: immutable feature" in msg
    assert "check_category_codes: query 0: feature 'sex' has code 99, not one of its" in msg
    assert "check_result_count: query 0: 3 CFs returned, at most 2 asked" in msg
    assert "check_determinism" not in msg  # reruns only for a method passing the rest


def test_an_import_error_is_not_a_refusal_of_an_unknown_key():
    """A factory that fails on a missing dependency has not refused the key: it may swallow it."""
    from cfbench.builtin import _nearest_neighbour

    def factory(variant: str = "default", **params: object):
        if params:
            raise ImportError("No module named 'somelib'")
        return _nearest_neighbour(variant)

    spec = GeneratorSpec(name="brittle", factory=factory,
                         capabilities=Capabilities(multiple=True, constraints=True))
    with pytest.raises(AssertionError, match="the factory raised ImportError for an unknown "
                                             "parameter instead of refusing it by name"):
        check_generator(spec)
    check_generator(registry().generator("nearest-neighbour"))  # the real one passes


# ----------------------------------------------------------------------------- one test per check


@parametrize_with_checks([registry().generator("nearest-neighbour"), (toy(), "default")])
def test_parametrize_with_checks_gives_each_check_its_own_test(check):
    check()


def test_the_parametrized_ids_name_the_method_variant_and_check():
    mark = parametrize_with_checks([toy()], changes=("n", 2))
    assert mark.kwargs["ids"] == [f"toy:default-{c.__name__}" for c in CHECKS]
