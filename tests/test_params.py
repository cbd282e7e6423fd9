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

from cfbench.errors import UserError
from cfbench.generator import GeneratorSpec, Param, params_markdown, validate_params
from cfbench.plugins import registry
from cfbench.runner import (
    Cell,
    RunConfig,
    check_resume,
    method_label,
    plan,
    resolve_methods,
    with_params,
)
from cfbench.store import record_key
from cfbench.suite import group_params, parse_param, split_selection
from cfbench.task import resolve_spec

IN_TREE = ("builtin", "dice", "cfnow", "nice", "llm")
DOC = Path(__file__).parent.parent / "docs" / "writing-a-plugin.md"


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
    with pytest.raises((TypeError, UserError)):
        spec.factory(spec.variants[0], no_such_parameter=1)


@pytest.mark.parametrize("spec", in_tree_specs(), ids=lambda s: s.name)
def test_every_declared_default_is_accepted_by_the_factory(spec):
    defaults = {p.name: p.default for p in spec.params}
    spec.build(spec.variants[-1], defaults)  # raises TypeError if a declared name is not accepted


@pytest.mark.parametrize("module, cls, plugin", [
    ("cfbench_dice.generator", "DiceGenerator", "cfbench_dice"),
    ("cfbench_cfnow.generator", "CfnowGenerator", "cfbench_cfnow"),
    ("cfbench_nice.nice", "NICE", "cfbench_nice"),
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
    assert by["random"] == {"total_cfs": 4, "posthoc_sparsity_algorithm": "binary"}  # variant wins
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
        "choices": None, "description": rows["dice"]["params"][0]["description"]}
    r = cli("list", "methods", "--params")
    assert r.returncode == 0 and "posthoc_sparsity_algorithm" in r.stdout


def test_the_parameter_table_in_the_docs_is_generated():
    """docs/writing-a-plugin.md: the table between the markers is `params_markdown` output."""
    text = DOC.read_text()
    m = re.search(r"<!-- params-table:start -->\n(.*?)<!-- params-table:end -->", text, re.S)
    assert m, "markers missing in docs/writing-a-plugin.md"
    assert m.group(1) == params_markdown(in_tree_specs()), (
        "regenerate with: cfbench list methods --params --format markdown")
