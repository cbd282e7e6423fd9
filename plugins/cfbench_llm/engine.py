"""Batched decoding that cannot fail to parse, over a prompt prefix computed once.

The harness writes the structure of the answer (separators, immutable values) and the model
writes only the values.  Each value is a *slot*: at every step the logits are restricted to the
tokens that keep the text a valid prefix of a number (digits, '.', '-' as the slot's grammar
allows, capped in length) plus the slot's terminator, the first token of the literal text that
follows it.  Only the rows of the output embedding for those tokens are multiplied, so a
constrained step skips the vocabulary-sized matmul.  Free-text slots (the JSON variant) use the
full vocabulary and end at a newline.

Batching: the shared prefix is run once (batch 1); for each batch its key/value states are
copied into preallocated per-batch buffers (``_BufferedLayer``), and every step then writes one
token per sequence in place.  Queries of different lengths are left-padded *after* the prefix,
with explicit position ids and a 2-D padding mask, so every sequence sees exactly its own tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, DynamicSlidingWindowLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from cfbench_llm.prompts import ValueFormat

NUMBER_CHARS = re.compile(r"[0-9.\-]+")


# ----------------------------------------------------------------------------- vocabulary


class NumberVocab:
    """The tokens a number can be written with, for one tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        ids, texts = [], []
        for tok_str, tid in tokenizer.get_vocab().items():
            if not NUMBER_CHARS.fullmatch(tok_str):
                continue
            text = tokenizer.decode([tid])
            if NUMBER_CHARS.fullmatch(text):
                ids.append(int(tid))
                texts.append(text)
        if not any(t.isdigit() for t in texts):
            raise ValueError("the tokenizer has no digit tokens; constrained decoding needs them")
        order = sorted(range(len(ids)), key=lambda i: ids[i])
        self.ids = [ids[i] for i in order]
        self.texts = [texts[i] for i in order]
        self.id_set = set(self.ids)
        self.eos = {int(t) for t in _as_list(tokenizer.eos_token_id)}
        self.newline_ids = self._newline_ids()

    def _newline_ids(self) -> set[int]:
        out = set()
        for tok_str, tid in self.tokenizer.get_vocab().items():
            if "\n" in tok_str or "Ċ" in tok_str or "<0x0A>" in tok_str:
                if "\n" in self.tokenizer.decode([tid]):
                    out.add(int(tid))
        return out

    def encode_literal(self, text: str) -> list[int]:
        """Token ids of ``text`` as it follows a value: encoded after a probe digit, then cut.

        Some tokenizers add a leading space marker to text encoded alone; encoding "0"+text and
        dropping the probe's tokens gives the ids as they appear mid-line.
        """
        tok = self.tokenizer
        probe = tok.encode("0", add_special_tokens=False)
        both = tok.encode("0" + text, add_special_tokens=False)
        if both[: len(probe)] == probe and len(both) > len(probe):
            return both[len(probe):]
        return tok.encode(text, add_special_tokens=False)


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple, set)) else [x]


# ----------------------------------------------------------------------------- programs


@dataclass
class Slot:
    """A value the model writes: ``fmt`` (None = free text), ended by one of ``terminators``."""

    fmt: ValueFormat | None
    terminators: tuple[int, ...]
    after: list[int]  # literal tokens forced after the terminator, before the next slot
    max_tokens: int
    query: float | None = None  # the query's value as written in the prompt (None: not tracked)
    forbid: bool = False  # the slot may not end on a value equal to ``query``


def query_value(fmt: ValueFormat, x: float) -> float | None:
    """``x`` as the prompt writes it, as a number: a slot value equal to it means "unchanged"."""
    try:
        return float(fmt.format(x)) if np.isfinite(x) else None
    except (TypeError, ValueError, OverflowError):
        return None


def _same(text: str, value: float) -> bool:
    """Whether a slot's text spells ``value`` (text that is not a number counts as different)."""
    try:
        return float(text) == value
    except ValueError:
        return False


@lru_cache(maxsize=200_000)
def can_differ(fmt: ValueFormat, text: str, forbid: float) -> bool:
    """Whether the prefix ``text`` can still be completed to a value of ``fmt`` other than ``forbid``.

    A depth-first search over one character at a time, which stops at the first such completion,
    so it is short: a dead end exists only where every completion spells ``forbid``.
    """
    if not fmt.prefix_ok(text):
        return False
    if fmt.complete(text) and not _same(text, forbid):
        return True
    if len(text) >= fmt.max_chars:
        return False
    return any(can_differ(fmt, text + c, forbid) for c in "0123456789.-" if fmt.prefix_ok(text + c))


@dataclass
class Choice:
    """The model picks one of ``options`` (token sequences), token by token, as from a trie.

    ``consumed`` holds the tokens picked so far; once one option is left its remaining tokens
    are forced, so a choice costs one step per token where options still differ.
    """

    options: list[tuple[int, ...]]
    keys: list[Any]
    consumed: list[int] = field(default_factory=list)

    def candidates(self) -> list[int]:
        n = len(self.consumed)
        return [i for i, o in enumerate(self.options) if tuple(o[:n]) == tuple(self.consumed)]

    def allowed(self) -> list[int]:
        n = len(self.consumed)
        return sorted({self.options[i][n] for i in self.candidates() if len(self.options[i]) > n})

    def resolved(self) -> int | None:
        """The option picked, once only one is left or one is complete; else None."""
        cands = self.candidates()
        done = [i for i in cands if len(self.options[i]) == len(self.consumed)]
        if done:
            return done[0]
        return cands[0] if len(cands) == 1 else None


