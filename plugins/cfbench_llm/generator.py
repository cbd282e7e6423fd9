"""The local LLM generators: zero-shot, few-shot and LoRA fine-tuned, constrained or free text.

``LocalLLM(mode, variant, **params)`` is what the ``llm-*`` factories build.  ``fit`` loads the
model, formats the task and runs the shared prompt prefix once; ``generate`` decodes a batch of
queries through ``engine.Engine``.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
import pandas as pd

from cfbench.api import FitContext, QueryResult, UserError, choices_error, phase
from cfbench_llm import models
from cfbench_llm.finetune import ensure_adapter, load_finetuned
from cfbench_llm.params import FAST, LOCAL_BY_MODE, VERIFIED, refuse_unused
from cfbench_llm.prompts import ExamplePool, PromptBuilder, load_templates, value_formats
from cfbench_llm.settings import Settings
from cfbench_llm.verify import Verifier

MODES = ("zeroshot", "fewshot", "finetuned")
VARIANTS = {
    "zeroshot": ("default", "freetext"),
    "fewshot": ("default", "retrieval", "freetext", "fast", "verified"),
    "finetuned": ("default",),
}


class LocalLLM:
    """An LLM counterfactual generator on a local Hugging Face model."""

    def __init__(self, mode: str, variant: str = "default", **params: Any) -> None:
        if mode not in MODES:
            raise choices_error("llm mode", mode, MODES)
        if variant not in VARIANTS[mode]:
            raise choices_error(f"variant of llm-{mode}", variant, VARIANTS[mode])
        refuse_unused(f"llm-{mode}", LOCAL_BY_MODE[mode], params)  # keys this mode never uses
        self.mode = mode
        self.variant = variant
        preset = {"fast": FAST, "verified": VERIFIED}.get(variant, {})
        if "quantize" not in params and (params.get("dtype") == "bfloat16"
                                         or str(params.get("device") or "").startswith("cuda")):
            preset = {**preset, "quantize": "none"}  # the preset's int8 is for CPUs in float32 only
        self.preset_int8_ = preset.get("quantize") == "int8" and "quantize" not in params
        self.settings = Settings.from_params({**preset, **params})
        self.freetext = variant == "freetext"
        self.retrieval = variant == "retrieval"
        self.verified = variant == "verified"
        self.cf_style = self.settings.cf_style
        if mode == "finetuned" and self.cf_style != "full":  # the adapter is trained on full rows
            raise UserError("llm-finetuned writes full rows (its training pairs are full rows); cf_style must be 'full'")

    # ------------------------------------------------------------------ fit
    def fit(self, context: FitContext) -> LocalLLM:
        s = self.settings
        t0 = time.perf_counter()
        if s.tune_malloc:
            models.tune_malloc()
        models.set_threads(s.threads)
        models.resolve_model(s.model, context.cache_dir)  # the embedded model converted on first use
        phase.ready()  # the shared set-up (GeneratorSpec.setup) is done: other LLM cells may start
        self.schema_ = context.schema
        self.seed_ = int(context.seed)
        self.names_ = context.schema.names
        self.predict_ = context.predict
        self.formats_ = value_formats(context.schema, context.X_train, s.digits)
        self.verifier_ = Verifier(context, self.formats_, s.compose) if self.verified else None
        self.builder_ = PromptBuilder(
            context.schema, self.formats_, context.class_names, context.task_name,
            context.task_description, load_templates(s.prompt_dir), s.row_style, s.sep, self.cf_style,
        )
        self.lower_, self.upper_ = context.schema.bounds()
        self.pool_ = None
        if self.mode == "fewshot":
            self.pool_ = ExamplePool(s.pool, seed=context.seed, sparse=self.cf_style == "edits").fit(context)
            if len(self.pool_) == 0:
                raise UserError(f"task {context.task_name!r}: no training row has a valid nearest-unlike-neighbour example")
        self.finetune_info_: dict[str, Any] = {}
        if self.preset_int8_ and models.device_and_dtype(s.device)[0] != "cpu":
            s.quantize = "none"  # device auto found a GPU: the preset's CPU int8 gives way to bfloat16
        self.dtype_ = models.inference_dtype(s.device, s.dtype, s.quantize)
        if self.mode == "finetuned":
            adapter, self.finetune_info_ = ensure_adapter(context, self.settings, self.builder_)
            self.model_, self.tok_ = load_finetuned(s.model, adapter, context.cache_dir, s.device, self.dtype_)
            if s.quantize == "int8":
                models.quantize_int8(self.model_)
        else:
            self.model_, self.tok_ = models.load(s.model, context.cache_dir, s.device, quantize=s.quantize,
                                                 dtype=self.dtype_)
        # engine imports torch and transformers (heavy optional dependencies): imported on first use
        from cfbench_llm.engine import Engine

        self.engine_ = Engine(self.model_, self.tok_)
        self.prefix_text_ = self._prefix_text(context.seed)
        t1 = time.perf_counter()
        self.prefix_ = self.engine_.prefix(self.prefix_text_)
        self.stats_ = {
            "fit_seconds": 0.0, "prefix_seconds": time.perf_counter() - t1,
            "prefix_tokens": len(self.prefix_.ids), "generate_seconds": 0.0, "queries": 0,
        }
        self.stats_["fit_seconds"] = time.perf_counter() - t0
        return self

    def _prefix_text(self, seed: int) -> str:
        b = self.builder_
        if self.mode == "finetuned":
            return b.finetune_header() + "\n"
        text = b.instructions()
        if self.mode == "fewshot" and not self.retrieval:
            s = self.settings
            picks = self.pool_.fixed(s.examples, seed if s.example_seed is None else s.example_seed)
            self.examples_ = picks
            return text + b.examples_block([self._example(i) for i in picks]) + "\n"
        return text + "\n"

    def _example(self, i: int) -> str:
        x, src, tgt, cf = self.pool_.pair(i)
        return (self.builder_.record_json if self.freetext else self.builder_.record)(x, src, tgt, cf)

    # ------------------------------------------------------------------ generate
    def generate(self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float) -> list[QueryResult]:
        """Counterfactuals for each query: one, greedy, when ``k`` = 1; else up to ``k`` distinct
        ones from ``samples`` candidates sampled at ``temperature``, seeded by the run's seed and
        the query (the same run, batched the same way, gives the same CFs: int8 layers scale activations per batch)."""
        t0 = time.perf_counter()
        X = queries[self.names_].to_numpy(float)
        targets = np.asarray(targets, dtype=int)
        sources = np.asarray(self.predict_(queries[self.names_]), dtype=int)
        k = max(int(k), 1)
        if self.verified:
            out = self._verified(X, sources, targets, k)
        else:
            n_draw = 1 if k == 1 else (self.settings.samples or 3 * k)
            got = self._decode(X, sources, targets, n_draw, sample_first=n_draw > 1)
            out = [g[0] if n_draw == 1 else self._distinct(g, k) for g in got]
        dtype = str(self.dtype_).removeprefix("torch.")
        for r in out:  # which float type the numbers came from: "auto" depends on the CPU
            r.extra["dtype"] = dtype
        self.stats_["generate_seconds"] += time.perf_counter() - t0
        self.stats_["queries"] += len(X)
        return out

    def _decode(self, X: np.ndarray, sources: np.ndarray, targets: np.ndarray, n_draw: int,
                sample_first: bool, notes: list[str] | None = None, round_: int = 0,
                max_edits: int | None = None, first: list[list[int | None]] | None = None) -> list[list[QueryResult]]:
        """``n_draw`` decoded answers per query, in one engine run.  Draw 0 is greedy unless
        ``sample_first``; the others are sampled, each seeded by the run's seed, the query, the
        round and the draw.  ``notes[q]`` is text put before query ``q``'s counterfactual (verified
        rounds); ``max_edits`` overrides the setting of that name; ``first[q][draw]``, if not None,
        is the feature an edits-style draw must change first (the verified variants' ``steer``)."""
        # engine imports torch and transformers (heavy optional dependencies): imported on first use
        from cfbench_llm.engine import build_program, edits_program, free_program

        b = self.builder_
        cap = self.settings.max_new_tokens or 12 * len(b.mutable) + 16
        programs, lines = [], []
        for q, (x, src, tgt) in enumerate(zip(X, sources, targets, strict=True)):
            head, tail = b.query_text(x, src, tgt, json_format=self.freetext)
            if notes is not None and notes[q]:  # between the patient line and the counterfactual's
                before, nl, last = head.rpartition("\n")
                head = before + nl + notes[q] + last
            if self.retrieval:
                picks = self.pool_.nearest(x, int(src), self.settings.examples)
                head = b.examples_block([self._example(i) for i in picks]).lstrip("\n") + "\n" + head
            for draw in range(n_draw):
                if self.freetext:
                    # end at ":" so the model writes ' {"' itself, tokenized as in the examples
                    prog = free_program(self.engine_.vocab, head.rstrip(" "), cap)
                    segs = None
                elif self.cf_style == "edits":
                    prog = edits_program(self.engine_.vocab, head, self.names_, b.mutable, self.formats_, tail,
                                         self.settings.max_edits if max_edits is None else max_edits, query=x,
                                         first=None if first is None else first[q][draw])
                    segs = None
                else:
                    segs = b.cf_segments(x, tail)
                    prog = build_program(self.engine_.vocab, head, segs, self.formats_, query=x)
                if draw > 0 or sample_first:
                    prog.rng = self._rng(x, int(tgt), draw + round_ * n_draw)
                programs.append(prog)
                lines.append(segs)
        decoded = self.engine_.run(self.prefix_, programs, self.settings.batch_size,
                                   temperature=float(self.settings.temperature))
        return [[self._one(x, lines[i], decoded[i], programs[i]) for i in range(q * n_draw, (q + 1) * n_draw)]
                for q, x in enumerate(X)]

    def _verified(self, X: np.ndarray, sources: np.ndarray, targets: np.ndarray, k: int) -> list[QueryResult]:
        """The verified variant (``verify.Verifier.search``): ``samples`` candidates per query and
        round, decoded in one engine run; a later round's prompt lists the rejected candidates
        and its edit cap grows by ``max_edits`` (3, 6, 9, ... features; uncapped stays uncapped)."""
        s = self.settings
        n_draw = s.samples or 8
        ranks = self.verifier_.steer(X, targets) if s.steer and self.cf_style == "edits" else None

        def propose(pending: np.ndarray, notes: list[str], r: int) -> list[list[QueryResult]]:
            first = None
            if ranks is not None:  # sampled draw d of round r starts from the (r(n-1) + d)-th ranked feature
                first = [[None] + [int(ranks[q][(r * (n_draw - 1) + d) % len(ranks[q])]) for d in range(n_draw - 1)]
                         for q in pending]
            return self._decode(X[pending], sources[pending], targets[pending], n_draw, sample_first=False,
                                notes=notes, round_=r, max_edits=s.max_edits * (r + 1), first=first)

        return self.verifier_.search(X, sources, targets, k, s.rounds, propose, self.builder_.feedback)

    def _rng(self, x: np.ndarray, target: int, draw: int) -> Any:
        """A torch generator for one candidate, seeded by the run's seed, the query and ``draw``."""
        import torch  # heavy optional dependency: imported on first use

        h = hashlib.sha256(np.asarray(x, dtype="<f8").tobytes())
        h.update(f"|{self.seed_}|{target}|{draw}".encode())
        return torch.Generator().manual_seed(int.from_bytes(h.digest()[:8], "little") >> 1)

    def _distinct(self, got: list[QueryResult], k: int) -> QueryResult:
        """Up to ``k`` distinct CFs from the candidates, in draw order; with none parsed, the first
        candidate's failure.  ``extra`` counts the draws and the distinct CFs among them."""
        ok = [r for r in got if r.status == "ok"]
        if not ok:
            return got[0]
        keep, seen = [], set()
        for r in ok:
            row = tuple(r.cfs.to_numpy(float)[0].tolist())
            if row not in seen:
                seen.add(row)
                keep.append(r)
        first = keep[0]
        extra = {**first.extra, "samples": len(got), "parsed": len(ok), "distinct": len(keep),
                 "new_tokens": sum(r.extra.get("new_tokens", 0) for r in got)}
        if any("edited" in r.extra for r in keep[:k]):
            extra["edited"] = [r.extra.get("edited") for r in keep[:k]]
        cfs = pd.concat([r.cfs for r in keep[:k]], ignore_index=True)
        raw = "".join(r.raw or "" for r in keep[:k])
        return QueryResult.ok(cfs, raw=raw, extra=extra)

    def _one(self, x: np.ndarray, segs: list | None, dec: Any, prog: Any) -> QueryResult:
        """One decoded answer as a ``QueryResult`` (one CF, or why it is not one)."""
        b = self.builder_
        extra = {"prompt_tokens": dec.prompt_tokens, "new_tokens": dec.new_tokens}
        if self.freetext:
            raw = dec.values[0] if dec.values else ""
            cf, why = b.parse_json(raw, x)
            if cf is None:
                return QueryResult("invalid_output", None, f"free-text answer not parsed: {why}", raw=raw, extra=extra)
            # free text is not constrained: a copy of the query is returned as written (and
            # counted invalid by the metrics), flagged here so it is easy to find
            extra["unchanged"] = bool(np.array_equal(cf, np.asarray(x, dtype=float), equal_nan=True))
        elif segs is None:  # edits: the features the model chose, each value a complete number
            cf, raw = x.copy(), dec.raw
            for j, text in prog.edits:
                cf[j] = self._value(j, text, x)
            extra["edited"] = [self.names_[j] for j, _ in prog.edits]
        else:
            try:
                cf, raw = self._assemble(x, segs, dec.values)
            except (ValueError, StopIteration):  # not reachable through the grammar; kept honest
                return QueryResult("invalid_output", None, "constrained value did not parse", raw=dec.raw, extra=extra)
        if self.settings.clip:
            clipped = np.clip(cf, np.nan_to_num(self.lower_, nan=-np.inf), np.nan_to_num(self.upper_, nan=np.inf))
            extra["clipped"] = int(np.sum(clipped != cf))
            cf = clipped
        return QueryResult.ok(pd.DataFrame([cf], columns=self.names_), raw=raw, extra=extra)

    def _assemble(self, x: np.ndarray, segs: list, values: list[str]) -> tuple[np.ndarray, str]:
        """The CF row from the slot strings, and the line as written (literals + values).

        A value written exactly as the query's value appears in the prompt means "unchanged", so
        the query's unrounded value is kept rather than its rounded copy.
        """
        cf = np.asarray(x, dtype=float).copy()
        parts, it = [], iter(values)
        for seg in segs:
            if seg.slot < 0:
                parts.append(seg.text)
                continue
            text = next(it)
            parts.append(text)
            cf[seg.slot] = self._value(seg.slot, text, x)
        return cf, "".join(parts)

    def _value(self, j: int, text: str, x: np.ndarray) -> float:
        """Feature ``j``'s CF value from a slot's text (a complete number, by the grammar); written
        exactly as the query's value appears in the prompt, it means "unchanged": ``x[j]`` unrounded."""
        value = float(text)
        return float(x[j]) if value == float(self.formats_[j].format(x[j])) else value
