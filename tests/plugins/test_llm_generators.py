"""The llm-* generators end to end on a real task (heart), with a tiny random model.

A random model writes nonsense, which is the point: constrained variants must still return a
well-formed counterfactual for every query (immutables copied, values parsed), and free-text
variants must report what does not parse as ``invalid_output`` with the raw text kept.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from cfbench_llm import finetune as ft  # noqa: E402
from cfbench_llm import finetune_run  # noqa: E402
from cfbench_llm.generator import LocalLLM  # noqa: E402
from cfbench_llm.testing import tiny_model_dir  # noqa: E402
from cfbench_llm.verify import Verifier  # noqa: E402

from cfbench.cli.app import main  # noqa: E402
from cfbench.core.errors import UserError  # noqa: E402
from cfbench.core.plugins import registry  # noqa: E402
from cfbench.tasks.spec import Task, resolve_spec  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_model_dir(tmp_path_factory.mktemp("tiny"), seed=1, sliding_window=32))


@pytest.fixture(scope="module")
def heart():
    task = Task.load(resolve_spec("heart"))
    q = task.queries(n_per_class=3)
    return task, q


def _run(task, q, mode, variant, tmp_path, **params):
    ctx = task.fit_context(seed=0)
    ctx.cache_dir = tmp_path
    gen = LocalLLM(mode, variant, **params).fit(ctx)
    res = gen.generate(q[task.schema.names], q.target.to_numpy(), 1, 10.0)
    return gen, res


@pytest.mark.parametrize("cf_style", ["edits", "full"])
@pytest.mark.parametrize("mode, variant", [("zeroshot", "default"), ("fewshot", "default"), ("fewshot", "retrieval"),
                                           ("fewshot", "fast")])
@pytest.mark.slow
def test_constrained_variants_always_give_a_parsed_cf(heart, tiny, tmp_path, mode, variant, cf_style):
    task, q = heart
    gen, res = _run(task, q, mode, variant, tmp_path, model=tiny, batch_size=4, cf_style=cf_style)
    assert len(res) == len(q)
    names = task.schema.names
    imm = task.schema.immutable
    for (_, row), r in zip(q.iterrows(), res, strict=True):
        assert r.status == "ok", r.reason
        assert list(r.cfs.columns) == names and r.cfs.shape == (1, len(names))
        assert np.isfinite(r.cfs.to_numpy()).all()
        for f in imm:  # copied, never generated
            assert r.cfs[f].iloc[0] == row[f]
        for f in task.schema:
            if f.kind == "categorical":
                assert r.cfs[f.name].iloc[0] in f.categories
        assert r.raw and r.raw.endswith("\n")
        assert r.extra["new_tokens"] > 0 and r.extra["prompt_tokens"] > 0
        assert r.extra["dtype"] == str(gen.dtype_).removeprefix("torch.")
    examples = gen.prefix_text_.count("Counterfactual (")
    assert examples == (6 if variant in ("default", "fast") and mode == "fewshot" else 0)


def test_edits_change_at_most_max_edits_mutable_features(heart, tiny, tmp_path):
    task, q = heart
    _, res = _run(task, q, "fewshot", "default", tmp_path, model=tiny, cf_style="edits", max_edits=2,
                  quantize="int8")
    names = task.schema.names
    mutable = set(task.schema.mutable)
    for (_, row), r in zip(q.iterrows(), res, strict=True):
        assert r.status == "ok"
        edited = r.extra["edited"]
        assert 1 <= len(edited) <= 2 and set(edited) <= mutable and len(set(edited)) == len(edited)
        changed = {n for n in names if r.cfs[n].iloc[0] != row[n]}
        assert changed <= set(edited)  # a feature not named keeps the query's exact value
        assert r.raw.startswith('{"') and r.raw.endswith("}\n")


def test_freetext_failures_are_invalid_output_with_raw_text(heart, tiny, tmp_path):
    task, q = heart
    _, res = _run(task, q, "fewshot", "freetext", tmp_path, model=tiny, max_new_tokens=20)
    assert {r.status for r in res} <= {"ok", "invalid_output"}
    bad = [r for r in res if r.status == "invalid_output"]
    assert bad, "a random tiny model should not write valid JSON"
    for r in bad:
        assert r.cfs is None and r.raw is not None and "not parsed" in r.reason


def test_clip_counts_what_it_changes(heart, tiny, tmp_path):
    task, q = heart
    _, res = _run(task, q, "zeroshot", "default", tmp_path, model=tiny, clip=True)
    lo, hi = task.schema.bounds()
    for r in res:
        v = r.cfs.to_numpy()[0]
        assert (v >= lo).all() and (v <= hi).all()
        assert r.extra["clipped"] >= 0


def test_bad_parameters_are_user_errors():
    with pytest.raises(UserError, match="unknown parameter 'temprature' of method 'llm-zeroshot'"):
        LocalLLM("zeroshot", temprature=0.5)
    with pytest.raises(UserError, match="batch_size: expected a positive integer"):
        LocalLLM("zeroshot", batch_size=0)
    with pytest.raises(UserError, match="valid choices: default, freetext"):
        LocalLLM("zeroshot", "retrieval")
    with pytest.raises(UserError, match="quantize: got 'int4'; valid choices: none, int8"):
        LocalLLM("fewshot", quantize="int4")
    with pytest.raises(UserError, match="max_edits: expected a non-negative integer"):
        LocalLLM("fewshot", max_edits=-1)
    with pytest.raises(UserError, match="dtype: got 'float16'; valid choices: auto, float32, bfloat16"):
        LocalLLM("fewshot", dtype="float16")
    with pytest.raises(UserError, match="quantize='int8' needs dtype 'float32'"):
        LocalLLM("fewshot", "fast", dtype="bfloat16", quantize="int8")
    # llm-finetuned's adapter is trained on full rows: it does not take cf_style at all
    with pytest.raises(UserError, match="unknown parameter 'cf_style' of method 'llm-finetuned'"):
        LocalLLM("finetuned", cf_style="edits")


def test_methods_are_registered_with_variants():
    reg = registry()
    assert reg.generator("llm-fewshot").variants == ("default", "retrieval", "freetext", "fast", "verified")
    assert reg.generator("llm-finetuned").extra == "llm"
    caps = reg.generator("llm-zeroshot").capabilities
    assert caps.batch_size and caps.batch_size > 1


def test_finetune_trains_caches_and_generates(heart, tiny, tmp_path, monkeypatch):
    task, q = heart
    params = dict(model=tiny, pairs=12, epochs=4, lr=2e-2, ft_batch=4, rank=4)
    gen, res = _run(task, q, "finetuned", "default", tmp_path, **params)
    info = gen.finetune_info_
    assert info["pairs"] == 12 and info["steps"] == 12 and len(info["losses"]) == 12
    assert np.mean(info["losses"][-3:]) < np.mean(info["losses"][:3])  # it learns the pairs
    assert all(r.status == "ok" for r in res)
    adapters = list((tmp_path / "llm" / "adapters").glob("heart-*/meta.json"))
    assert len(adapters) == 1
    assert json.loads(adapters[0].read_text())["key"]["task"] == "heart"

    def no_training(*a, **k):
        raise AssertionError("the cached adapter should have been reused")

    monkeypatch.setattr(ft, "train", no_training)
    gen2, res2 = _run(task, q, "finetuned", "default", tmp_path, **params)
    assert gen2.finetune_info_["losses"] == info["losses"]
    assert [r.raw for r in res2] == [r.raw for r in res]  # same adapter, same greedy output
    with pytest.raises(AssertionError, match="cached adapter"):  # other settings -> a new adapter
        _run(task, q, "finetuned", "default", tmp_path, **{**params, "rank": 2})


def test_finetune_command_is_registered(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["finetune", "--help"])
    assert exc.value.code == 0
    assert "--task" in capsys.readouterr().out
    assert main(["finetune", "--task", "no-such-task"]) == 2
    assert "unknown task 'no-such-task'" in capsys.readouterr().err


def _copying(monkeypatch):
    """Make the engine prefer, wherever the grammar allows it, the query's own value: a model
    that copies the patient (what the zero-shot variant did on the board)."""
    from cfbench_llm.engine import Engine, Slot

    orig = Engine._choose

    def choose(self, hidden, row, need, progs, slot_i, text):
        out = orig(self, hidden, row, need, progs, slot_i, text)
        for b in need:
            slot = progs[b].slots[slot_i[b]]
            if not isinstance(slot, Slot) or slot.fmt is None or slot.query is None:
                continue
            want = slot.fmt.format(slot.query)
            ids, texts = self._allowed_for(slot.fmt, text[b], slot.terminators, progs[b].forbidden(slot))
            if text[b] == want and slot.terminators[0] in ids:
                out[b] = (slot.terminators[0], "")
            elif want.startswith(text[b]) and want[len(text[b])] in texts:
                j = texts.index(want[len(text[b])])
                out[b] = (ids[j], texts[j])
        return out

    monkeypatch.setattr(Engine, "_choose", choose)


@pytest.mark.parametrize("cf_style", ["full", "edits"])
@pytest.mark.parametrize("k", [1, 2])
def test_a_copying_model_still_changes_a_mutable_feature(heart, tiny, tmp_path, monkeypatch, cf_style, k):
    task, q = heart
    _copying(monkeypatch)
    ctx = task.fit_context(seed=0)
    ctx.cache_dir = tmp_path
    gen = LocalLLM("zeroshot", model=tiny, batch_size=8, cf_style=cf_style).fit(ctx)
    res = gen.generate(q[task.schema.names], q.target.to_numpy(), k, 10.0)
    mutable = task.schema.mutable
    for (_, row), r in zip(q.iterrows(), res, strict=True):
        assert r.status == "ok"
        for _, cf in r.cfs.iterrows():
            assert any(cf[f] != row[f] for f in mutable), r.raw
    from cfbench_llm.engine import Program

    monkeypatch.setattr(Program, "forbidden", lambda self, slot: None)  # the rule off: copies
    res = gen.generate(q[task.schema.names], q.target.to_numpy(), 1, 10.0)
    assert all(r.cfs[mutable].iloc[0].tolist() == row[mutable].tolist() for (_, row), r in zip(q.iterrows(), res,
                                                                                              strict=True))


def test_k_above_one_samples_distinct_seeded_cfs(heart, tiny, tmp_path):
    task, q = heart
    names = task.schema.names

    def run(seed, k=3):
        ctx = task.fit_context(seed=seed)
        ctx.cache_dir = tmp_path
        gen = LocalLLM("fewshot", model=tiny, batch_size=16, cf_style="edits", max_edits=2).fit(ctx)
        return gen.generate(q[names], q.target.to_numpy(), k, 10.0)

    a, b, c = run(0), run(0), run(1)
    many = 0
    for r in a:
        assert r.status == "ok" and 1 <= len(r.cfs) <= 3
        rows = [tuple(v) for v in r.cfs.to_numpy()]
        assert len(set(rows)) == len(rows)  # distinct
        assert r.extra["samples"] == 9 and r.extra["distinct"] >= len(rows)
        many += len(rows) > 1
    assert many >= len(a) // 2  # a random model at temperature 1 rarely repeats itself
    for r1, r2 in zip(a, b, strict=True):
        assert r1.cfs.equals(r2.cfs) and r1.raw == r2.raw  # same seed, same CFs
    assert any(not r1.cfs.equals(r3.cfs) for r1, r3 in zip(a, c, strict=True))  # another seed, others
    greedy = run(0, k=1)
    assert all(len(r.cfs) == 1 and "samples" not in r.extra for r in greedy)


def test_sampling_parameters_are_validated():
    with pytest.raises(UserError, match="temperature: expected a number >= 0"):
        LocalLLM("zeroshot", temperature=-1.0)
    with pytest.raises(UserError, match="samples: expected a non-negative integer"):
        LocalLLM("zeroshot", samples=-2)
    assert registry().generator("llm-fewshot").capabilities.multiple


def _verified(task, tmp_path, tiny, **params):
    ctx = task.fit_context(seed=0)
    ctx.cache_dir = tmp_path
    return LocalLLM("fewshot", "verified", model=tiny, batch_size=64, quantize="none", **params).fit(ctx)


def test_verified_returns_only_what_the_classifier_accepts(heart, tiny, tmp_path):
    task, q = heart
    gen = _verified(task, tmp_path, tiny)
    # a stand-in classifier: class 1 for every row, so queries aiming at 1 accept every
    # candidate and queries aiming at 0 reject every one, round after round
    gen.verifier_.predict_proba = lambda X: np.tile([0.2, 0.8], (len(X), 1))
    notes = []
    feedback = gen.builder_.feedback
    gen.builder_.feedback = lambda *a: notes.append(feedback(*a)) or notes[-1]
    res = gen.generate(q[task.schema.names], q.target.to_numpy(), 2, 10.0)
    for (_, row), r in zip(q.iterrows(), res, strict=True):
        if row["target"] == 1:
            assert r.status == "ok" and r.extra["rounds"] == 1 and r.extra["samples"] == 8
            assert 1 <= len(r.cfs) <= 2 and len({tuple(v) for v in r.cfs.to_numpy()}) == len(r.cfs)
            d = [gen.verifier_.distance(row[task.schema.names].to_numpy(float), c) for c in r.cfs.to_numpy()]
            assert d[0] == min(gen.verifier_.distance(row[task.schema.names].to_numpy(float), c)
                               for c in r.cfs.to_numpy())
        else:
            assert r.status == "not_found" and r.cfs is None
            assert {k: r.extra[k] for k in ("samples", "rounds", "valid_candidates")} == {
                "samples": 32, "rounds": 4, "valid_candidates": 0}
            assert r.extra["new_tokens"] > 0
    # every later round of a rejected query told the model what was rejected
    assert len(notes) == 3 * int((q["target"] == 0).sum())
    assert all(n.startswith('Rejected (the classifier still assigns "') for n in notes)


def test_verified_on_the_real_classifier_keeps_only_valid_cfs(heart, tiny, tmp_path):
    task, q = heart
    gen = _verified(task, tmp_path, tiny, rounds=2)
    res = gen.generate(q[task.schema.names], q.target.to_numpy(), 1, 10.0)
    ok = [i for i, r in enumerate(res) if r.status == "ok"]
    assert ok, "8 random candidates x 2 rounds should find some valid CF on heart"
    cfs = pd.concat([res[i].cfs for i in ok])
    assert (task.predict(cfs) == q.target.to_numpy()[ok]).all()
    again = gen.generate(q[task.schema.names], q.target.to_numpy(), 1, 10.0)
    assert all((a.cfs is None and b.cfs is None) or a.cfs.equals(b.cfs) for a, b in zip(res, again, strict=True))


def test_verified_shortens_valid_candidates_with_the_classifier(heart, tiny, tmp_path):
    """Unneeded changes are reverted and a needed one moved toward the query while valid."""
    task, _ = heart
    gen = _verified(task, tmp_path, tiny)
    names = task.schema.names
    chol, bps = names.index("chol"), names.index("trestbps")
    gen.verifier_.classes = np.array([0, 1])
    # a stand-in classifier: class 1 exactly when chol >= 300
    gen.verifier_.predict_proba = lambda X: np.where((np.asarray(X)[:, chol] >= 300)[:, None], [0.1, 0.9], [0.9, 0.1])
    x = np.array([60, 1, 2, 130, 250, 0, 1, 150, 0, 1.0, 2, 0, 3], dtype=float)
    c = x.copy()
    c[chol], c[bps] = 500, 150
    lone = x.copy()
    lone[bps] = 140  # invalid as it stands; a query never reaches refine with it, but be safe
    [[(d, row, tag)], [(_, row2, _)]] = gen.verifier_.refine(np.stack([x, x]), np.array([1, 1]),
                                                      [[(0.0, c, "a")], [(0.0, lone, "b")]])
    assert tag == "a" and row[bps] == x[bps]  # the unneeded change is reverted
    assert 300 <= row[chol] <= 300 + (500 - 250) / 2 ** 5  # the needed one shortened, still valid
    assert (np.delete(row, chol) == np.delete(x, chol)).all() and d == gen.verifier_.distance(x, row)
    assert not (row2 == x).all()  # never shortened back to the query itself


def _two_feature_classifier(gen, names):
    """A stand-in classifier: class 1 exactly when chol >= 300 *and* thalach >= 170; each of
    the two alone raises the probability of class 1 from 0.1 to 0.4."""
    chol, thalach = names.index("chol"), names.index("thalach")
    gen.verifier_.classes = np.array([0, 1])

    def proba(X):
        X = np.asarray(X, dtype=float)
        p1 = 0.1 + 0.3 * (X[:, chol] >= 300) + 0.3 * (X[:, thalach] >= 170)
        return np.column_stack([1 - p1, p1])

    gen.verifier_.predict_proba = proba
    return chol, thalach


def test_compose_merges_the_edits_the_classifier_needs(heart, tiny, tmp_path):
    """No candidate changes both features the classifier needs; their merge, best single edit
    first, does, with the model's own values, and only as many edits as it takes."""
    from cfbench_llm.verify import QueryResult

    task, _ = heart
    gen = _verified(task, tmp_path, tiny)
    names = task.schema.names
    chol, thalach = _two_feature_classifier(gen, names)
    bps, oldpeak = names.index("trestbps"), names.index("oldpeak")
    x = np.array([60, 1, 2, 130, 250, 0, 1, 150, 0, 1.0, 2, 0, 3], dtype=float)

    def cand(tag, **change):
        row = x.copy()
        for k, v in change.items():
            row[names.index(k)] = v
        return (0.4, row, QueryResult.ok(pd.DataFrame([row], columns=names), raw=tag, extra={"edited": list(change)}))

    pool = [[cand("A", trestbps=150, chol=320), cand("B", thalach=180), cand("C", oldpeak=0.5)], [cand("D", chol=310)]]
    out = gen.verifier_.compose(np.stack([x, x]), np.array([1, 1]), [0, 1], pool)
    assert len(out) == 1  # the second query's one edit cannot be merged into a valid CF
    q, row, res = out[0]
    assert q == 0 and res.status == "ok"
    assert row[chol] == 320 and row[thalach] == 180  # the values the model wrote
    assert row[bps] == x[bps] and row[oldpeak] == x[oldpeak]  # no edit it did not need
    assert res.extra["composed_of"] == 2 and res.extra["edited"] == ["chol", "thalach"]
    assert res.raw == "A\nB" and gen.verifier_.predict(row[None])[0] == 1
    gen.verifier_.directions = np.where(np.array(names) == "thalach", -1, 0)  # thalach may only fall
    assert gen.verifier_.compose(np.stack([x, x]), np.array([1, 1]), [0, 1], pool) == []