@dataclass
class Program:
    """One query: the forced head (prompt suffix) then slots separated by literal text."""

    head: list[int]
    slots: list[Slot | Choice]
    rng: torch.Generator | None = None  # set: sample (at the engine's temperature) with this generator
    #: the value slot that must differ from the query if every earlier tracked slot kept its value
    last_changeable: int = -1
    unchanged: bool = True  # every tracked slot so far wrote the query's value

    @property
    def max_new(self) -> int:
        return sum(s.max_tokens + 1 + len(s.after) for s in self.slots)

    def forbidden(self, slot: Slot | Choice) -> float | None:
        """The value ``slot`` may not end on (the query's), or None: the "must change" rule."""
        if not isinstance(slot, Slot) or slot.query is None:
            return None
        if slot.forbid or (self.unchanged and self.last_changeable >= 0
                           and slot is self.slots[self.last_changeable]):
            return slot.query
        return None

    def advance(self, slot: Slot | Choice, token: int, text: str) -> list[int]:
        """``slot`` has ended (with ``token``, having written ``text``): the tokens to force next.

        May append slots; a program whose last slot has ended is finished.
        """
        if isinstance(slot, Slot) and slot.query is not None and slot.fmt is not None:
            self.unchanged = self.unchanged and _same(text, slot.query)
        return list(slot.after)


class EditsProgram(Program):
    """A counterfactual written as edits: ``{"name": value, "name": value}`` over mutable features.

    The model chooses which features to change (each at most once, at least one) and their
    values; the harness writes the keys and punctuation.  Features not named keep the query's
    values, so immutables are never touched.  ``edits`` collects ``(feature index, text)``.

    With ``query`` (the query's values as written, per feature), an edit may not write the
    query's own value, so the (at least one) edit always changes something; features whose format
    admits no other value are not offered.
    """

    def __init__(self, head: list[int], start: dict[int, tuple[int, ...]], cont: dict[int, tuple[int, ...]],
                 end: tuple[int, ...], formats: Sequence[ValueFormat], max_edits: int = 0,
                 query: dict[int, float | None] | None = None, first: int | None = None) -> None:
        self.query = query or {}
        ok = [j for j in start if self.query.get(j) is None or can_differ(formats[j], "", self.query[j])]
        if ok and len(ok) < len(start):
            start = {j: start[j] for j in ok}
            cont = {j: cont[j] for j in ok}
        opening = [first] if first in start else list(start)  # a feature that cannot change is not forced
        super().__init__(head, [Choice([start[j] for j in opening], opening)])
        self.cont, self.end, self.formats = cont, end, formats
        self.max_edits = max_edits or len(start)
        self.used: list[int] = []
        self.edits: list[tuple[int, str]] = []
        longest = max(len(o) for o in [*start.values(), *cont.values()])
        widest = max(formats[j].max_chars for j in start)
        self._max_new = min(self.max_edits, len(start)) * (longest + widest + 1) + len(end)

    @property
    def max_new(self) -> int:
        return self._max_new

    def _next_options(self) -> tuple[list[tuple[int, ...]], list[Any]]:
        more = len(self.used) < self.max_edits
        keys = [j for j in self.cont if more and j not in self.used] + [None]
        return [self.cont[j] if j is not None else self.end for j in keys], keys

    def advance(self, slot: Slot | Choice, token: int, text: str) -> list[int]:
        if isinstance(slot, Slot):  # a value ended with the first token of what follows
            self.unchanged = self.unchanged and (slot.query is None or _same(text, slot.query))
            self.edits.append((self.used[-1], text))
            options, keys = self._next_options()
            choice = Choice(options, keys, consumed=[token])
            pick = choice.resolved()
            if pick is None:
                self.slots.append(choice)
                return []
            return self._picked(choice, pick)
        return self._picked(slot, slot.resolved())

    def _picked(self, choice: Choice, pick: int) -> list[int]:
        rest = list(choice.options[pick][len(choice.consumed):])
        j = choice.keys[pick]
        if j is None:  # the closing text: done
            return rest
        self.used.append(j)
        options, _ = self._next_options()
        terms = tuple(sorted({o[0] for o in options}))
        fmt = self.formats[j]
        q = self.query.get(j)
        self.slots.append(Slot(fmt, terms, [], max_tokens=fmt.max_chars, query=q, forbid=q is not None))
        return rest


@dataclass
class Decoded:
    """What the model wrote for one query: one string per slot, plus the raw line and counts."""

    values: list[str]
    raw: str
    finished: bool  # every slot ended with its terminator (not cut by a length cap)
    new_tokens: int
    prompt_tokens: int
    extra: dict = field(default_factory=dict)


def build_program(vocab: NumberVocab, head_text: str, segments: Sequence[Any],
                  formats: Sequence[ValueFormat], query: Sequence[float] | None = None) -> Program:
    """Tokenize a query's head and counterfactual segments (from ``PromptBuilder.cf_segments``).

    With ``query`` (the query row), the answer must change something: the last value slot that
    can differ from the query may not repeat the query's value when every earlier slot did.
    """
    tok = vocab.tokenizer
    segments = list(segments)
    while segments and segments[0].slot < 0:  # leading literal text belongs to the head
        head_text += segments.pop(0).text
    head = tok.encode(head_text, add_special_tokens=False)
    slots: list[Slot] = []
    pending: Slot | None = None
    for seg in segments:
        if seg.slot >= 0:
            if pending is not None:
                raise ValueError("two value slots with no literal text between them")
            fmt = formats[seg.slot]
            q = query_value(fmt, query[seg.slot]) if query is not None else None
            pending = Slot(fmt, (), [], max_tokens=fmt.max_chars, query=q)
            continue
        if pending is None:
            raise ValueError("two literal segments in a row; merge them first")
        ids = vocab.encode_literal(seg.text)
        if ids[0] in vocab.id_set:
            raise ValueError(f"the text after a value ({seg.text!r}) starts with a token a number can use")
        pending.terminators = (ids[0],)
        pending.after = ids[1:]
        slots.append(pending)
        pending = None
    if pending is not None:
        raise ValueError("the counterfactual line must end with literal text after its last value")
    changeable = [i for i, sl in enumerate(slots) if sl.query is not None and can_differ(sl.fmt, "", sl.query)]
    return Program(head=head, slots=slots, last_changeable=changeable[-1] if changeable else -1)


def free_program(vocab: NumberVocab, head_text: str, max_tokens: int) -> Program:
    """A single free-text slot (the JSON variant), ended by a newline or end-of-sequence."""
    head = vocab.tokenizer.encode(head_text, add_special_tokens=False)
    terms = tuple(sorted(vocab.newline_ids | vocab.eos))
    return Program(head=head, slots=[Slot(None, terms, [], max_tokens=max_tokens)])


