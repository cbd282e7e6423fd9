"""Per-method parameters: declarations, the one validation, --param, labels and cell identity."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cfbench.core.errors import UserError
from cfbench.core.generator import GeneratorSpec, Param, params_markdown, validate_params
from cfbench.core.plugins import registry
from cfbench.core.safe_load import load_toml
from cfbench.execution.config import Cell, RunConfig
from cfbench.execution.orchestrator import check_resume, plan
from cfbench.execution.select import (
    group_params,
    parse_param,
    resolve_methods,
    split_selection,
    with_params,
)
from cfbench.records.labels import Choice, canonical_key, method_label, record_label
from cfbench.records.store import record_key
from cfbench.tasks.spec import resolve_spec

#: every in-tree plugin: the entry points this project's own pyproject.toml registers
IN_TREE = tuple(load_toml(Path(__file__).parents[2] / "pyproject.toml", "pyproject")
                ["project"]["entry-points"]["cfbench"])
DOC = Path(__file__).parents[2] / "docs" / "writing-a-plugin.md"


def in_tree_specs() -> list[GeneratorSpec]:
    return [s for _, s in sorted(registry().generators.items()) if s.plugin in IN_TREE]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cfbench", *args], capture_output=True,
                          text=True, timeout=600)


SPEC = GeneratorSpec(name="toy", factory=lambda variant="default", **kw: (variant, kw), params=(
    Param("n", int, 5, "a count", minimum=1),
    Param("rate", float, 0.5, "a share", minimum=0, maximum=1),
    Param("mode", str, "a", "a mode", choices=("a", "b")),
    Param("flag", bool, False, "a switch"),
    Param("seed", int, None, "unset by default"),
))


def test_validate_params_checks_names_types_choices_and_bounds():
    assert validate_params(SPEC, {"n": 3, "rate": 1, "mode": "b", "flag": True, "seed": None}) == \
        {"n": 3, "rate": 1.0, "mode": "b", "flag": True, "seed": None}
    assert isinstance(validate_params(SPEC, {"rate": 1})["rate"], float)
    with pytest.raises(UserError, match=r"unknown parameter 'nn' of method 'toy'; valid parameters: "
                                        r"flag, mode, n, rate, seed$"):
        validate_params(SPEC, {"nn": 3})
    with pytest.raises(UserError, match=r"parameter 'n' of method 'toy': expected int, got 'x' \(str\)"):
        validate_params(SPEC, {"n": "x"})
    with pytest.raises(UserError, match="expected int"):
        validate_params(SPEC, {"n": True})  # a bool is not an int here
    with pytest.raises(UserError, match="expected bool"):
        validate_params(SPEC, {"flag": 1})
    with pytest.raises(UserError, match="expected int, got None"):
        validate_params(SPEC, {"n": None})  # None only where the default is None
    with pytest.raises(UserError, match="valid choices: a, b"):
        validate_params(SPEC, {"mode": "c"})
    with pytest.raises(UserError, match=r"expected a number in \[0, 1\]"):
        validate_params(SPEC, {"rate": 1.5})
    with pytest.raises(UserError, match=r"expected a number in \[1, inf\]"):
        validate_params(SPEC, {"n": 0})


def test_an_exclusive_minimum_refuses_the_bound_itself():
    spec = GeneratorSpec(name="toy", factory=SPEC.factory, params=(
        Param("step", float, None, "a positive step", exclusive_minimum=0),
        Param("share", float, 0.5, "a share above 0", exclusive_minimum=0, maximum=1)))
    assert validate_params(spec, {"step": 1e-9, "share": 1}) == {"step": 1e-9, "share": 1.0}
    with pytest.raises(UserError, match=r"parameter 'step' of method 'toy': got 0; "
                                        r"expected a number in \(0, inf\]$"):
        validate_params(spec, {"step": 0})
    with pytest.raises(UserError, match=r"expected a number in \(0, 1\]$"):
        validate_params(spec, {"share": -1})
    assert [p.allowed() for p in spec.params] == ["> 0", "> 0, <= 1"]
    assert spec.params[0].as_dict()["exclusive_minimum"] == 0


def _lower_bound(p: Param) -> float | None:
    """The smallest value a declaration lets through (a hair above an exclusive minimum)."""
    if p.exclusive_minimum is not None:
        return p.exclusive_minimum + (1 if p.type is int else 1e-6)
    return p.minimum


@pytest.mark.parametrize("spec", in_tree_specs(), ids=lambda s: s.name)
def test_every_declared_lower_bound_is_accepted_by_the_constructor(spec):
    """What passes the upfront check must not fail in a worker: the bound a declaration lets
    through is one its constructor accepts (``minimum=0`` where the constructor needs > 0 fails)."""
    for p in spec.params:
        low = _lower_bound(p)
        if p.type not in (int, float) or low is None:
            continue
        value = p.type(low)
        validate_params(spec, {p.name: value})
        for variant in spec.variants:
            try:
                spec.build(variant, {p.name: value})
            except UserError as exc:
                pytest.fail(f"{spec.name}:{variant}: {p.name}={value!r} passes the declaration "
                            f"({p.allowed()}) but the constructor refuses it: {exc}")


@pytest.mark.parametrize("method, key", [("cfnow", "ft_change_factor"), ("llm-finetuned", "lr")])
def test_zero_is_refused_upfront_where_the_constructor_needs_a_positive_number(method, key):
    spec = registry().generator(method)
    with pytest.raises(UserError) as err:
        with_params([(method, spec.variants[0], {})], [(method, {key: 0})])
    msg = str(err.value)
    assert msg == f"parameter {key!r} of method {method!r}: got 0; expected a number in (0, inf]"


def test_cli_refuses_a_zero_step_factor_in_one_line_before_any_work(tmp_path):
    out = tmp_path / "out"
    r = cli("run", "--task", "heart", "--methods", "cfnow:greedy", "--param",
            "cfnow.ft_change_factor=0", "--out", str(out))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "parameter 'ft_change_factor' of method 'cfnow': got 0; expected a number in (0, inf]" \
        in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_build_validates_before_the_factory_sees_anything():
    assert SPEC.build("default", {"n": 2}) == ("default", {"n": 2})
    with pytest.raises(UserError, match="unknown parameter"):
        SPEC.build("default", {"typo": 1})


@pytest.mark.parametrize("spec", in_tree_specs(), ids=lambda s: s.name)
def test_a_misspelt_key_is_refused_with_the_valid_keys(spec):
    """For every in-tree method, before any work: the same path ``--param`` takes."""
    key = (spec.params[0].name + "x") if spec.params else "typo"
    with pytest.raises(UserError) as err:
        with_params([(spec.name, spec.variants[0], {})], [(spec.name, {key: 1})])
    msg = str(err.value)
    assert f"unknown parameter {key!r} of method {spec.name!r}" in msg and "\n" not in msg
    for p in spec.params:
        assert p.name in msg
    if not spec.params:
        assert "takes no parameters" in msg


@pytest.mark.parametrize("spec", in_tree_specs(), ids=lambda s: s.name)
def test_no_in_tree_factory_swallows_unknown_keys(spec):
    """Only the refusal of the key counts: not an ImportError, not a TypeError from elsewhere."""
    from cfbench.testing import refuses_unknown

    for variant in spec.variants:
        with pytest.raises((TypeError, UserError)) as err:
            spec.factory(variant, no_such_parameter=1)
        assert refuses_unknown(err.value, "no_such_parameter"), repr(err.value)


def test_refuses_unknown_accepts_only_the_refusal_of_the_key():
    from cfbench.testing import refuses_unknown

    def strict(variant="default", *, n=1):
        return n

    with pytest.raises(TypeError) as err:
        strict("default", typo=1)
    assert refuses_unknown(err.value, "typo")
    assert refuses_unknown(UserError("unknown parameter 'typo' of method 'x'; valid: n"), "typo")
    assert not refuses_unknown(ImportError("No module named 'dice_ml'"), "typo")
    assert not refuses_unknown(ModuleNotFoundError("No module named 'typo'"), "typo")
    assert not refuses_unknown(TypeError("unsupported operand type(s) for +"), "typo")
    assert not refuses_unknown(UserError("model folder not found"), "typo")


@pytest.mark.parametrize("spec", in_tree_specs(), ids=lambda s: s.name)
def test_every_declared_default_is_accepted_by_the_factory(spec):
    defaults = {p.name: p.default for p in spec.params}
    spec.build(spec.variants[-1], defaults)  # raises TypeError if a declared name is not accepted


@pytest.mark.parametrize("module, cls, plugin", [
    ("cfbench_dice.generator", "DiceGenerator", "cfbench_dice"),
    ("cfbench_cfnow.generator", "CfnowGenerator", "cfbench_cfnow"),
    ("cfbench_nice.nice", "NICE", "cfbench_nice"),
    ("cfbench_growing_spheres.growing_spheres", "GrowingSpheres", "cfbench_growing_spheres"),
    ("cfbench_face.face", "FACE", "cfbench_face"),
])
def test_declarations_match_the_constructors(module, cls, plugin):
    import importlib

    init = inspect.signature(getattr(importlib.import_module(module), cls).__init__).parameters
    declared = importlib.import_module(plugin).PARAMS
    accepted = {n: p.default for n, p in init.items() if n not in ("self", "variant")}
    assert {p.name: p.default for p in declared} == accepted
    assert not any(p.kind == p.VAR_KEYWORD for p in init.values())


def test_llm_declarations_match_settings_and_api():
    pytest.importorskip("cfbench_llm")
    from cfbench_llm import api, params
    from cfbench_llm.generator import Settings

    fields = {f.name: f.default for f in dataclasses.fields(Settings)}
    assert {p.name: p.default for p in params.LOCAL} == fields
    assert {p.name: p.default for p in params.API} == api.PARAMS


LLM_UNUSED = [("llm-zeroshot", "examples"), ("llm-zeroshot", "pool"), ("llm-zeroshot", "pairs"),
              ("llm-zeroshot", "lr"), ("llm-fewshot", "force_finetune"), ("llm-finetuned", "examples"),
              ("llm-finetuned", "cf_style"), ("api-zeroshot", "examples"),
              ("api-zeroshot", "example_seed"), ("api-zeroshot", "pool"), ("api-zeroshot", "rounds"),
              ("api-zeroshot", "samples")]


@pytest.mark.parametrize("method, key", LLM_UNUSED)
def test_llm_methods_refuse_keys_their_mode_never_uses(method, key):
    """Few-shot keys only for few-shot modes, fine-tuning keys only for llm-finetuned: upfront,
    and in the factory too."""
    pytest.importorskip("cfbench_llm")
    from cfbench_llm import params

    spec = registry().generator(method)
    value = {p.name: p.default for p in params.LOCAL + params.API}[key]
    value = 1 if value is None else value
    with pytest.raises(UserError) as err:
        with_params([(method, spec.variants[0], {})], [(method, {key: value})])
    msg = str(err.value)
    valid = ", ".join(sorted(p.name for p in spec.params))
    assert msg == f"unknown parameter {key!r} of method {method!r}; valid parameters: {valid}"
    assert key not in valid.split(", ")
    with pytest.raises(UserError) as err:
        spec.factory(spec.variants[0], **{key: value})
    assert str(err.value) == msg


def test_llm_declarations_per_mode():
    pytest.importorskip("cfbench_llm")
    from cfbench_llm import params

    names = {m: {p.name for p in registry().generator(m).params} for m in (
        "llm-zeroshot", "llm-fewshot", "llm-finetuned", "api-zeroshot", "api-fewshot")}
    assert {"examples", "pool"} <= names["llm-fewshot"] and "pairs" not in names["llm-fewshot"]
    assert {"pairs", "lr", "teacher"} <= names["llm-finetuned"]
    assert names["api-fewshot"] == {p.name for p in params.API}
    assert names["llm-zeroshot"] | names["llm-fewshot"] | names["llm-finetuned"] == \
        {p.name for p in params.LOCAL}
    # the fast preset names only keys llm-fewshot declares
    assert set(params.FAST) <= names["llm-fewshot"]


def test_param_flags_parse_as_toml_scalars():
    assert parse_param("dice:random.total_cfs=20") == ("dice:random", "total_cfs", 20)
    assert parse_param("dice.posthoc_sparsity_param=0.5") == ("dice", "posthoc_sparsity_param", 0.5)
    assert parse_param("dice.dice_precision=true") == ("dice", "dice_precision", True)
    assert parse_param("dice.posthoc_sparsity_algorithm=linear")[2] == "linear"  # bare word
    assert parse_param('llm-fewshot.sep=" ; "')[2] == " ; "
    assert parse_param("llm-fewshot.model=google/gemma-3-270m")[2] == "google/gemma-3-270m"
    for bad in ("dice.total_cfs", "total_cfs=3", "dice.=3", "dice.x=", "dice.x=[1, 2]", "dice.x=nan"):
        with pytest.raises(UserError):
            parse_param(bad)
    assert group_params(["dice.a=1", "dice:random.b=2", "dice.a=3"]) == (
        ("dice", {"a": 3}), ("dice:random", {"b": 2}))


def test_param_groups_merge_into_the_cells_they_name():
    choices, _ = resolve_methods("dice", params=group_params(
        ["dice.posthoc_sparsity_algorithm=linear", "dice:random.total_cfs=4",
         "dice:random.posthoc_sparsity_algorithm=binary"]))
    by = {c.variant: dict(c.params) for c in choices}
    # the variant's value wins; binary is the declared default, so it is no parameter of the cell
    assert by["random"] == {"total_cfs": 4}
    assert by["genetic"] == by["kdtree"] == {"posthoc_sparsity_algorithm": "linear"}
    with pytest.raises(UserError, match="--param nice: method 'nice' is not among the methods run"):
        resolve_methods("dice", params=group_params(["nice.ae_epochs=3"]))
    with pytest.raises(UserError, match="unknown variant 'randm'"):
        resolve_methods("dice", params=group_params(["dice:randm.total_cfs=3"]))


def test_labels_show_params_and_read_back_as_a_selection():
    assert method_label("dice", "random", {"total_cfs": 20}) == "dice:random[total_cfs=20]"
    assert method_label("nice", "default", {}) == "nice"
    label = method_label("llm-fewshot", "default",
                         {"sep": ", ", "clip": True, "lr": 0.5, "row_style": "true"})
    assert label == 'llm-fewshot[clip=true,lr=0.5,row_style="true",sep=", "]'
    [(item, params)] = split_selection(label)
    assert item == "llm-fewshot" and params == {"sep": ", ", "clip": True, "lr": 0.5, "row_style": "true"}
    choices, _ = resolve_methods("dice:random[total_cfs=5],dice:random[total_cfs=20],dice:random")
    assert [dict(c.params) for c in choices] == [{"total_cfs": 5}, {"total_cfs": 20}, {}]


def test_a_value_equal_to_the_default_is_the_default_cell():
    """An explicit default is no parameter: same cell, same label, same --resume key."""
    choices, _ = resolve_methods(
        "dice:random[posthoc_sparsity_algorithm=binary],dice:random",
        params=group_params(["dice:random.dice_precision=false"]))
    assert choices == [Choice("dice", "random", ())] and Cell("dice", "random", 0).label == \
        "dice:random"
    # total_cfs defaults to unset (DiCE then optimises k): an explicit number is a parameter,
    # even one equal to k, since the cell then no longer follows k
    choices, _ = resolve_methods("dice:random[total_cfs=1,posthoc_sparsity_param=0.1]")
    assert [method_label(*c) for c in choices] == \
        ["dice:random[posthoc_sparsity_param=0.1,total_cfs=1]"]
    # a variant's own defaults (llm-fewshot:fast batches 50) are its defaults; ints widen
    choices = with_params([("llm-fewshot", "fast", {"batch_size": 50, "max_edits": 3}),
                           ("llm-fewshot", "fast", {"batch_size": 32}),
                           ("llm-fewshot", "default", {"batch_size": 32, "temperature": 1}),
                           ("llm-fewshot", "default", {"batch_size": 50})], [])
    assert [method_label(*c) for c in choices] == [
        "llm-fewshot:fast", "llm-fewshot:fast[batch_size=32]", "llm-fewshot",
        "llm-fewshot[batch_size=50]"]


def test_records_and_resume_agree_with_explicit_defaults(tmp_path):
    """Records and run.json written with an explicit default (before defaults were left out)
    read back as the default cell: same label, done on --resume, same run identity."""
    old = {"method": "dice", "variant": "random", "seed": 0, "query_id": 7,
           "params": {"posthoc_sparsity_algorithm": "binary"}}
    assert record_label(old) == "dice:random"
    assert record_label({**old, "params": {"total_cfs": 3}}) == "dice:random[total_cfs=3]"
    assert record_label({**old, "method": "gone"}) == "gone:random[posthoc_sparsity_algorithm=binary]"

    class FakeTask:
        def queries(self, n):
            import pandas as pd

            return pd.DataFrame({"query_id": [7, 8]})

    choices, _ = resolve_methods("dice:random")
    work = plan(RunConfig(task="x"), FakeTask(), choices, {canonical_key(record_key(old))})
    assert [(c.label, list(q["query_id"])) for c, q in work] == [("dice:random", [8])]

    spec = resolve_spec("breast-cancer")
    cfg = RunConfig(task="breast-cancer", out=tmp_path, params=(
        ("dice", {"posthoc_sparsity_algorithm": "binary"}), ("dice:random", {"total_cfs": 3})))
    info = check_resume(cfg, spec)
    assert info["params"] == [["dice:random", {"total_cfs": 3}]]
    info["params"] = [[t, dict(v)] for t, v in cfg.params]  # as a run.json written before
    info["pairs"] = [["dice", "random", {"posthoc_sparsity_algorithm": "binary", "total_cfs": 3}]]
    info["config"] = {"methods": "dice:random"}
    (tmp_path / "run.json").write_text(json.dumps(info))
    rec = {**old, "k": 1, "provenance": {"task_hash": spec.hash}}
    (tmp_path / "records.jsonl").write_text(json.dumps(rec) + "\n")
    resumed = dataclasses.replace(cfg, resume=True, params=(("dice:random", {"total_cfs": 3}),))
    check_resume(resumed, spec)  # the explicit default does not change the run's identity
    with pytest.raises(UserError, match="params was"):
        check_resume(dataclasses.replace(resumed, params=(("dice:random", {"total_cfs": 4}),)), spec)
    from cfbench.records.runs import pinned_pairs

    assert pinned_pairs(tmp_path, None)[1] == [Choice("dice", "random", (("total_cfs", 3),))]


def test_params_are_part_of_a_cells_identity():
    a = Cell("dice", "random", 0, (("total_cfs", 5),))
    assert a != Cell("dice", "random", 0) and a.label == "dice:random[total_cfs=5]"
    rec = {"method": "dice", "variant": "random", "seed": 0, "query_id": 7, "params": {"total_cfs": 5}}
    assert record_key(rec) != record_key({**rec, "params": {}})
    assert record_key({**rec, "params": {}}) == record_key({k: v for k, v in rec.items() if k != "params"})

    class FakeTask:
        def queries(self, n):
            import pandas as pd

            return pd.DataFrame({"query_id": [7, 8]})

    choices, _ = resolve_methods("dice:random[total_cfs=5],dice:random")
    work = plan(RunConfig(task="x"), FakeTask(), choices, {record_key(rec)})
    todo = {cell.label: list(q["query_id"]) for cell, q in work}
    assert todo == {"dice:random[total_cfs=5]": [8], "dice:random": [7, 8]}


def test_resume_refuses_changed_params(tmp_path):
    spec = resolve_spec("breast-cancer")
    cfg = RunConfig(task="breast-cancer", out=tmp_path, params=(("dice", {"total_cfs": 5}),))
    info = check_resume(cfg, spec)
    (tmp_path / "run.json").write_text(json.dumps(info))
    rec = {"method": "dice", "variant": "random", "seed": 0, "query_id": 1, "k": 1,
           "provenance": {"task_hash": spec.hash}}
    (tmp_path / "records.jsonl").write_text(json.dumps(rec) + "\n")  # a run to resume
    resumed = dataclasses.replace(cfg, resume=True)
    check_resume(resumed, spec)  # same params: fine
    with pytest.raises(UserError, match="cannot resume .*: params was"):
        check_resume(dataclasses.replace(resumed, params=(("dice", {"total_cfs": 20}),)), spec)
    with pytest.raises(UserError, match="params was"):
        check_resume(dataclasses.replace(resumed, params=()), spec)
    old = {k: v for k, v in info.items() if k != "params"}  # a run.json from before params
    (tmp_path / "run.json").write_text(json.dumps(old))
    check_resume(dataclasses.replace(resumed, params=()), spec)


@pytest.mark.slow
def test_cli_refuses_a_bad_param_in_one_line_before_any_work(tmp_path):
    out = tmp_path / "out"
    r = cli("run", "--task", "breast-cancer", "--methods", "nice", "--param", "nice.ae_epoch=3",
            "--out", str(out))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "unknown parameter 'ae_epoch' of method 'nice'; valid parameters: ae_epochs, ae_hidden" in r.stderr
    assert not out.exists()
    r = cli("augment", "--task", "breast-cancer", "--methods", "nice", "--param", "nice.ae_epochs=many",
            "--out", str(out))
    assert r.returncode == 2 and "expected int, got 'many'" in r.stderr and not out.exists()


@pytest.mark.slow
def test_params_reach_records_run_json_and_the_table(tmp_path):
    out = tmp_path / "out"
    r = cli("run", "--task", "breast-cancer", "--methods", "nice:sparsity,nearest-neighbour",
            "--param", "nice.ae_hidden=3", "--n-queries", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {json.dumps(r["params"]) for r in recs if r["method"] == "nice"} == {'{"ae_hidden": 3}'}
    assert all(r["params"] == {} for r in recs if r["method"] == "nearest-neighbour")
    assert json.loads((out / "run.json").read_text())["params"] == [["nice", {"ae_hidden": 3}]]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"nice:sparsity[ae_hidden=3]", "nearest-neighbour"}
    assert "nice:sparsity[ae_hidden=3]" in r.stdout  # rich did not eat the brackets as markup
    r = cli("run", "--task", "breast-cancer", "--methods", "nice:sparsity,nearest-neighbour",
            "--n-queries", "2", "--out", str(out), "--resume")  # the same methods, no --param
    assert r.returncode == 2 and "params was" in r.stderr


def test_list_methods_params_json_and_table():
    r = cli("list", "methods", "--json")
    rows = {x["name"]: x for x in json.loads(r.stdout)}
    assert [p["name"] for p in rows["nice"]["params"]] == ["ae_epochs", "ae_hidden"]
    assert rows["dice"]["params"][0] == {
        "name": "total_cfs", "type": "int", "default": None, "minimum": 1, "maximum": None,
        "exclusive_minimum": None, "choices": None, "description": rows["dice"]["params"][0]["description"]}
    r = cli("list", "methods", "--params")
    assert r.returncode == 0 and "posthoc_sparsity_algorithm" in r.stdout


def test_the_parameter_table_in_the_docs_is_generated():
    """docs/writing-a-plugin.md: the table between the markers is `params_markdown` output."""
    text = DOC.read_text()
    m = re.search(r"<!-- params-table:start -->\n(.*?)<!-- params-table:end -->", text, re.S)
    assert m, "markers missing in docs/writing-a-plugin.md"
    assert m.group(1) == params_markdown(in_tree_specs()), (
        "regenerate with: cfbench list methods --params --format markdown")