def test_steer_ranks_features_by_the_classifier_within_directions(heart, tiny, tmp_path):
    task, _ = heart
    gen = _verified(task, tmp_path, tiny)
    names = task.schema.names
    chol, thalach = _two_feature_classifier(gen, names)
    x = np.array([60, 1, 2, 130, 250, 0, 1, 150, 0, 1.0, 2, 0, 3], dtype=float)
    typical = np.tile(x, (3, 1))
    typical[:, chol], typical[:, thalach] = [280, 320, 340], [160, 175, 190]
    gen.verifier_.typical = {0: typical, 1: typical}
    mutable = [j for j, f in enumerate(task.schema) if f.mutable]
    [rank] = gen.verifier_.steer(x[None], np.array([1]))
    assert sorted(rank.tolist()) == mutable  # every mutable feature, once; no immutable one
    assert set(rank[:2].tolist()) == {chol, thalach}
    gen.verifier_.directions = np.where(np.array(names) == "thalach", -1, 0)
    [rank] = gen.verifier_.steer(x[None], np.array([1]))
    assert rank[0] == chol and rank[1] != thalach  # a rise of thalach is against its direction


def test_verified_steers_sampled_candidates_and_can_be_told_not_to(heart, tiny, tmp_path):
    """The greedy draw is the model's own; each sampled draw opens with the feature ranked for it."""
    task, q = heart
    q = q.head(2)
    names = task.schema.names
    for steer in (True, False):
        gen = _verified(task, tmp_path, tiny, steer=steer, rounds=1)
        ranks = gen.verifier_.steer(q[names].to_numpy(float), q.target.to_numpy())
        seen = []
        decode = gen._decode
        gen._decode = lambda *a, seen=seen, decode=decode, **kw: seen.append(kw["first"]) or decode(*a, **kw)
        res = gen.generate(q[names], q.target.to_numpy(), 1, 10.0)
        [first] = seen
        if not steer:
            assert first is None
            continue
        assert [f[0] for f in first] == [None, None]
        assert [f[1:] for f in first] == [r[:7].tolist() for r in ranks]
        assert all(r.status in ("ok", "not_found") for r in res)


