"""Constrained batched decoding with a reused prefix, on a tiny random model.

The reference is the plainest possible decoder: one sequence, no cache, the whole text re-run
for every token.  Batched decoding over the cached prefix must choose exactly the same tokens.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from cfbench_llm import models  # noqa: E402
from cfbench_llm.engine import (  # noqa: E402
    Choice,
    Engine,
    _feed_width,
    _Groups,
    build_program,
    can_differ,
    edits_program,
    free_program,
)
from cfbench_llm.prompts import Segment, ValueFormat  # noqa: E402
from cfbench_llm.testing import tiny_model_dir  # noqa: E402

FORMATS = [ValueFormat("a", 0, False, 3), ValueFormat("b", 2, True, 2), ValueFormat("c", 0, False, 1, ("0", "1", "2"))]
SEGS = [Segment(text="7,"), Segment(slot=0), Segment(text=", b="), Segment(slot=1), Segment(text=";"),
        Segment(slot=2), Segment(text="\n")]
PREFIX = "Rows of numbers and their counterfactuals.\n" + "".join(
    f"x: {i},{i / 7:.2f},{i % 3}\ny: 7,{2 * i}, b={-i / 9:.2f};{(i + 1) % 3}\n" for i in (3, 14, 27, 40, 55, 61, 77)
)
HEADS = [f"x: {i},{i / 7:.2f},{i % 3}\ny: " for i in (5, 12, 133, 1, 7040)]  # different lengths


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    path = tiny_model_dir(tmp_path_factory.mktemp("tiny"), seed=3, sliding_window=16)
    model, tok = models.load(str(path), fresh=True)
    return Engine(model, tok)


_REFERENCE: dict = {}


def reference(engine: Engine, prog) -> list[str]:
    """Greedy constrained decoding, one sequence, full recompute at every token (memoised)."""
    key = (id(engine), tuple(prog.head), prog.slots[0].fmt is None)
    if key not in _REFERENCE:
        _REFERENCE[key] = _reference(engine, prog)
    return _REFERENCE[key]


def _reference(engine: Engine, prog) -> list[str]:
    m, tok = engine.model, engine.tok
    ids = tok.encode(PREFIX, add_special_tokens=True) + list(prog.head)
    values = []
    for slot in prog.slots:
        text, gen = "", []
        while True:
            with torch.no_grad():
                h = m.get_decoder()(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
            if slot.fmt is None:
                tid = int((h @ engine.lm_weight.T).argmax())
                if tid in slot.terminators or len(gen) >= slot.max_tokens:
                    values.append(tok.decode(gen, skip_special_tokens=True))
                    break
                gen.append(tid)
                ids.append(tid)
                continue
            allowed, texts = engine._allowed_for(slot.fmt, text, slot.terminators)
            j = int((h @ engine.lm_weight[allowed].T).argmax())
            ids.append(allowed[j])
            if allowed[j] in slot.terminators:
                values.append(text)
                break
            text += texts[j]
        ids.extend(slot.after)
    return values


def test_program_structure(engine):
    prog = build_program(engine.vocab, HEADS[0], SEGS, FORMATS)
    tok = engine.tok
    assert tok.decode(prog.head) == HEADS[0] + "7,"  # leading literal joins the head
    assert [tok.decode([s.terminators[0]]) for s in prog.slots] == [",", ";", "\n"]
    assert tok.decode(prog.slots[0].after) == " b="
    assert [s.max_tokens for s in prog.slots] == [3, 6, 1]  # "-12.34" is six characters


@pytest.mark.parametrize("batch_size, chunk, fill", [(1, 256, 0.75), (2, 256, 0.75), (5, 256, 0.75),
                                                    (5, 3, 0.75), (5, 256, 1.0), (5, 256, 0.0)])
def test_batched_prefix_decoding_matches_reference(engine, batch_size, chunk, fill, monkeypatch):
    progs = [build_program(engine.vocab, h, SEGS, FORMATS) for h in HEADS]
    prefix = engine.prefix(PREFIX)
    assert len(prefix.ids) > 3 * 16  # longer than the sliding window: the window path is exercised
    monkeypatch.setattr(engine, "prefill_chunk", chunk)  # 3: the heads run a few tokens at a time
    # literal text (" b=") fed one token per step (fill 1), all at once with the chosen token (0), or between
    monkeypatch.setattr(engine, "min_fill", fill)
    out = engine.run(prefix, progs, batch_size=batch_size)
    for prog, dec in zip(progs, out, strict=True):
        assert dec.values == reference(engine, prog)
        assert dec.finished
        for fmt, v in zip(FORMATS, dec.values, strict=True):
            assert fmt.complete(v)  # every value parses, whatever the (random) model prefers
            float(v)


def test_free_text_matches_reference_and_stops(engine):
    progs = [free_program(engine.vocab, h, max_tokens=12) for h in HEADS[:3]]
    out = engine.run(engine.prefix(PREFIX), progs, batch_size=3)
    for prog, dec in zip(progs, out, strict=True):
        assert dec.values == reference(engine, prog)
        assert len(engine.tok.encode(dec.values[0], add_special_tokens=False)) <= 12
        n = len(engine.tok.encode(dec.values[0], add_special_tokens=False))
        assert dec.finished == (n < 12)  # ended by a newline, not by the cap
        assert dec.raw.startswith(dec.values[0]) and len(dec.raw) <= len(dec.values[0]) + 1


@pytest.mark.parametrize("lengths, fill, width", [
    ([1, 1, 1, 9], 0.75, 1),    # one long literal: the others would pad 8 slots each
    ([7, 7, 6, 7], 0.75, 7),    # rows in step (full rows write the same keys): all at once
    ([2, 2, 1, 9], 0.6, 3),     # 3 slots each: 8 of 12 real; 4 slots: 9 of 16
    ([1, 1, 1, 9], 0.0, 9),     # 0: everything at once (one step, most padding)
    ([0, 0, 3], 1.0, 1),        # finished rows still in the batch count as slots
    ([], 0.75, 1),
])
def test_feed_width(lengths, fill, width):
    assert _feed_width(lengths, fill) == width


def test_number_vocabulary(engine):
    assert sorted(engine.vocab.texts) == sorted("0123456789-.")
    assert engine.vocab.newline_ids == {engine.tok.convert_tokens_to_ids("\n")}
    assert engine.vocab.encode_literal(", b=") == engine.tok.encode(", b=", add_special_tokens=False)


def test_literal_starting_like_a_number_is_rejected(engine):
    bad = [Segment(slot=0), Segment(text="-x\n")]
    with pytest.raises(ValueError, match="starts with a token a number can use"):
        build_program(engine.vocab, "h: ", bad, FORMATS)


NAMES = ["a", "b", "c"]


def _edits(engine, head):
    return edits_program(engine.vocab, head, NAMES, [0, 1, 2], FORMATS, "\n")


def _reference_edits(engine, prog) -> list[tuple[int, str]]:
    """The edits grammar driven one token at a time with a full recompute (no cache, no batch)."""
    m = engine.model
    ids = engine.tok.encode(PREFIX, add_special_tokens=True) + list(prog.head)
    i, text = 0, ""
    while i < len(prog.slots):
        slot = prog.slots[i]
        with torch.no_grad():
            h = m.get_decoder()(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        if isinstance(slot, Choice):
            allowed, texts = slot.allowed(), None
        else:
            allowed, texts = engine._allowed_for(slot.fmt, text, slot.terminators)
        j = int((h @ engine.lm_weight[allowed].T).argmax())
        tid = allowed[j]
        ids.append(tid)
        if isinstance(slot, Choice):
            slot.consumed.append(tid)
            if slot.resolved() is None:
                continue
            ids.extend(prog.advance(slot, tid, ""))
        elif tid in slot.terminators:
            ids.extend(prog.advance(slot, tid, text))
            text = ""
        else:
            text += texts[j]
            continue
        i += 1
    return prog.edits


def test_edits_first_forces_the_opening_feature_only(engine):
    """``first`` fixes which feature the first edit changes; the rest is the model's choice."""
    free = engine.run(engine.prefix(PREFIX), [_edits(engine, h) for h in HEADS], batch_size=5)
    assert free
    for j in (0, 2):
        progs = [edits_program(engine.vocab, h, NAMES, [0, 1, 2], FORMATS, "\n", first=j) for h in HEADS]
        out = engine.run(engine.prefix(PREFIX), progs, batch_size=5)
        assert all(d.finished for d in out) and all(p.edits[0][0] == j for p in progs)
        assert all(len({f for f, _ in p.edits}) == len(p.edits) for p in progs)
    # a feature the program does not offer (immutable, or no other value to write) is not forced
    prog = edits_program(engine.vocab, HEADS[0], NAMES, [0, 1], FORMATS, "\n", first=2)
    assert prog.slots[0].keys == [0, 1]