def encode_after(tokenizer: Any, context: str, text: str) -> list[int]:
    """Token ids of ``text`` as it appears after ``context`` (so merges across the join match
    the prompt's own tokenization); plain encoding where the context's tokens do not survive."""
    ctx = tokenizer.encode(context, add_special_tokens=False)
    both = tokenizer.encode(context + text, add_special_tokens=False)
    if both[: len(ctx)] == ctx and len(both) > len(ctx):
        return both[len(ctx):]
    return tokenizer.encode(text, add_special_tokens=False)


def edits_program(vocab: NumberVocab, head_text: str, names: Sequence[str], mutable: Sequence[int],
                  formats: Sequence[ValueFormat], tail: str, max_edits: int = 0,
                  query: Sequence[float] | None = None, first: int | None = None) -> EditsProgram:
    """Tokenize a query for the edits format (see ``EditsProgram``); ``max_edits`` caps the
    features changed (0 = no cap); with ``query`` (the query row) no edit may repeat its value;
    ``first`` (a mutable feature) is the one the first edit must change."""
    tok = vocab.tokenizer
    head = tok.encode(head_text, add_special_tokens=False)
    ctx = head_text[-16:]
    start = {j: tuple(encode_after(tok, ctx, f'{{"{names[j]}": ')) for j in mutable}
    cont = {j: tuple(vocab.encode_literal(f', "{names[j]}": ')) for j in mutable}
    end = tuple(vocab.encode_literal("}" + tail))
    for opt in [*cont.values(), end]:
        if opt[0] in vocab.id_set:
            raise ValueError(f"the text after a value ({tok.decode(list(opt))!r}) starts with a token a number can use")
    qv = {j: query_value(formats[j], query[j]) for j in mutable} if query is not None else None
    return EditsProgram(head, start, cont, end, formats, max_edits, qv, first=first)


# ----------------------------------------------------------------------------- cache


class _BufferedFull(DynamicLayer):
    """A full-attention layer holding this batch's own tokens in a preallocated buffer.

    The shared prefix is *not* copied here: ``shared_prefix_attention`` reads it once, at batch
    size 1, for every sequence.  Writing in place avoids a concatenation per step.
    """

    offset = 0  # absolute slot of local index 0 (the prefix length)
    start_abs = 0

    def fill(self, like: torch.Tensor, batch: int, capacity: int, offset: int) -> None:
        _, h, _, d = like.shape
        self._k = like.new_empty((batch, h, capacity, d))
        self._v = like.new_empty((batch, h, capacity, d))
        self._n = 0
        self.offset = offset
        self.dtype, self.device = like.dtype, like.device
        self.keys, self.values = self._k[:, :, :0], self._v[:, :, :0]
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        n, q = self._n, key_states.shape[-2]
        if n + q > self._k.shape[-2]:  # chunks padded to the longest can outgrow the estimate
            grow = max(n + q, 2 * self._k.shape[-2])
            k, v = self._k.new_empty(self._k.shape[:2] + (grow, self._k.shape[-1])), self._v.new_empty(
                self._v.shape[:2] + (grow, self._v.shape[-1]))
            k[:, :, :n], v[:, :, :n] = self._k[:, :, :n], self._v[:, :, :n]
            self._k, self._v = k, v
        self._k[:, :, n:n + q] = key_states
        self._v[:, :, n:n + q] = value_states
        self._n = n + q
        start = max(self.start_abs - self.offset, 0)
        self.keys, self.values = self._k[:, :, start: self._n], self._v[:, :, start: self._n]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.offset + self._n

    def keep(self, rows: torch.Tensor) -> None:
        """Drop every sequence of the batch but ``rows`` (finished ones cost nothing after this)."""
        self._k, self._v = self._k[rows], self._v[rows]
        self.keys, self.values = self._k[:, :, :0], self._v[:, :, :0]

    def split_heads(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Hand over the tokens written so far (one row per distinct head) and start ``batch``
        empty rows after them: the forked sequences then read their head from the one copy."""
        n = self._n
        head_k, head_v = self._k[:, :, :n], self._v[:, :, :n]
        b, h, cap, d = self._k.shape
        self._k = self._k.new_empty((batch, h, max(cap - n, 1), d))
        self._v = self._v.new_empty((batch, h, max(cap - n, 1), d))
        self._n = 0
        self.offset += n
        self.keys, self.values = self._k[:, :, :0], self._v[:, :, :0]
        return head_k, head_v


class _BufferedSliding(_BufferedFull):
    """The same for a sliding-window layer; keys are returned from ``start_abs`` on (set per step,
    early enough to cover the window in positions despite padding holes), and the engine's mask
    applies the window exactly, by position."""

    is_sliding = True

    def __init__(self, sliding_window: int) -> None:
        super().__init__()
        self.sliding_window = sliding_window


def batch_cache(prefix: Cache, batch: int, capacity: int) -> Cache:
    """An empty batch-``batch`` cache for the tokens after the (shared, not copied) prefix."""
    layers = []
    for layer in prefix.layers:
        if type(layer) is DynamicLayer:
            new = _BufferedFull()
        elif type(layer) is DynamicSlidingWindowLayer:
            new = _BufferedSliding(layer.sliding_window)
        else:
            raise NotImplementedError(f"cache layer {type(layer).__name__} is not supported for prefix reuse")
        new.fill(layer.keys, batch, capacity, offset=layer.get_seq_length())
        layers.append(new)
    return Cache(layers=layers)


# ----------------------------------------------------------------------------- attention

ATTENTION = "cfbench_shared_prefix"
_ACTIVE: dict[str, Any] = {}  # set by Engine around a batch: the prefix K/V and its masks


def shared_prefix_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention over [shared prefix (batch 1) + each sequence's own tokens] in one softmax.

    The prefix keys and values are read once for the whole batch (one matmul over
    ``batch x heads x queries`` rows) instead of once per sequence.  Outside a batch run this is
    plain sdpa, so the model behaves normally everywhere else.
    """
    state = _ACTIVE.get("state")
    if state is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    kp, vp, pmask = state.prefix(module.layer_idx)
    heads = state.heads(module.layer_idx)
    B, Hq, q, D = query.shape
    Hkv = key.shape[1]
    G = Hq // Hkv  # query heads per key/value head; head h uses kv head h // G
    P = kp.shape[-2]
    scale = scaling if scaling is not None else D ** -0.5
    qg = query.reshape(B, Hkv, G * q, D)
    # prefix: every sequence's queries against the one prefix copy, (Hkv, B*G*q, D) @ (Hkv, D, P)
    qh = qg.transpose(0, 1).reshape(Hkv, B * G * q, D)
    sp = torch.matmul(qh, kp[0].transpose(-1, -2)).reshape(Hkv, B, G * q, P).transpose(0, 1)
    parts, masks = [sp], [pmask]
    if heads is not None:  # forked sequences: each group's queries against its one head copy
        kh, vh, hmask, groups = heads
        parts.append(groups.rows(torch.matmul(groups.gather(qg), kh.transpose(-1, -2))))
        masks.append(hmask)
    ss = torch.matmul(qg, key.transpose(-1, -2))  # own tokens: (B, Hkv, G*q, S)
    scores = torch.cat([*parts, ss], dim=-1) * scale
    cap = getattr(module.config, "attn_logit_softcapping", None)
    if cap:
        scores = torch.tanh(scores / cap) * cap
    allowed = torch.cat([*masks, attention_mask[:, 0]], dim=-1)  # (B, q, P[+Hh]+S)
    allowed = allowed[:, None, None].expand(B, Hkv, G, q, allowed.shape[-1]).reshape(B, Hkv, G * q, -1)
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores.float(), dim=-1).to(value.dtype)
    pp = probs[..., :P].transpose(0, 1).reshape(Hkv, B * G * q, P)
    out = torch.matmul(pp, vp[0]).reshape(Hkv, B, G * q, D).transpose(0, 1)
    n = P
    if heads is not None:
        n = P + kh.shape[-2]
        out = out + groups.rows(torch.matmul(groups.gather(probs[..., P:n]), vh))
    out = out + torch.matmul(probs[..., n:], value)
    return out.reshape(B, Hq, q, D).transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    # these load transformers' modeling utilities (seconds): imported by the first Engine, not with this module
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, shared_prefix_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)