def test_closest_diverse_prefers_new_feature_sets():
    x = np.zeros(3)
    found = [(1.0, np.array([1.0, 0, 0]), "a"), (1.1, np.array([1.1, 0, 0]), "b"),
             (2.0, np.array([0, 2.0, 0]), "c"), (1.0, np.array([1.0, 0, 0]), "dup")]
    pick = Verifier.closest_diverse(x, found, 3)
    assert [p[2] for p in pick] == ["a", "c", "b"]
    assert [p[2] for p in Verifier.closest_diverse(x, found, 1)] == ["a"]


def test_verified_parameters_are_declared_and_validated():
    spec = registry().generator("llm-fewshot")
    assert "verified" in spec.variants and spec.variant_defaults["verified"]["samples"] == 8
    with pytest.raises(UserError, match="rounds: expected a positive integer"):
        LocalLLM("fewshot", "verified", rounds=0)
    with pytest.raises(UserError, match="rounds"):
        LocalLLM("zeroshot", rounds=2)
    with pytest.raises(UserError, match="llm parameter steer: expected true or false, got 'yes'"):
        LocalLLM("fewshot", "verified", steer="yes")  # a switch is a bool, not a truthy string
    with pytest.raises(UserError, match="llm parameter compose: expected true or false, got 0"):
        LocalLLM("fewshot", "verified", compose=0)