@pytest.mark.parametrize("batch_size, fill", [(1, 0.75), (3, 0.75), (5, 0.75), (5, 1.0), (5, 0.0)])
def test_edits_decoding_matches_reference_and_respects_the_grammar(engine, batch_size, fill, monkeypatch):
    monkeypatch.setattr(engine, "min_fill", fill)  # feature names: one token per step, all at once, or between
    heads = HEADS
    progs = [_edits(engine, h) for h in heads]
    out = engine.run(engine.prefix(PREFIX), progs, batch_size=batch_size)
    for h, prog, dec in zip(heads, progs, out, strict=True):
        assert dec.finished
        assert prog.edits == _reference_edits(engine, _edits(engine, h))
        feats = [j for j, _ in prog.edits]
        assert feats and len(set(feats)) == len(feats)  # at least one edit, none twice
        for j, v in prog.edits:
            assert FORMATS[j].complete(v)
        assert dec.raw.endswith("}\n") and dec.raw.startswith('{"')


def test_choice_trie_forces_the_rest_of_a_unique_option():
    c = Choice([(1, 2, 3), (1, 4), (5,)], ["x", "y", "z"])
    assert c.allowed() == [1, 5] and c.resolved() is None
    c.consumed.append(1)
    assert c.allowed() == [2, 4] and c.resolved() is None
    c.consumed.append(2)
    assert c.resolved() == 0  # one candidate left: its last token is forced