class _PrefixState:
    """The prefix's per-layer keys/values (batch 1) and, per step, which prefix keys each query sees."""

    def __init__(self, cache: Cache) -> None:
        self.kv = [(layer.keys, layer.values) for layer in cache.layers]
        self.sliding = [isinstance(layer, DynamicSlidingWindowLayer) for layer in cache.layers]
        self.window = next((layer.sliding_window for layer in cache.layers
                            if isinstance(layer, DynamicSlidingWindowLayer)), 0)
        self.pos = [torch.arange(layer.get_seq_length() - layer.keys.shape[-2], layer.get_seq_length(),
                                 device=layer.keys.device) for layer in cache.layers]
        self.masks: dict[tuple, torch.Tensor] = {}
        self.head_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # set_heads, on a fork

    def set_heads(self, kv: list[tuple[torch.Tensor, torch.Tensor]], pos: torch.Tensor, group: torch.Tensor) -> None:
        """Per layer the distinct heads' keys/values (U, Hkv, H, D), their slots' positions
        ``pos`` (U, H; -1 for padding) and each batch row's head ``group`` (B,)."""
        self.head_kv, self.head_pos = kv, pos
        self.set_groups(group)

    def set_groups(self, group: torch.Tensor) -> None:
        """Each batch row's head (after rows were dropped or forked)."""
        self.groups = _Groups(group, len(self.head_pos))

    def set_queries(self, qpos: torch.Tensor) -> None:
        """``qpos`` (B, q): positions of this step's query tokens, -1 for padding."""
        self.masks = {}
        self._qpos = qpos

    def heads(self, layer_idx: int):
        """(keys, values, mask (B, q, H), groups) of the shared heads, or None without them."""
        if self.head_kv is None:
            return None
        k, v = self.head_kv[layer_idx]
        key = ("head", self.sliding[layer_idx])
        if key not in self.masks:
            kpos = self.head_pos[self.groups.group]  # (B, H)
            qpos = self._qpos
            ok = (qpos[:, :, None] >= 0) & (kpos[:, None, :] >= 0) & (kpos[:, None, :] <= qpos[:, :, None])
            if self.sliding[layer_idx]:
                ok = ok & ((qpos[:, :, None] - kpos[:, None, :]) < self.window)
            self.masks[key] = ok
        return k, v, self.masks[key], self.groups

    def prefix(self, layer_idx: int):
        k, v = self.kv[layer_idx]
        key = (self.sliding[layer_idx], k.shape[-2])
        if key not in self.masks:
            kpos = self.pos[layer_idx]
            qpos = self._qpos
            ok = (qpos[:, :, None] >= 0) & (kpos[None, None, :] <= qpos[:, :, None])
            if self.sliding[layer_idx]:
                ok = ok & ((qpos[:, :, None] - kpos[None, None, :]) < self.window)
            self.masks[key] = ok
        return k, v, self.masks[key]


class _Groups:
    """Batch rows grouped by the head they share, for one matmul per group against that
    head's single key/value copy.  Groups may differ in size (rows finish at different times):
    each is padded to the largest with a zero row."""

    def __init__(self, group: torch.Tensor, n_groups: int) -> None:
        self.group = group
        B = len(group)
        counts = torch.bincount(group, minlength=n_groups)
        self.U, self.R = n_groups, max(int(counts.max()) if B else 0, 1)
        order = torch.argsort(group, stable=True)
        rank = torch.empty_like(order)
        first = torch.cumsum(counts, 0) - counts  # each group's first place in ``order``
        rank[order] = torch.arange(B, device=group.device) - first[group[order]]
        self.slot = group * self.R + rank  # each row's place in the padded (U*R) layout
        index = torch.full((self.U * self.R,), B, dtype=torch.long, device=group.device)
        index[self.slot] = torch.arange(B, device=group.device)
        self.index = index  # padded layout -> row (B = the zero row)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Hkv, M, X) per row -> (U, Hkv, R*M, X): each group's rows stacked."""
        B, Hkv, M, X = x.shape
        padded = torch.cat([x, x.new_zeros((1, Hkv, M, X))])[self.index]
        return padded.reshape(self.U, self.R, Hkv, M, X).transpose(1, 2).reshape(self.U, Hkv, self.R * M, X)

    def rows(self, y: torch.Tensor) -> torch.Tensor:
        """The inverse of ``gather`` for a result (U, Hkv, R*M, Y) -> (B, Hkv, M, Y)."""
        U, Hkv, RM, Y = y.shape
        M = RM // self.R
        return y.reshape(U, Hkv, self.R, M, Y).transpose(1, 2).reshape(U * self.R, Hkv, M, Y)[self.slot]