def test_verified_drops_candidates_that_break_bounds_or_directions(heart, tiny, tmp_path):
    task, _ = heart
    gen = _verified(task, tmp_path, tiny)
    names = task.schema.names
    x = np.array([60, 1, 2, 130, 250, 0, 1, 150, 0, 1.0, 2, 0, 3], dtype=float)
    C = np.tile(x, (4, 1))
    C[0, names.index("chol")] = 700  # changed beyond its upper bound 600
    C[1, names.index("chol")] = 300  # changed within bounds
    C[2, names.index("trestbps")] = 130  # unchanged
    gen.verifier_.directions = np.where(np.array(names) == "thalach", 1, 0)  # thalach may only increase
    C[3, names.index("thalach")] = 140
    X = np.tile(x, (4, 1))
    X[2, names.index("trestbps")] = C[2, names.index("trestbps")] = 300  # the patient's own value is out of bounds
    assert gen.verifier_.breaks_constraints(X, C).tolist() == [True, False, False, True]
    assert gen.settings.clip  # the verified preset clips candidates to the bounds first


@pytest.mark.slow
def test_adapter_key_follows_the_classifier(heart):
    """Teachers come from the classifier's predictions: another model, another adapter."""
    from types import SimpleNamespace

    from cfbench_llm.settings import Settings

    task, _ = heart
    ctx = task.fit_context(seed=0)
    builder = SimpleNamespace(templates={"finetune": "f", "record": "r"})
    key = ft.adapter_key(ctx, Settings(), builder)
    assert key == ft.adapter_key(task.fit_context(seed=0), Settings(), builder)
    other = task.fit_context(seed=0)
    other.predict_proba = lambda X: 1.0 - task.predict_proba(X)
    changed = ft.adapter_key(other, Settings(), builder)
    assert changed["classifier"] != key["classifier"] and changed["data"] == key["data"]
    assert ft.adapter_dir(other, changed) != ft.adapter_dir(ctx, key)