# ----------------------------------------------------------------------------- must change


def test_can_differ_masks_only_completions_that_spell_the_query():
    fmt = ValueFormat("x", 2, False, 1)
    assert can_differ(fmt, "5.5", 5.5)  # 5.51 .. 5.59 differ
    assert not can_differ(fmt, "5.50", 5.5)  # the only completion is the query's value
    assert can_differ(fmt, "", 5.5)
    one = ValueFormat("c", 0, False, 1, ("3",))
    assert not can_differ(one, "", 3.0)  # a feature with one possible value cannot change


def test_forbidden_value_masks_its_last_token_and_the_terminator(engine):
    fmt = ValueFormat("x", 2, False, 1)
    term = (engine.tok.convert_tokens_to_ids(","),)
    ids, texts = engine._allowed_for(fmt, "5.5", term)
    assert "0" in texts and term[0] in ids  # unconstrained: "5.50" and "5.5" may end here
    ids, texts = engine._allowed_for(fmt, "5.5", term, forbid=5.5)
    assert sorted(texts) == list("123456789") and term[0] not in ids


def _copy_bias(engine) -> torch.Tensor:
    """Output bias that makes the model write "0" for every value and end it at once."""
    bias = torch.zeros(engine.lm_weight.shape[0])
    bias[engine.tok.convert_tokens_to_ids("0")] = 1000.0
    for c in ",;\n}":
        bias[engine.tok.convert_tokens_to_ids(c)] = 500.0
    return bias


