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

from cfbench.api import FitContext, QueryResult, UserError, choices_error, mad, phase
from cfbench_llm import models
from cfbench_llm.finetune import ensure_adapter, load_finetuned
from cfbench_llm.params import FAST, LOCAL_BY_MODE, VERIFIED, refuse_unused
from cfbench_llm.prompts import ExamplePool, PromptBuilder, load_templates, sparsify, value_formats
from cfbench_llm.settings import Settings

#: bisection steps per changed numeric feature when ``verified`` shortens its valid candidates
REFINE_STEPS = 6
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
        if self.verified:
            self.classes_ = np.asarray(context.classes)
            self.predict_proba_ = context.predict_proba
            self.mad_ = mad(context.X_train[context.schema.names].to_numpy(float))
            self.categorical_ = context.schema.mask("kind", "categorical")
            self.directions_ = context.schema.directions()
            X_train = context.X_train[context.schema.names].to_numpy(float)
            self.span_ = np.ptp(X_train, axis=0)
        self.formats_ = value_formats(context.schema, context.X_train, s.digits)
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
        the query (the same run gives the same CFs, whatever the batching)."""
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
                max_edits: int | None = None) -> list[list[QueryResult]]:
        """``n_draw`` decoded answers per query, in one engine run.  Draw 0 is greedy unless
        ``sample_first``; the others are sampled, each seeded by the run's seed, the query, the
        round and the draw.  ``notes[q]`` is text put before query ``q``'s counterfactual (verified
        rounds); ``max_edits`` overrides the setting of that name."""
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
                                         self.settings.max_edits if max_edits is None else max_edits, query=x)
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
        """The verified variant: ``samples`` candidates per query; those that change a feature out
        of its bounds or against its direction are dropped, the rest are checked with the
        classifier; the ``k`` valid ones closest to the query (L1/MAD, +1 per changed categorical), preferring
        different changed-feature sets.  Queries with no valid candidate go to another round whose
        prompt lists (up to 3 of) the rejected candidates, most probable first, and whose edit cap
        grows by ``max_edits`` (3, 6, 9, ... features; uncapped stays uncapped)."""
        s = self.settings
        n_draw = s.samples or 8
        found: list[list[tuple[float, np.ndarray, QueryResult]]] = [[] for _ in X]
        tried = np.zeros(len(X), dtype=int)
        rounds = np.zeros(len(X), dtype=int)
        broke = np.zeros(len(X), dtype=int)
        new_tokens, prompt_tokens = np.zeros(len(X), dtype=int), np.zeros(len(X), dtype=int)
        notes = [""] * len(X)
        pending = np.arange(len(X))
        for r in range(s.rounds):
            got = self._decode(X[pending], sources[pending], targets[pending], n_draw, sample_first=False,
                               notes=[notes[q] for q in pending], round_=r, max_edits=s.max_edits * (r + 1))
            cands = [(q, res) for q, g in zip(pending, got, strict=True) for res in g if res.status == "ok"]
            tried[pending] += n_draw
            for q, g in zip(pending, got, strict=True):
                new_tokens[q] += sum(res.extra.get("new_tokens", 0) for res in g)
                prompt_tokens[q] += sum(res.extra.get("prompt_tokens", 0) for res in g)
            rounds[pending] += 1
            rejected: dict[int, list[tuple[float, np.ndarray]]] = {}
            if cands:
                rows = np.stack([res.cfs.to_numpy(float)[0] for _, res in cands])
                proba = np.asarray(self.predict_proba_(pd.DataFrame(rows, columns=self.names_)), dtype=float)
                pred = self.classes_[np.argmax(proba, axis=1)]
                p_target = proba[np.arange(len(cands)), np.searchsorted(self.classes_, targets[[q for q, _ in cands]])]
                breaks = self._breaks_constraints(X[[q for q, _ in cands]], rows)
                for (q, res), row, yhat, pt, bad in zip(cands, rows, pred, p_target, breaks, strict=True):
                    if bad:
                        broke[q] += 1
                    elif yhat == targets[q]:
                        found[q].append((self._distance(X[q], row), row, res))
                    else:
                        rejected.setdefault(q, []).append((float(pt), row))
            pending = np.array([q for q in pending if not found[q]], dtype=int)
            if len(pending) == 0 or r + 1 == s.rounds:
                break
            for q in pending:  # what the next round shows: the most probable rejected candidates
                rej = sorted(rejected.get(q, []), key=lambda t: -t[0])
                if rej:
                    notes[q] = self.builder_.feedback(X[q], int(sources[q]), int(targets[q]),
                                                      [row for _, row in rej[:3]])
        found = self._refined(X, targets, found)
        out = []
        for q in range(len(X)):
            extra = {"samples": int(tried[q]), "rounds": int(rounds[q]), "valid_candidates": len(found[q]),
                     "broke_constraints": int(broke[q]),
                     "new_tokens": int(new_tokens[q]), "prompt_tokens": int(prompt_tokens[q])}
            if not found[q]:
                out.append(QueryResult.not_found(
                    f"no valid counterfactual among {tried[q]} candidates in {rounds[q]} round(s)", extra=extra))
                continue
            keep = self._closest_diverse(X[q], found[q], k)
            extra["distinct"] = len({tuple(row.tolist()) for _, row, _ in found[q]})
            if self.cf_style == "edits":
                extra["edited"] = [res.extra.get("edited") for _, _, res in keep]
            cfs = pd.DataFrame(np.stack([row for _, row, _ in keep]), columns=self.names_)
            out.append(QueryResult.ok(cfs, raw="".join(res.raw or "" for _, _, res in keep), extra=extra))
        return out

    def _refined(self, X: np.ndarray, targets: np.ndarray,
                 found: list[list[tuple[float, np.ndarray, Any]]]) -> list[list[tuple[float, np.ndarray, Any]]]:
        """Every valid candidate shortened with the classifier (all queries in one batch): the
        changes it does not need are reverted, smallest first (``prompts.sparsify``), then each
        remaining numeric change is moved toward the query by ``REFINE_STEPS`` bisection steps
        on the feature's written grid, kept only while the classifier still gives the target.
        Moving toward the query keeps the change's direction, and values stay in their bounds."""
        owner = [q for q, cands in enumerate(found) for _ in cands]
        if not owner:
            return found
        idx = np.asarray(owner)
        Xq, tq = X[idx], targets[idx]
        C = np.stack([row for cands in found for _, row, _ in cands])

        def predict(D: pd.DataFrame | np.ndarray) -> np.ndarray:
            frame = D if isinstance(D, pd.DataFrame) else pd.DataFrame(D, columns=self.names_)
            return self.classes_[np.argmax(np.asarray(self.predict_proba_(frame), dtype=float), axis=1)]

        C0 = C
        C = sparsify(Xq, C, tq, self.mad_, predict, self.names_)
        same = (C == Xq).all(axis=1)  # a classifier that accepts the query itself: keep a change
        C[same] = C0[same]
        lo = np.nan_to_num(self.lower_, nan=-np.inf)
        hi = np.nan_to_num(self.upper_, nan=np.inf)
        for j in np.flatnonzero(~self.categorical_):
            moved = np.flatnonzero(C[:, j] != Xq[:, j])
            if not len(moved):
                continue
            good, bad = C[moved, j].copy(), Xq[moved, j].copy()
            fmt = self.formats_[j]
            for _ in range(REFINE_STEPS):
                mid = np.clip([float(fmt.format(v)) for v in (good + bad) / 2], lo[j], hi[j])
                step = (mid != good) & (mid != bad)
                if not step.any():
                    break
                trial = C[moved[step]].copy()
                trial[:, j] = mid[step]
                ok = predict(trial) == tq[moved[step]]
                rows = np.flatnonzero(step)
                good[rows[ok]] = mid[step][ok]
                bad[rows[~ok]] = mid[step][~ok]
            C[moved, j] = good
        out: list[list[tuple[float, np.ndarray, Any]]] = [[] for _ in found]
        for q, row, (_, _, res) in zip(owner, C, (c for cands in found for c in cands), strict=True):
            out[q].append((self._distance(X[q], row), row, res))
        return out

    def _breaks_constraints(self, X: np.ndarray, C: np.ndarray) -> np.ndarray:
        """Per candidate: a *changed* feature left its bounds or moved against its direction
        (immutables are copied by the grammar).  A value the query already had out of bounds
        is the patient's, not the candidate's fault, so it is not held against it."""
        change = np.abs(C - X) > 1e-6 * np.where(self.span_ > 0, self.span_, 1.0)
        with np.errstate(invalid="ignore"):
            outside = (C < self.lower_) | (C > self.upper_)
        against = (self.directions_ != 0) & (self.directions_ * (C - X) < 0)
        return ((outside | against) & change).any(axis=1)

    def _distance(self, x: np.ndarray, c: np.ndarray) -> float:
        """L1 over numeric features in units of their training MAD, plus 1 per changed categorical."""
        d = np.abs(c - x)
        cat = self.categorical_
        return float((d[~cat] / self.mad_[~cat]).sum() + (d[cat] > 0).sum())

    @staticmethod
    def _closest_diverse(x: np.ndarray, found: list[tuple[float, np.ndarray, Any]], k: int) -> list:
        """Up to ``k`` distinct valid CFs, closest first; a CF changing the same set of features as
        one already chosen waits until every other set has had its turn."""
        ranked, seen_rows = [], set()
        for item in sorted(found, key=lambda t: t[0]):
            key = tuple(item[1].tolist())
            if key not in seen_rows:
                seen_rows.add(key)
                ranked.append(item)
        chosen, sets = [], set()
        for item in ranked:
            changed = tuple(np.flatnonzero(item[1] != x))
            if changed not in sets:
                sets.add(changed)
                chosen.append(item)
        chosen += [item for item in ranked if all(item is not c for c in chosen)]
        return chosen[:k]

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