@pytest.mark.slow
def test_adapter_key_follows_the_prototype_margin(heart, monkeypatch):
    """The prototype teacher's margin shapes every teacher CF: another margin, another adapter
    (and the margin of 0.7 keeps the key adapters had before the margin was part of it)."""
    from types import SimpleNamespace

    from cfbench_llm.settings import Settings

    task, _ = heart
    ctx = task.fit_context(seed=0)
    builder = SimpleNamespace(templates={"finetune": "f", "record": "r"})
    monkeypatch.setattr(ft, "PROTOTYPE_MARGIN", 0.7)
    old = ft.adapter_key(ctx, Settings(), builder)
    assert "prototype_margin" not in old
    monkeypatch.setattr(ft, "PROTOTYPE_MARGIN", 0.85)
    new = ft.adapter_key(ctx, Settings(), builder)
    assert new["prototype_margin"] == 0.85 and ft.adapter_dir(ctx, new) != ft.adapter_dir(ctx, old)
    assert "prototype_margin" not in ft.adapter_key(ctx, Settings(teacher="sparse"), builder)


def _layer_calls(monkeypatch):
    """Count the forward calls of the first decoder layer's MLP in every model ``models.load`` gives
    (inside the layer: a checkpointed layer's own hooks stay outside its recomputation)."""
    from cfbench_llm import models

    calls = []
    load = models.load

    def counting(*a, **k):
        model, tok = load(*a, **k)
        model.get_decoder().layers[0].mlp.register_forward_hook(lambda *_: calls.append(1))
        return model, tok

    monkeypatch.setattr(models, "load", counting)
    return calls