@pytest.mark.parametrize("must_change", [False, True])
def test_full_row_cannot_copy_the_query(engine, monkeypatch, must_change):
    monkeypatch.setattr(engine, "lm_bias", _copy_bias(engine))
    query = [0.0, 0.0, 0.0]
    progs = [build_program(engine.vocab, h, SEGS, FORMATS, query=query if must_change else None) for h in HEADS]
    out = engine.run(engine.prefix(PREFIX), progs, batch_size=3)
    for dec in out:
        same = [float(v) == q for v, q in zip(dec.values, query, strict=True)]
        if must_change:
            assert not all(same) and dec.values[:2] == ["0", "0"] and dec.values[2] in ("1", "2")
        else:  # the biased model copies the query: what the rule exists to stop
            assert all(same)


@pytest.mark.parametrize("must_change", [False, True])
def test_edits_cannot_write_the_query_value(engine, monkeypatch, must_change):
    monkeypatch.setattr(engine, "lm_bias", _copy_bias(engine))
    query = [0.0, 0.0, 0.0]
    progs = [edits_program(engine.vocab, h, NAMES, [0, 1, 2], FORMATS, "\n", query=query if must_change else None)
             for h in HEADS]
    engine.run(engine.prefix(PREFIX), progs, batch_size=5)
    for prog in progs:
        assert prog.edits
        changed = [float(v) != query[j] for j, v in prog.edits]
        assert all(changed) if must_change else not any(changed)


def _sampled(engine, seeds_per_head) -> list:
    """Edits programs with their own seeded generators: one per seed, for HEADS in order."""
    out = []
    for h, seeds in zip(HEADS, seeds_per_head, strict=False):
        for s in seeds:
            p = _edits(engine, h)
            p.rng = torch.Generator().manual_seed(s)
            out.append(p)
    return out


def test_candidates_sharing_a_head_decode_as_they_would_alone(engine):
    """Sampled candidates of one query share one run of their head (forked cache rows); each
    must decode exactly as it does on its own."""
    def progs(seeds):
        return _sampled(engine, [seeds, seeds])

    prefix = engine.prefix(PREFIX)
    together = progs([1, 2, 3])
    engine.run(prefix, together, batch_size=6, temperature=1.5)
    alone = []
    for p in progs([1, 2, 3]):
        engine.run(prefix, [p], batch_size=1, temperature=1.5)
        alone.append(p.edits)
    assert [p.edits for p in together] == alone
    assert len({tuple(e) for e in alone}) > 1  # the seeds do differ