# ----------------------------------------------------------------------------- decoder


@dataclass
class Prefix:
    """The shared prompt prefix, run once: its token ids and its (batch-1) cache."""

    ids: list[int]
    cache: Cache | None


def _feed_width(lengths: Sequence[int], min_fill: float) -> int:
    """The most tokens per sequence a step feeds: the largest ``q`` whose padded slots
    (``len(lengths) * q``) are at least ``min_fill`` real tokens, ``sum(min(n, q))``; at least 1."""
    best = 1
    total = len(lengths)
    for q in range(2, max(lengths, default=1) + 1):  # the real share only falls as q grows
        if sum(min(n, q) for n in lengths) < min_fill * total * q:
            break
        best = q
    return best


@dataclass(eq=False)
class _Seq:
    """One program's decoding state within a batch: its place in its slots, what it has written,
    and the tokens it feeds this step or has queued for later ones."""

    index: int  # its place in the batch (``_choose`` takes sequences by it)
    prog: Program
    pos: int  # position of its next token
    holes: int  # padding slots it carries (they widen the sliding window's reach in slots)
    done: bool  # its last slot has ended
    slot_i: int = 0  # the slot being written
    text: str = ""  # a value slot's text so far
    gen: list[int] = field(default_factory=list)  # a free-text slot's token ids so far
    values: list[str] = field(default_factory=list)  # each ended slot's text
    cut: bool = False  # a free-text slot was cut by its length cap
    n_new: int = 0  # tokens fed after the head (chosen and forced)
    raw_ids: list[int] = field(default_factory=list)  # every token written after the head
    feed: list[int] = field(default_factory=list)  # tokens fed this step
    queue: list[int] = field(default_factory=list)  # literal text still to be fed (``min_fill``)

    @property
    def slot(self) -> Slot | Choice:
        return self.prog.slots[self.slot_i]


@dataclass(eq=False)
class _Batch:
    """The state one ``Engine._run_batch`` shares across its sequences: the cache and the slot
    positions of its rows, which sequence is in which row, and the hidden states to choose from."""

    seqs: list[_Seq]  # every program of the batch, in input order
    rows: list[_Seq]  # the sequence in each row of the batch tensors (heads first, then until compacted)
    fork: list[int]  # each program's distinct head
    cache: Cache
    state: _PrefixState
    sliding: list[_BufferedSliding]  # the cache's sliding-window layers
    window: int
    slot_pos: torch.Tensor  # (rows, slots): position of the token in each slot, -1 for padding
    P: int  # prefix length
    H: int  # longest head
    own: int  # the first slot the rows hold themselves (after the prefix, and after shared heads)
    t: int = 0  # the next slot to write
    hidden: torch.Tensor | None = None  # each row's last hidden state