def test_checkpointing_recomputes_but_trains_the_same_adapter(heart, tiny, tmp_path, monkeypatch):
    """Activation checkpointing is a memory-only change: the layers run twice per step, and the
    loss curve and the adapter's weights are those of training without it."""
    from cfbench_llm.prompts import PromptBuilder, load_templates, value_formats
    from cfbench_llm.settings import Settings
    from safetensors.torch import load_file

    task, _ = heart
    ctx = task.fit_context(seed=0)
    ctx.cache_dir = tmp_path
    calls = _layer_calls(monkeypatch)
    out = {}
    for on in (False, True):
        s = Settings.from_params(dict(model=tiny, pairs=8, epochs=1, ft_batch=4, rank=4, lr=2e-2, checkpointing=on))
        builder = PromptBuilder(ctx.schema, value_formats(ctx.schema, ctx.X_train, s.digits), ctx.class_names,
                                ctx.task_name, ctx.task_description, load_templates(None))
        calls.clear()
        info = ft.train(ctx, s, builder, tmp_path / f"ckpt-{on}")
        out[on] = (info, load_file(str(tmp_path / f"ckpt-{on}" / "adapter_model.safetensors")), len(calls))
    assert out[False][2] == info["steps"] and out[True][2] == 2 * info["steps"]
    assert out[True][0]["losses"] == out[False][0]["losses"]
    assert out[True][1].keys() == out[False][1].keys()
    for name, w in out[False][1].items():
        assert torch.equal(out[True][1][name], w), name