def test_shared_heads_decode_as_copied_heads(engine, monkeypatch):
    """Groups of different sizes (3, 1 and 2 candidates), rows finishing at different steps
    (so groups shrink unevenly): reading each head from one shared copy must choose exactly
    the tokens of every row holding its own copy, and of each program run alone."""
    def progs():
        return _sampled(engine, [[1, 2, 3], [4], [5, 6]])

    prefix = engine.prefix(PREFIX)
    got, states = {}, {}
    choose = engine._choose
    for share in (True, False):
        seen = []

        def spy(hidden, *args, _seen=seen):  # the hidden states every choice is made from
            _seen.append(hidden.clone())
            return choose(hidden, *args)

        monkeypatch.setattr(engine, "share_heads", share)
        monkeypatch.setattr(engine, "_choose", spy)
        ps = progs()
        engine.run(prefix, ps, batch_size=6, temperature=1.5)
        got[share], states[share] = [p.edits for p in ps], seen
    monkeypatch.setattr(engine, "_choose", choose)
    alone = []
    for p in progs():
        engine.run(prefix, [p], batch_size=1, temperature=1.5)
        alone.append(p.edits)
    assert got[True] == got[False] == alone
    assert len({len(e) for e in alone}) > 1  # rows do finish at different steps
    # not only the same tokens: the same states (sampling hides small differences)
    assert len(states[True]) == len(states[False]) >= 5
    for a, b in zip(states[True], states[False], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_groups_gather_and_scatter_back():
    group = torch.tensor([2, 0, 2, 2, 1, 0])
    g = _Groups(group, 4)  # group 3 has no row: padded, never read back
    x = torch.randn(6, 2, 3, 5)
    stacked = g.gather(x)
    assert stacked.shape == (4, 2, g.R * 3, 5) and g.R == 3
    assert torch.equal(g.rows(stacked), x)
    # rows of one group sit together: group 2's rows are 0, 2, 3 in order
    assert torch.equal(stacked[2, :, :3], x[0]) and torch.equal(stacked[2, :, 3:6], x[2])
    assert torch.count_nonzero(stacked[3]) == 0


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_other_architectures_decode_as_the_reference(tmp_path, arch):
    """The SenseCF paper's model families (Llama: full attention; Mistral: sliding window on
    every layer) go through the same engine and must match the full-recompute reference."""
    model, tok = models.load(str(tiny_model_dir(tmp_path / arch, seed=3, sliding_window=16, arch=arch)),
                             fresh=True)
    eng = Engine(model, tok)
    prefix = eng.prefix(PREFIX)
    progs = [build_program(eng.vocab, h, SEGS, FORMATS) for h in HEADS]
    for prog, dec in zip(progs, eng.run(prefix, progs, batch_size=3), strict=True):
        assert dec.values == _reference(eng, prog) and dec.finished
    edits = [_edits(eng, h) for h in HEADS[:3]]
    eng.run(prefix, edits, batch_size=3)
    for h, prog in zip(HEADS[:3], edits, strict=True):
        assert prog.edits == _reference_edits(eng, _edits(eng, h))


def test_bfloat16_screened_logits_pick_the_float32_argmax(tmp_path):
    """In a 16-bit model the vocabulary-sized matmul only screens: the token chosen is the
    argmax of the float32 logits of the same 16-bit hidden states and weights, and the tokens
    kept carry exactly those float32 logits."""
    model, tok = models.load(str(tiny_model_dir(tmp_path, seed=5)), fresh=True, dtype=torch.bfloat16)
    eng = Engine(model, tok)
    assert eng.half
    g = torch.Generator().manual_seed(0)
    h = (torch.randn(256, model.config.hidden_size, generator=g) * 3).to(torch.bfloat16)
    exact = h.float() @ eng.lm_weight.float().T

    def full(sampled: bool) -> torch.Tensor:
        cols, logits = eng._full_logits(h, sampled=sampled)
        out = torch.full_like(exact, float("-inf"))
        out[:, cols] = logits
        return out

    got = full(False)
    assert torch.equal(got.argmax(dim=1), exact.argmax(dim=1))
    kept = torch.isfinite(got)
    assert torch.equal(got[kept], exact[kept])
    assert kept.sum(dim=1).float().mean() < 0.25 * got.shape[1]  # it screens: few tokens get float32
    eng.temperature = 1.0
    wide = full(True)  # a sampled row keeps every token near the best
    near = exact >= exact.max(dim=1, keepdim=True).values - 20.0
    assert torch.isfinite(wide[near]).all()


def test_bfloat16_model_decodes_complete_values(tmp_path):
    model, tok = models.load(str(tiny_model_dir(tmp_path, seed=3, sliding_window=16)), fresh=True,
                             dtype=torch.bfloat16)
    eng = Engine(model, tok)
    prefix = eng.prefix(PREFIX)
    out = eng.run(prefix, [build_program(eng.vocab, h, SEGS, FORMATS) for h in HEADS], batch_size=5)
    for dec in out:
        assert dec.finished and all(fmt.complete(v) for fmt, v in zip(FORMATS, dec.values, strict=True))
    free = eng.run(prefix, [free_program(eng.vocab, h, max_tokens=12) for h in HEADS[:3]], batch_size=3)
    assert all(len(tok.encode(d.values[0], add_special_tokens=False)) <= 12 for d in free)
