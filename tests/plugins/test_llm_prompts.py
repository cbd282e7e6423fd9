"""Prompt building for the LLM generators: templates, value formats, segments, parsing, examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cfbench_llm.prompts import (
    ExamplePool,
    PromptBuilder,
    ValueFormat,
    load_templates,
    value_formats,
)

from cfbench.core.errors import UserError
from cfbench.core.generator import FitContext
from cfbench.core.schema import FeatureSchema

SCHEMA = FeatureSchema.from_records([
    {"name": "site", "kind": "categorical", "mutable": False, "categories": [0, 1, 2],
     "labels": ["A", "B", "C"]},
    {"name": "age", "unit": "years", "lower": 40, "upper": 100, "mutable": False, "integer": True},
    {"name": "steps", "unit": "steps/day", "lower": 0, "upper": 40000, "actionable": True},
    {"name": "sleep", "unit": "h", "lower": 0, "upper": 14, "actionable": True},
    {"name": "temp_change", "lower": -5, "upper": 5, "direction": "increase-only"},
])


def _X(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "site": rng.integers(0, 3, n).astype(float),
        "age": rng.integers(40, 90, n).astype(float),
        "steps": rng.integers(1000, 15000, n).astype(float),
        "sleep": rng.uniform(4, 9, n),
        "temp_change": rng.uniform(-2, 2, n),
    })


def _builder(**kw) -> PromptBuilder:
    kw.setdefault("row_style", "values")
    X = _X()
    return PromptBuilder(SCHEMA, value_formats(SCHEMA, X), {0: "low", 1: "high"}, "toy",
                         "A toy task.", load_templates(), **kw)


def test_value_formats_follow_data_and_bounds():
    fm = {f.name: f for f in value_formats(SCHEMA, _X())}
    assert fm["site"].choices == ("0", "1", "2")
    assert fm["age"].decimals == 0 and fm["steps"].decimals == 0  # integer flag, whole-number data
    assert fm["sleep"].decimals == 2  # ~6.5 h at 3 significant digits
    assert fm["steps"].int_digits == 5  # 40000
    assert fm["temp_change"].negative and not fm["sleep"].negative
    assert fm["sleep"].format(6.499) == "6.50"
    assert fm["temp_change"].format(-0.001) == "0.00"  # not "-0.00"


def test_an_ordinal_feature_is_written_as_one_of_its_codes():
    """An integer grammar would let the model write 8 vessels where the codes stop at 3."""
    schema = FeatureSchema.from_records([{"name": "ca", "kind": "ordinal", "categories": [0, 1, 2, 3]}])
    (fmt,) = value_formats(schema, pd.DataFrame({"ca": [0.0, 1.0, 3.0]}))
    assert fmt.choices == ("0", "1", "2", "3")
    assert fmt.complete("3") and not fmt.complete("8") and not fmt.prefix_ok("1.")


@pytest.mark.parametrize(
    "text, prefix, complete",
    [("", True, False), ("1", True, True), ("12.", True, False), ("12.5", True, True),
     ("12.55", True, True), ("12.555", False, False), ("123", False, False), ("-", False, False),
     ("05", False, False), ("0.5", True, True), ("1-", False, False), ("..", False, False)],
)
def test_number_grammar(text, prefix, complete):
    fmt = ValueFormat("x", decimals=2, negative=False, int_digits=2)
    assert fmt.prefix_ok(text) is prefix
    assert fmt.complete(text) is complete


def test_negative_and_choice_grammar():
    neg = ValueFormat("t", 1, True, 1)
    assert neg.prefix_ok("-") and not neg.complete("-") and neg.complete("-3.5")
    cat = ValueFormat("c", 0, False, 2, ("3", "12"))
    assert cat.prefix_ok("1") and not cat.complete("1") and cat.complete("12") and not cat.prefix_ok("4")
    assert neg.max_chars == 4 and cat.max_chars == 2


def test_instructions_name_every_feature_and_constraint():
    text = _builder().instructions()
    for name in SCHEMA.names:
        assert f"- {name}:" in text
    assert "0 = A, 1 = B, 2 = C; immutable" in text
    assert "[steps/day], range 0 to 40000; actionable" in text
    assert "can only increase" in text
    assert '"low" or "high"' in text


def test_segments_copy_immutables_and_slot_mutables():
    b = _builder()
    x = [2, 63, 8200, 6.5, 1.25]
    head, tail = b.query_text(x, 1, 0)
    assert head == "Patient (high): 2,63,8200,6.50,1.25\nCounterfactual (low): " and tail == "\n"
    segs = b.cf_segments(x, tail)
    assert [s.slot for s in segs] == [-1, 2, -1, 3, -1, 4, -1]
    assert segs[0].text == "2,63," and segs[-1].text == "\n"
    named = _builder(row_style="named").cf_segments(x, tail)
    assert named[0].text == "site=2,age=63,steps=" and named[2].text == ",sleep="
    js = _builder(row_style="json")  # the default: JSON rows, keys written by the harness
    jhead, jtail = js.query_text(x, 1, 0)
    assert jhead == 'Patient (high): {"site": 2, "age": 63, "steps": 8200, "sleep": 6.50, "temp_change": 1.25}\nCounterfactual (low): '
    jsegs = js.cf_segments(x, jtail)
    assert [s.text for s in jsegs if s.slot < 0] == ['{"steps": ', ', "sleep": ', ', "temp_change": ', "}\n"]
    assert [s.slot for s in jsegs if s.slot >= 0] == [2, 3, 4]  # immutables are not generated at all


def test_record_and_json_roundtrip():
    b = _builder()
    x, cf = [1, 50, 4000, 5.0, 0.0], [1, 50, 9000, 7.25, 0.5]
    rec = b.record(x, 1, 0, cf)
    assert rec.endswith("Counterfactual (low): 1,50,9000,7.25,0.50\n")
    rj = b.record_json(x, 1, 0, cf)
    assert rj.startswith('Patient (high): {"site": 1, "age": 50, "steps": 4000, "sleep": 5.00, "temp_change": 0.00}\n')
    js = b.cf_json(cf)
    assert js == '{"steps": 9000, "sleep": 7.25, "temp_change": 0.50}'
    parsed, why = b.parse_json("sure: " + js + " done", x)
    assert why == "" and parsed.tolist() == [1, 50, 9000, 7.25, 0.5]


@pytest.mark.parametrize(
    "text, reason",
    [("no json here", "no JSON object"), ('{"steps": 1, "sleep": 2', "invalid JSON"),
     ('{"steps": 1, "sleep": 2}', "missing feature 'temp_change'"),
     ('{"steps": "many", "sleep": 2, "temp_change": 0}', "not a number"),
     ('{"steps": true, "sleep": 2, "temp_change": 0}', "not a finite number"),
     ("[1, 2]", "no JSON object")],
)
def test_parse_json_failures_say_why(text, reason):
    cf, why = _builder().parse_json(text, [0, 50, 1, 1, 0])
    assert cf is None and reason in why


def test_template_override_and_bad_field(tmp_path):
    (tmp_path / "record.txt").write_text("P[{source}] {patient}\nCF[{target}] {counterfactual};\n")
    b = PromptBuilder(SCHEMA, value_formats(SCHEMA, _X()), {0: "low", 1: "high"}, "toy", "", load_templates(tmp_path),
                      row_style="values")
    head, tail = b.query_text([0, 50, 1, 1, 0], 0, 1)
    assert head.startswith("P[low] 0,50,1,1.00,0.00\nCF[high] ") and tail == ";\n"
    (tmp_path / "feature.txt").write_text("- {name} {colour}\n")
    with pytest.raises(UserError, match=r"unknown field \{colour\}"):
        load_templates(tmp_path)
    with pytest.raises(UserError, match="not a folder"):
        load_templates(tmp_path / "nope")


def test_prompt_dir_from_environment(tmp_path, monkeypatch):
    (tmp_path / "instructions.txt").write_text("CUSTOM {task_name}\n")
    monkeypatch.setenv("CFBENCH_PROMPT_DIR", str(tmp_path))
    assert load_templates()["instructions"] == "CUSTOM {task_name}\n"


def test_builder_rejects_bad_style_and_separator():
    with pytest.raises(UserError, match="row_style"):
        _builder(row_style="table")
    with pytest.raises(UserError, match="sep"):
        _builder(sep=".")


def _context() -> FitContext:
    X = _X(200, seed=1)
    y = (X["steps"] < 7000).astype(int).to_numpy()  # "high" = few steps

    def proba(df: pd.DataFrame) -> np.ndarray:
        p1 = (df["steps"].to_numpy() < 7000).astype(float)
        return np.c_[1 - p1, p1]

    schema = SCHEMA.with_data_bounds(X)
    return FitContext(X, y, proba, schema, seed=0, task_name="toy", class_names={0: "low", 1: "high"})


def test_example_pool_pairs_are_constrained_nearest_unlike_neighbours():
    ctx = _context()
    pool = ExamplePool(50, seed=0).fit(ctx)
    assert len(pool) > 10
    imm = ~ctx.schema.mask("mutable")
    for i in range(len(pool)):
        x, s, t, cf = pool.pair(i)
        assert t == 1 - s
        assert np.array_equal(x[imm], cf[imm])  # immutables kept
        assert ctx.predict(pd.DataFrame([cf], columns=ctx.schema.names))[0] == t  # a real CF
        assert cf[4] >= x[4] - 1e-12  # increase-only respected
    fixed = pool.fixed(3, seed=5)
    assert len(fixed) == 6 and [pool.source_[i] for i in fixed] == [0, 1, 0, 1, 0, 1]
    assert fixed == pool.fixed(3, seed=5) and fixed != pool.fixed(3, seed=6)
    x0 = pool.X_[fixed[0]]
    near = pool.nearest(x0, int(pool.source_[fixed[0]]), 3)
    assert near[-1] == fixed[0]  # the closest (itself) comes last, next to the query


def test_sparse_pool_keeps_only_the_changes_the_flip_needs():
    ctx = _context()
    dense = ExamplePool(50, seed=0).fit(ctx)
    sparse = ExamplePool(50, seed=0, sparse=True).fit(ctx)
    assert np.array_equal(dense.X_, sparse.X_)
    changed = lambda pool: (pool.cf_ != pool.X_).sum(axis=1)  # noqa: E731
    assert (changed(sparse) <= changed(dense)).all() and changed(sparse).mean() < changed(dense).mean()
    for i in range(len(sparse)):
        x, _, t, cf = sparse.pair(i)
        assert ctx.predict(pd.DataFrame([cf], columns=ctx.schema.names))[0] == t  # still a CF
        for j in np.flatnonzero(cf != x):  # and each remaining change is needed
            back = cf.copy()
            back[j] = x[j]
            assert ctx.predict(pd.DataFrame([back], columns=ctx.schema.names))[0] != t


def test_edits_records_name_only_changed_features():
    b = _builder(row_style="json", cf_style="edits")
    x = np.array([0, 40, 5000, 7.0, 120.0])
    cf = x.copy()
    cf[2] = 8000
    rec = b.record(x, 1, 0, cf)
    line = rec.split("Counterfactual")[1]
    assert '"steps": 8000' in line and "sleep" not in line and "age" not in line
    assert "only the features it changes" in b.instructions()
    assert b.parse_json('{"steps": 9000}', x)[0][2] == 9000
    assert b.parse_json('{"age": 50}', x) == (None, "not a mutable feature: 'age'")
    assert b.parse_json("{}", x) == (None, "no feature changed")
    with pytest.raises(UserError, match="cf_style"):
        _builder(cf_style="diff")


def test_feedback_writes_rejected_candidates_as_the_model_writes_them():
    """Rows for the values style, JSON of the mutable features for the JSON style and the API
    (``json_format``), the changed features for edits; an API round ends its last user message."""
    x = np.array([0, 40, 5000, 7.0, 1.0])
    cf = x.copy()
    cf[2] = 8000
    values, js, edits = _builder(), _builder(row_style="json"), _builder(cf_style="edits")
    assert values.feedback(x, 1, 0, [cf]).endswith(": 0,40,8000,7.00,1.00\n")
    as_json = '{"steps": 8000, "sleep": 7.00, "temp_change": 1.00}'
    assert js.feedback(x, 1, 0, [cf]).endswith(f": {as_json}\n")
    assert values.feedback(x, 1, 0, [cf], json_format=True).endswith(f": {as_json}\n")
    assert edits.feedback(x, 1, 0, [cf, cf], json_format=True).endswith(': {"steps": 8000}; {"steps": 8000}\n')
    note = js.feedback(x, 1, 0, [cf])
    plain, noted = js.api_messages(x, 1, 0), js.api_messages(x, 1, 0, note=note)
    assert noted[:-1] == plain[:-1] and noted[-1]["content"] == plain[-1]["content"].rstrip("\n") + "\n" + note
    assert noted[-1]["content"].count("Rejected (") == 1