def test_sparse_teacher_gives_valid_sparser_pairs(heart):
    """teacher=sparse: the edits examples' sparsification, every CF checked with the classifier;
    the nearest-neighbour teacher's CFs are not all valid and change more features."""
    from cfbench_llm.settings import Settings

    from cfbench.score.metrics import changed

    task, _ = heart
    ctx = task.fit_context(seed=0)
    span = np.ptp(ctx.X_train[task.schema.names].to_numpy(float), axis=0)
    got = {}
    for teacher in ("nearest-neighbour", "sparse"):
        X, src, CF = ft.teacher_pairs(ctx, Settings(pairs=40, teacher=teacher))
        got[teacher] = (ft.teacher_valid(ctx, X, src, CF), changed(X, CF, span).sum(axis=1), src)
    valid, n_changed, src = got["sparse"]
    assert valid.all() and n_changed.min() >= 1
    assert 30 <= len(src) <= 40 and max(np.sum(src == 0), np.sum(src == 1)) <= 20
    assert n_changed.mean() < got["nearest-neighbour"][1].mean()
    assert not got["nearest-neighbour"][0].all()  # why the sparse teacher checks its CFs


def test_prototype_teacher_moves_features_to_the_target_class_typical_values(heart):
    """teacher=prototype: each CF sets some mutable features to the target class's typical value
    (never against a feature's direction) and the classifier gives it at least the margin."""
    from cfbench_llm.settings import Settings

    task, _ = heart
    ctx = task.fit_context(seed=0)
    names = task.schema.names
    X, src, CF = ft.teacher_pairs(ctx, Settings(pairs=40, teacher="prototype"))
    assert 30 <= len(src) <= 40 and max(np.sum(src == 0), np.sum(src == 1)) <= 20
    proto = ft.class_prototypes(ctx)
    proba = np.asarray(ctx.predict_proba(pd.DataFrame(CF, columns=names)))
    p_target = proba[np.arange(len(CF)), 1 - src]
    assert ft.teacher_valid(ctx, X, src, CF).all()  # kept: the classifier puts them in the target
    moved = CF != X
    # past the margin, or every allowed move made (the features ran out first)
    V = proto[1 - src]
    dirs_ = task.schema.directions()[None, :]
    allowed = task.schema.mask("mutable")[None, :] & np.isfinite(V) & (V != X)
    allowed &= ~((dirs_ > 0) & (V < X)) & ~((dirs_ < 0) & (V > X))
    short = p_target < ft.PROTOTYPE_MARGIN
    assert not (allowed & ~moved)[short].any()
    assert (~short).any()
    assert moved.any(axis=1).all()
    assert not moved[:, ~task.schema.mask("mutable")].any()
    target_value = proto[1 - src]
    assert np.array_equal(CF[moved], target_value[moved])  # every change is to the prototype value
    dirs = np.broadcast_to(task.schema.directions(), CF.shape)
    assert not ((dirs > 0) & (CF < X)).any() and not ((dirs < 0) & (CF > X)).any()