class Engine:
    """Greedy (or per-sequence seeded sampled) batched decoding of ``Program``s after a shared prefix, on any causal LM."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tok = tokenizer
        self.vocab = NumberVocab(tokenizer)
        _register_attention()
        # prefix reuse needs our attention; outside a batch run it is plain sdpa
        model.set_attn_implementation(ATTENTION)
        self.decoder = model.get_decoder()
        head = model.get_output_embeddings()
        self.lm_weight = head.weight
        self.lm_bias = getattr(head, "bias", None)
        self.device = self.lm_weight.device
        #: the model computes in a 16-bit float type: logits are then taken in float32 from its
        #: 16-bit hidden states and weights (exact products, float32 sums), never rounded to 16 bits
        self.half = self.lm_weight.dtype != torch.float32
        self._w_norm: torch.Tensor | None = None  # per-token norms of the head, for ``_full_logits``
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else _as_list(tokenizer.eos_token_id)[0])
        self._allowed: dict[tuple, tuple[list[int], list[str]]] = {}
        self.temperature = 1.0
        self.stats = {"forward_tokens": 0, "forward_calls": 0}
        #: head tokens run per forward; bounds the attention scores of long heads (retrieval examples)
        self.prefill_chunk = 256
        #: least share of a decoding step's token slots that are real tokens.  Every row of a step
        #: is padded to the longest feed, so one sequence feeding a 9-token key would make the
        #: whole batch pay 9 slots; a step feeds at most as many tokens per sequence as keeps this
        #: share (1 token always), and literal text beyond it waits for the next steps while the
        #: rest of the batch keeps choosing.  0 = feed everything at once; fewer slots cost more steps.
        self.min_fill = 0.75
        #: sequences forked from one head (a query's sampled candidates) read its keys/values from
        #: one copy, one matmul per head, instead of each holding and reading its own copy
        self.share_heads = True

    # -- prefix
    @torch.inference_mode()
    def prefix(self, text: str) -> Prefix:
        """Run ``text`` (with the tokenizer's BOS) once; its cache is reused by every batch."""
        ids = self.tok.encode(text, add_special_tokens=True)
        cache = DynamicCache(config=self.model.config)
        if ids:
            x = torch.tensor([ids], device=self.device)
            self._forward(x, torch.ones_like(x), torch.arange(len(ids), device=self.device)[None], cache)
        return Prefix(ids, cache)

    def _forward(self, ids, mask, pos, cache) -> torch.Tensor:
        out = self.decoder(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                           use_cache=True)
        self.stats["forward_tokens"] += int(ids.numel())
        self.stats["forward_calls"] += 1
        return out.last_hidden_state

    # -- decoding
    def run(self, prefix: Prefix, programs: Sequence[Program], batch_size: int = 16,
            temperature: float = 1.0) -> list[Decoded]:
        """Decode every program, ``batch_size`` at a time, in the input order: greedy, or sampled
        at ``temperature`` from its allowed tokens for a program with its own ``rng`` (so what a
        sequence draws does not depend on what it is batched with)."""
        self.temperature = temperature
        order = sorted(range(len(programs)), key=lambda i: len(programs[i].head))
        out: list[Decoded | None] = [None] * len(programs)
        n_batches = -(-len(order) // batch_size)
        size = -(-len(order) // max(n_batches, 1))  # even batches: 50 at 32 runs as 25 + 25
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            for i, dec in zip(chunk, self._run_batch(prefix, [programs[i] for i in chunk]), strict=True):
                out[i] = dec
        return out  # type: ignore[return-value]

    def _allowed_for(self, fmt: ValueFormat, text: str, terms: tuple[int, ...],
                     forbid: float | None = None) -> tuple[list[int], list[str]]:
        """The tokens that keep ``text`` a valid prefix of a ``fmt`` value, plus the terminators
        once it is complete; with ``forbid``, only those that can still end on another value."""
        key = (fmt, text, terms, forbid)
        hit = self._allowed.get(key)
        if hit is None:
            ids, texts = [], []
            for tid, t in zip(self.vocab.ids, self.vocab.texts, strict=True):
                if fmt.prefix_ok(text + t) and (forbid is None or can_differ(fmt, text + t, forbid)):
                    ids.append(tid)
                    texts.append(t)
            done = fmt.complete(text) and (forbid is None or not _same(text, forbid))
            if done or not ids:
                ids.extend(terms)
                texts.extend([""] * len(terms))
            hit = (ids, texts)
            self._allowed[key] = hit
        return hit

    def _masks(self, cache: Cache, slot_pos: torch.Tensor, t: int, q: int, start_abs: int, P: int) -> Any:
        """Boolean masks over this batch's own slots ``[P, t+q)`` for query slots ``[t, t+q)``, by *position*
        (``P``: the first slot the rows hold themselves: after the prefix, and after the heads once these are shared).

        ``slot_pos[b, k]`` is the position of the token in slot ``k`` (-1 for padding), so padding
        holes are invisible.  A real query sees real keys at positions <= its own (and within the
        window, for sliding layers); a padding query sees only itself, which keeps rows finite.
        The prefix part is masked in ``_PrefixState``.
        """
        kpos = slot_pos[:, P: t + q]
        qpos = slot_pos[:, t: t + q]
        ok = (kpos[:, None, :] >= 0) & (kpos[:, None, :] <= qpos[:, :, None])
        own = torch.zeros_like(ok)
        own[:, torch.arange(q), torch.arange(t - P, t - P + q)] = True
        pad_q = (qpos < 0)[:, :, None]
        out = {}
        kinds = {type(layer) for layer in cache.layers}
        if _BufferedFull in kinds:
            out["full_attention"] = torch.where(pad_q, own, ok)[:, None]
        if _BufferedSliding in kinds:
            w = next(layer.sliding_window for layer in cache.layers if isinstance(layer, _BufferedSliding))
            lo = start_abs - P
            near = (qpos[:, :, None] - kpos[:, None, lo:]) < w
            out["sliding_attention"] = torch.where(pad_q, own[:, :, lo:], ok[:, :, lo:] & near)[:, None]
        return out if len(out) > 1 else next(iter(out.values()))

    @torch.inference_mode()
    def _run_batch(self, prefix: Prefix, progs: Sequence[Program]) -> list[Decoded]:
        """Decode ``progs`` as one batch: each distinct head is run once, then every step feeds
        each unfinished sequence its chosen token (and literal text), until all have ended."""
        batch, ids = self._start_batch(prefix, progs)
        self._run_heads(batch, ids)
        while not all(s.done for s in batch.seqs):
            self._step(batch)
        return [self._decoded(s, batch.P) for s in batch.seqs]

    def _start_batch(self, prefix: Prefix, progs: Sequence[Program]) -> tuple[_Batch, torch.Tensor]:
        """The batch's cache and slot positions, and its distinct heads as left-padded token ids
        (one row per head): the candidates sampled for one query share a head, run only once."""
        P = len(prefix.ids)
        H = max(len(p.head) for p in progs)
        steps = max(p.max_new for p in progs)
        dev = self.device
        # each distinct head is run once: the candidates sampled for one query share it (and,
        # with share_heads, read it from that one copy afterwards)
        heads: dict[tuple[int, ...], int] = {}
        fork = [heads.setdefault(tuple(p.head), len(heads)) for p in progs]
        U = len(heads)
        cache = batch_cache(prefix.cache, U, H + steps)
        state = _PrefixState(prefix.cache)
        sliding = [layer for layer in cache.layers if isinstance(layer, _BufferedSliding)]
        window = sliding[0].sliding_window if sliding else 0
        slot_pos = torch.full((U, P + H + steps), -1, dtype=torch.long, device=dev)
        slot_pos[:, :P] = torch.arange(P, device=dev)
        ids = torch.full((U, H), self.pad_id, dtype=torch.long, device=dev)
        for u, head in enumerate(heads):
            n = len(head)
            if n:
                ids[u, H - n:] = torch.tensor(head, device=dev)
                slot_pos[u, P + H - n: P + H] = torch.arange(P, P + n, device=dev)
        seqs = [_Seq(b, p, pos=P + len(p.head), holes=H - len(p.head), done=not p.slots) for b, p in enumerate(progs)]
        # during the heads, each row holds the first program of its head (whose holes stand for all of them)
        first = sorted({u: b for b, u in reversed(list(enumerate(fork)))}.values())
        batch = _Batch(seqs=seqs, rows=[seqs[b] for b in first], fork=fork, cache=cache, state=state,
                       sliding=sliding, window=window, slot_pos=slot_pos, P=P, H=H, own=P)
        return batch, ids

    def _run_heads(self, batch: _Batch, ids: torch.Tensor) -> None:
        """Run the distinct heads (in chunks: attention scores stay chunk x window on sliding
        layers, not H x H), then fork: every program gets its head's cache and last hidden state."""
        P, H, dev = batch.P, batch.H, self.device
        for c in range(0, H, self.prefill_chunk):
            batch.hidden = self._forward_batch(batch, ids[:, c: c + self.prefill_chunk], P + c)[:, -1]
        B = len(batch.seqs)
        if len(batch.rows) < B:  # fork: every program gets its head (one shared copy, or its own)
            idx = torch.tensor(batch.fork, device=dev)
            if self.share_heads:
                batch.state.set_heads([layer.split_heads(B) for layer in batch.cache.layers],
                                      batch.slot_pos[:, P: P + H], idx)
                batch.own = P + H
            else:
                for layer in batch.cache.layers:
                    layer.keep(idx)
            batch.slot_pos, batch.hidden = batch.slot_pos[idx], batch.hidden[idx]
        batch.rows = list(batch.seqs)
        batch.t = P + H

    def _forward_batch(self, batch: _Batch, x: torch.Tensor, t: int) -> torch.Tensor:
        """The model on tokens ``x`` (one row per batch row) written to slots ``[t, t+q)``, with
        the shared prefix (and heads) read through ``shared_prefix_attention``."""
        q = x.shape[1]
        if batch.sliding:
            start_abs = max(t - (batch.window - 1) - max(s.holes for s in batch.rows), batch.own)
        else:
            start_abs = batch.own
        for layer in batch.sliding:
            layer.start_abs = start_abs
        qpos = batch.slot_pos[:, t: t + q]
        batch.state.set_queries(qpos)
        _ACTIVE["state"] = batch.state
        try:
            return self._forward(x, self._masks(batch.cache, batch.slot_pos, t, q, start_abs, batch.own),
                                 qpos.clamp(min=0), batch.cache)
        finally:
            _ACTIVE.pop("state", None)

    def _step(self, batch: _Batch) -> None:
        """One decoding step: each sequence with nothing queued picks a token, then each feeds at
        most ``_feed_width`` tokens (the rest waits in its queue); no forward once all have ended."""
        rows = batch.rows
        waiting = [s for s in rows if not s.done and s.queue]  # literal text left from earlier steps
        need = [s for s in rows if not s.done and not s.queue]
        for s in rows:
            s.feed = []
        for s, (tokid, piece) in zip(need, self._choose_for(batch, need), strict=True):
            self._accept(s, tokid, piece)
        for s in waiting:
            s.feed = s.queue
        m = _feed_width([len(s.feed) if not s.done else 0 for s in rows], self.min_fill)
        for s in rows:
            if not s.done:
                s.feed, s.queue = s.feed[:m], s.feed[m:]
        if all(s.done for s in batch.seqs):
            return  # the last tokens need no forward: nothing reads their states
        self._compact(batch)
        self._feed(batch)

    def _choose_for(self, batch: _Batch, need: list[_Seq]) -> list[tuple[int, str]]:
        """``(token, text)`` chosen for each sequence in ``need``, through ``_choose``, which
        takes sequences by their index in the batch and their programs, slots and texts as lists."""
        seqs = batch.seqs
        choice = self._choose(batch.hidden, {s.index: r for r, s in enumerate(batch.rows)}, [s.index for s in need],
                              [s.prog for s in seqs], [s.slot_i for s in seqs], [s.text for s in seqs])
        return [choice[s.index] for s in need]

    def _accept(self, s: _Seq, tokid: int, piece: str) -> None:
        """Add the token chosen for ``s`` to its feed: it extends the current slot or ends it
        (a free-text slot cut by its length cap drops the token: it is not part of the answer)."""
        prog, slot = s.prog, s.slot
        s.feed.append(tokid)
        s.raw_ids.append(tokid)
        if isinstance(slot, Choice):
            slot.consumed.append(tokid)
            if slot.resolved() is not None:
                self._end_slot(s, prog.advance(slot, tokid, ""))
        elif slot.fmt is None:
            if tokid in slot.terminators or len(s.gen) >= slot.max_tokens:
                s.values.append(self.tok.decode(s.gen, skip_special_tokens=True))
                s.cut = s.cut or tokid not in slot.terminators
                if tokid not in slot.terminators:  # cut by the cap: not part of the answer
                    s.feed.pop()
                    s.raw_ids.pop()
                self._end_slot(s, prog.advance(slot, tokid, s.values[-1]))
            else:
                s.gen.append(tokid)
        elif tokid in slot.terminators:
            s.values.append(s.text)
            self._end_slot(s, prog.advance(slot, tokid, s.text))
        else:
            s.text += piece
        s.n_new += len(s.feed)

    @staticmethod
    def _end_slot(s: _Seq, forced: list[int]) -> None:
        """``s``'s slot has ended: move to the next one, with the literal text the program forces
        fed along with the token that led to it; after its last slot the sequence is done."""
        s.text, s.gen = "", []
        s.slot_i += 1
        s.feed.extend(forced)
        s.raw_ids.extend(forced)
        if s.slot_i == len(s.prog.slots):
            s.done = True

    def _compact(self, batch: _Batch) -> None:
        """Once a quarter of the rows have finished, drop them from the cache and slot positions
        so that finished rows stop costing."""
        rows = batch.rows
        finished = [r for r, s in enumerate(rows) if s.done]
        if finished and len(finished) * 4 >= len(rows):
            keep = torch.tensor([r for r, s in enumerate(rows) if not s.done], device=self.device)
            for layer in batch.cache.layers:
                layer.keep(keep)
            if batch.state.head_kv is not None:
                batch.state.set_groups(batch.state.groups.group[keep])
            batch.slot_pos = batch.slot_pos[keep]
            batch.rows = [s for s in rows if not s.done]

    def _feed(self, batch: _Batch) -> None:
        """Run this step's feeds (left-aligned, padded to the longest) and keep each row's hidden
        state at its last real token, for the next choice."""
        rows, t, dev = batch.rows, batch.t, self.device
        feeds = [s.feed if not s.done else [] for s in rows]
        q = max(len(f) for f in feeds)
        if t + q > batch.slot_pos.shape[1]:
            more = torch.full((len(rows), max(q, batch.slot_pos.shape[1] - batch.P)), -1, dtype=torch.long, device=dev)
            batch.slot_pos = torch.cat([batch.slot_pos, more], dim=1)
        x = torch.full((len(rows), q), self.pad_id, dtype=torch.long, device=dev)
        for r, (s, f) in enumerate(zip(rows, feeds, strict=True)):
            if f:
                x[r, : len(f)] = torch.tensor(f, device=dev)
                batch.slot_pos[r, t: t + len(f)] = torch.arange(s.pos, s.pos + len(f), device=dev)
                s.pos += len(f)
            s.holes += q - len(f)
        out = self._forward_batch(batch, x, t)
        last = torch.tensor([max(len(f), 1) - 1 for f in feeds], device=dev)
        batch.hidden = out[torch.arange(len(rows), device=dev), last]
        batch.t = t + q

    def _decoded(self, s: _Seq, P: int) -> Decoded:
        """What ``s`` wrote, as returned to the caller (``P``: the shared prefix's length)."""
        raw = self.tok.decode(s.raw_ids, skip_special_tokens=True)
        return Decoded(s.values, raw, finished=s.done and not s.cut, new_tokens=s.n_new,
                       prompt_tokens=P + len(s.prog.head))

    def _choose(self, hidden: torch.Tensor, row: dict[int, int], need: list[int], progs, slot_i,
                text) -> dict[int, tuple[int, str]]:
        """Greedy token for each sequence in ``need`` (its hidden state in row ``row[b]``), from
        its slot's allowed set."""
        out: dict[int, tuple[int, str]] = {}
        if not need:
            return out
        free = [b for b in need if isinstance(progs[b].slots[slot_i[b]], Slot) and progs[b].slots[slot_i[b]].fmt is None]
        free_set = set(free)
        cons = [b for b in need if b not in free_set]
        if free:
            cols, logits = self._full_logits(hidden[[row[b] for b in free]],
                                             sampled=any(progs[b].rng is not None for b in free))
            for r, b in enumerate(free):
                j = self._pick(logits[r], progs[b].rng)
                out[b] = (j if cols is None else int(cols[j]), "")
        if cons:
            allowed = []
            union: dict[int, int] = {}
            for b in cons:
                slot = progs[b].slots[slot_i[b]]
                if isinstance(slot, Choice):
                    ids = slot.allowed()
                    texts = [""] * len(ids)
                else:
                    ids, texts = self._allowed_for(slot.fmt, text[b], slot.terminators, progs[b].forbidden(slot))
                allowed.append((ids, texts))
                for tid in ids:
                    union.setdefault(tid, len(union))
            cols = torch.tensor(list(union), device=self.device)
            logits = hidden[[row[b] for b in cons]].float() @ self.lm_weight[cols].float().T
            if self.lm_bias is not None:
                logits = logits + self.lm_bias[cols].float()
            logits = logits.float().cpu()
            for row, (b, (ids, texts)) in enumerate(zip(cons, allowed, strict=True)):
                idx = torch.tensor([union[t] for t in ids])
                j = self._pick(logits[row, idx], progs[b].rng)
                out[b] = (ids[j], texts[j])
        return out

    #: ``_full_logits`` trusts a 16-bit logit to within this share of ``|h| |w|`` (the
    #: Cauchy-Schwarz scale of a dot product); the largest error measured on Gemma 3 270M in
    #: bfloat16 was under 1/1300 of it, this is 1/64
    SCREEN = 2.0 ** -6
    #: a sampled row also keeps the tokens up to this many temperatures below the best: the rest
    #: have a probability under e^-30 of the best token's
    SAMPLE_WINDOW = 30.0

    def _full_logits(self, h: torch.Tensor, sampled: bool = False) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(cols, logits)``: float32 logits of the free-text rows ``h`` over the vocabulary
        tokens ``cols`` (None: all of them); ``-inf`` marks a token that row cannot choose.

        In float32 models, one matmul over the whole vocabulary.  In 16-bit models that matmul
        runs in 16 bits (several times faster on a CPU with native bfloat16) and only *screens*.
        Each token's screened logit is trusted to within ``SCREEN`` x |h| |w|.  A token whose
        screened logit, plus the largest such margin, is below the screened best minus the
        best's own margin cannot be the argmax.  The few tokens left get their float32 logits,
        so the argmax over ``cols`` is the argmax of the float32 logits over all tokens.  A
        sampled row also keeps every token within ``SAMPLE_WINDOW`` temperatures of the best.
        """
        if not self.half:
            logits = h @ self.lm_weight.T
            return None, (logits + self.lm_bias if self.lm_bias is not None else logits)
        if self._w_norm is None:
            self._w_norm = self.lm_weight.detach().float().norm(dim=1)
            self._w_max = float(self._w_norm.max())
        approx = h @ self.lm_weight.T  # 16-bit, float32 sums
        if self.lm_bias is not None:
            approx = approx + self.lm_bias
        top, arg = approx.max(dim=1)
        hn = h.float().norm(dim=1)
        floor = top.float() - self.SCREEN * hn * self._w_norm[arg]  # the best's lowest possible logit
        if sampled:
            floor = floor - self.SAMPLE_WINDOW * max(self.temperature, 1e-6)
        thr = floor - self.SCREEN * hn * self._w_max  # a token below it cannot reach the floor
        # compared in 16 bits, against the threshold lowered by more than the 16-bit rounding
        keep = approx >= (thr - thr.abs() * 2.0 ** -6).to(approx.dtype)[:, None]
        cols = keep.any(dim=0).nonzero().squeeze(1)
        exact = h.float() @ self.lm_weight[cols].float().T
        if self.lm_bias is not None:
            exact = exact + self.lm_bias[cols].float()
        return cols, exact.masked_fill(~keep[:, cols], float("-inf"))

    def _pick(self, logits: torch.Tensor, rng: torch.Generator | None) -> int:
        """The index of the chosen token: the argmax, or a draw at ``self.temperature`` from ``rng``."""
        if rng is None or self.temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits.float().cpu() / self.temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=rng))