@pytest.mark.parametrize("teacher", ["sparce", "no-such-method:x", ""])
def test_unknown_teacher_is_refused_in_one_line(teacher):
    from cfbench_llm.settings import Settings

    with pytest.raises(UserError) as err:
        Settings.from_params({"teacher": teacher})
    msg = str(err.value)
    assert "\n" not in msg and repr(teacher) in msg and "nearest-neighbour, sparse, prototype" in msg
    assert "dice" in msg  # registered methods are valid teachers too
    Settings.from_params({"teacher": "sparse"})
    Settings.from_params({"teacher": "dice:random"})


def test_heldout_rows_are_training_rows_that_were_no_teacher_pair(heart):
    from cfbench_llm.settings import Settings

    task, _ = heart
    ctx = task.fit_context(seed=0)
    X, _, _ = ft.teacher_pairs(ctx, Settings(pairs=64))
    rows = ft.heldout_rows(ctx, X, 30)
    train = ctx.X_train[task.schema.names].to_numpy(float)
    assert len(rows) == 30 and len(set(rows.tolist())) == 30 and rows.max() < len(train)
    teacher_rows = {r.tobytes() for r in X}
    assert not any(train[i].tobytes() in teacher_rows for i in rows)
    pred = np.asarray(ctx.predict(ctx.X_train[task.schema.names].iloc[rows[:2]]))
    assert set(pred) == {0, 1}  # any prefix holds both classes
    assert np.array_equal(rows, ft.heldout_rows(ctx, X, 30))


def test_finetune_command_prints_loss_curve_and_heldout(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CFBENCH_CACHE", str(tmp_path))
    argv = ["finetune", "--task", "heart", "--model", tiny, "--pairs", "8", "--epochs", "2", "--rank", "4",
            "--ft-batch", "4", "--teacher", "sparse", "--heldout", "6", "--threads", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "loss curve (mean of 4 equal spans of steps):" in out
    assert "% of them are valid" in out and "held-out training rows:" in out
    meta = json.loads(next((tmp_path / "llm" / "adapters").glob("heart-*/meta.json")).read_text())
    h = meta["heldout"]
    assert meta["key"]["settings"]["teacher"] == "sparse" and len(meta["loss_curve"]) == 4
    assert h["rows"] == 6 and 0 <= h["valid"] <= h["found"] <= 6 and h["validity"] == h["valid"] / 6
    assert f"{h['valid']}/6 valid" in out

    def no_work(*a, **k):
        raise AssertionError("cached adapter and held-out check should have been reused")

    monkeypatch.setattr(ft, "train", no_work)
    monkeypatch.setattr(finetune_run, "heldout_validity", no_work)
    assert main(argv) == 0
    assert f"{h['valid']}/6 valid" in capsys.readouterr().out
