"""How far each local LLM cell is from what this CPU can do: tokens, floating-point work, and
the time a bfloat16 matmul of the same shapes takes here.

Each local variant (``llm-*``, every variant ``cfbench run --methods all`` runs) is fitted and
then asked for CFs exactly as the runner asks it (``generate`` on chunks of the plugin's batch,
k = 1), one core by default (the headline runs two cells at once, one core each).  The engine
is watched from outside (its methods wrapped, nothing in it changed) to count, per cell:

- **prefill**: the shared prefix (once per fit) and the queries' heads (the text after the
  prefix: the patient line, and retrieval's examples), as real tokens and as the token slots
  computed (heads are left-padded to the batch's longest);
- **decode**: tokens the model chose (one per step and sequence) and tokens the harness
  *forced* (literal text between values, fed along with the chosen ones; a sequence's last
  tokens are not fed), and the token slots the decoding steps computed (padding included);
- the forward passes and the time in them, the time choosing tokens (logits over the allowed
  tokens, or the whole vocabulary for free text), and the rest (Python: programs, batching).

The work: ``2 x`` the weights of the decoder's linear layers per token slot, attention
(``4 x keys x heads x head_dim`` per slot and layer, keys bounded by the sliding window on
sliding layers) and logits (``2 x d`` per allowed token, the whole vocabulary for a free-text
row).  The **limit** is the time of the same matmuls in bfloat16 on this machine, one thread:
each forward's linear layers timed at its very row count (``F.linear``, best of three), the
full-vocabulary logits likewise, attention at the best bfloat16 rate measured.  A cell's
"× limit" is its measured time over that: how much faster it could be if only the matmuls cost.

    python benchmarks/bench_llm_limit.py --task ai-readi --queries 100 [--configs all] [--json out.json]
    python benchmarks/bench_llm_limit.py --configs fewshot:default --queries 10     # one variant, quickly
    python benchmarks/bench_llm_limit.py --configs fewshot:default --queries 50 --batch-probe 25,50,10

``--batch-probe`` answers, instead, whether batching more rows together would help: the same
queries decoded in one ``generate`` at each batch size, timed, and how many answers are
identical to those at the first size.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


class Watch:
    """Counts and times what the engine does, by wrapping its methods (restored by ``close``)."""

    def __init__(self) -> None:
        from cfbench_llm.engine import Engine

        self.Engine = Engine
        self.saved: dict[str, object] = {}
        self.reset()
        w = self

        def wrap(name, fn):
            self.saved[name] = vars(Engine)[name]
            setattr(Engine, name, fn)

        orig = dict(vars(Engine))

        def prefix(eng, text):
            n = len(eng.tok.encode(text, add_special_tokens=True))
            t0 = time.perf_counter()
            out = orig["prefix"](eng, text)
            w.add("prefix", rows=1, q=n, keys=[(n + 1) / 2.0] * 1, seconds=time.perf_counter() - t0, eng=eng)
            w.c["prefix_tokens"] += n
            return out

        def start_batch(eng, prefix, progs):
            batch, ids = orig["_start_batch"](eng, prefix, progs)
            heads = {tuple(p.head) for p in progs}
            w.c["head_tokens"] += sum(len(h) for h in heads)
            w.c["sequences"] += len(progs)
            return batch, ids

        def forward_batch(eng, batch, x, t):
            rows, q = x.shape
            kind = w.kind
            t0 = time.perf_counter()
            out = orig["_forward_batch"](eng, batch, x, t)
            dt = time.perf_counter() - t0
            # keys each query token attends to: every slot up to it (prefix included; padding
            # slots are computed too); sliding layers at most the window (plus padding holes)
            full = t + (q + 1) / 2.0
            holes = max((s.holes for s in batch.rows), default=0)
            slide = min(full, (batch.window or full) + holes)
            w.add(kind, rows=rows, q=q, keys=(full, slide), seconds=dt, eng=eng)
            return out

        def run_heads(eng, batch, ids):
            w.kind = "head"
            try:
                return orig["_run_heads"](eng, batch, ids)
            finally:
                w.kind = "step"

        def feed(eng, batch):
            w.c["fed_tokens"] += sum(len(s.feed) for s in batch.rows if not s.done)
            return orig["_feed"](eng, batch)

        def accept(eng, s, tokid, piece):
            w.c["chosen_tokens"] += 1
            return orig["_accept"](eng, s, tokid, piece)

        def end_slot(s, forced):
            w.c["forced_tokens"] += len(forced)
            return orig["_end_slot"].__func__(s, forced)

        def choose(eng, hidden, row, need, progs, slot_i, text):
            from cfbench_llm.engine import Slot

            free = [b for b in need if isinstance(progs[b].slots[slot_i[b]], Slot) and progs[b].slots[slot_i[b]].fmt is None]
            if free:
                w.c["free_rows"] += len(free)
                w.free_batches[len(free)] += 1
            t0 = time.perf_counter()
            out = orig["_choose"](eng, hidden, row, need, progs, slot_i, text)
            w.c["choose_seconds"] += time.perf_counter() - t0
            return out

        wrap("prefix", prefix)
        wrap("_start_batch", start_batch)
        wrap("_forward_batch", forward_batch)
        wrap("_run_heads", run_heads)
        wrap("_feed", feed)
        wrap("_accept", accept)
        wrap("_end_slot", staticmethod(end_slot))
        wrap("_choose", choose)

    def reset(self) -> None:
        self.c: dict[str, float] = defaultdict(float)
        self.forwards: list[dict] = []
        self.free_batches: dict[int, int] = defaultdict(int)
        self.kind = "step"
        self.shape: dict | None = None

    def add(self, kind: str, rows: int, q: int, keys, seconds: float, eng) -> None:
        if self.shape is None:
            self.shape = model_shape(eng.model)
        self.forwards.append({"kind": kind, "rows": rows, "q": q, "keys": keys, "seconds": seconds})

    def close(self) -> None:
        for name, fn in self.saved.items():
            setattr(self.Engine, name, fn)


def model_shape(model) -> dict:
    """The decoder's linear layers (as (out, in) shapes, one layer's worth), layer count and
    attention geometry: what the work and the limit are computed from."""
    import torch

    cfg = model.config
    cfg = getattr(cfg, "text_config", cfg)
    layers = model.get_decoder().layers
    shapes = []
    for mod in layers[0].modules():
        w = getattr(mod, "weight", None)
        if isinstance(mod, torch.nn.Linear) or (callable(w) and hasattr(mod, "in_features")):
            shapes.append((int(mod.out_features), int(mod.in_features)))
    types = list(getattr(cfg, "layer_types", None) or ["full_attention"] * len(layers))
    return {
        "linear": shapes, "layers": len(layers), "hidden": int(cfg.hidden_size),
        "heads": int(cfg.num_attention_heads), "head_dim": int(getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)),
        "sliding_layers": sum(t == "sliding_attention" for t in types), "vocab": int(model.get_output_embeddings().weight.shape[0]),
    }


class Limit:
    """bfloat16 matmul times on this machine, one thread, for the shapes the cells ran."""

    def __init__(self, shape: dict) -> None:
        import torch

        self.torch = torch
        self.shape = shape
        gen = torch.Generator().manual_seed(0)
        self.weights = [torch.randn(o, i, generator=gen).to(torch.bfloat16) for o, i in shape["linear"]]
        self.vocab_w = None
        self.lin: dict[int, float] = {}
        self.logit: dict[int, float] = {}
        self.peak = 0.0  # best FLOP/s seen

    def _time(self, fn, flops: float) -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        self.peak = max(self.peak, flops / best)
        return best

    def linear(self, m: int) -> float:
        """Seconds of every decoder layer's linear layers on ``m`` token slots."""
        if m not in self.lin:
            F, torch = self.torch.nn.functional, self.torch
            xs = {i: torch.randn(m, i).to(torch.bfloat16) for _, i in self.shape["linear"]}
            flops = 2.0 * m * sum(o * i for o, i in self.shape["linear"])
            one = self._time(lambda: [F.linear(xs[w.shape[1]], w) for w in self.weights], flops)
            self.lin[m] = one * self.shape["layers"]
        return self.lin[m]

    def logits(self, m: int) -> float:
        """Seconds of ``m`` rows' logits over the whole vocabulary."""
        if m not in self.logit:
            torch = self.torch
            if self.vocab_w is None:
                self.vocab_w = torch.randn(self.shape["vocab"], self.shape["hidden"]).to(torch.bfloat16)
            x = torch.randn(m, self.shape["hidden"]).to(torch.bfloat16)
            flops = 2.0 * m * self.vocab_w.numel()
            self.logit[m] = self._time(lambda: torch.nn.functional.linear(x, self.vocab_w), flops)
        return self.logit[m]


def summarize(name: str, w: Watch, lim: Limit, row: dict) -> dict:
    """One cell's table row: tokens, work (GFLOP), measured seconds, limit seconds."""
    sh = w.shape
    per_slot_linear = 2.0 * sum(o * i for o, i in sh["linear"]) * sh["layers"]
    attn_unit = 4.0 * sh["heads"] * sh["head_dim"]  # FLOPs per query token, key and layer
    n_full = sh["layers"] - sh["sliding_layers"]
    lin_flops = attn_flops = lin_limit = 0.0
    slots = defaultdict(float)
    secs = defaultdict(float)
    for f in w.forwards:
        m = f["rows"] * f["q"]
        slots[f["kind"]] += m
        secs[f["kind"]] += f["seconds"]
        lin_flops += m * per_slot_linear
        lin_limit += lim.linear(m)
        if f["kind"] == "prefix":
            full = slide = f["keys"][0]
        else:
            full, slide = f["keys"]
        attn_flops += m * attn_unit * (n_full * full + sh["sliding_layers"] * slide)
    free_flops = 2.0 * w.c["free_rows"] * sh["vocab"] * sh["hidden"]
    free_limit = sum(n * lim.logits(m) for m, n in w.free_batches.items())
    attn_limit = attn_flops / lim.peak
    limit = lin_limit + attn_limit + free_limit
    fwd = sum(f["seconds"] for f in w.forwards)
    measured = row["generate_s"] + row["prefix_s"]
    forced = w.c["forced_tokens"]
    n = row["queries"]
    gflop = (lin_flops + attn_flops + free_flops) / 1e9
    return {
        "cell": name, "queries": n, "dtype": row.get("dtype"),
        "prefix_tokens": int(w.c["prefix_tokens"]), "head_tokens": int(w.c["head_tokens"]),
        "head_slots": int(slots["head"]), "chosen_tokens": int(w.c["chosen_tokens"]),
        "forced_tokens": int(forced), "step_slots": int(slots["step"]),
        "free_rows": int(w.c["free_rows"]), "forwards": len(w.forwards),
        "gflop": gflop, "gflop_linear": lin_flops / 1e9, "gflop_attention": attn_flops / 1e9,
        "gflop_vocab": free_flops / 1e9,
        "seconds": measured, "forward_seconds": fwd, "choose_seconds": w.c["choose_seconds"],
        "other_seconds": measured - fwd - w.c["choose_seconds"],
        "gflops_per_s": gflop / measured if measured else float("nan"),
        "limit_seconds": limit, "x_limit": measured / limit if limit else float("nan"),
        "s_per_cf": row["s_per_cf"], "fit_s": row["fit_s"],
    }


def batch_probe(task, ctx, q, mode: str, variant: str, sizes: list[int], threads: int) -> list[dict]:
    """The same queries, one ``generate`` each at every batch size in ``sizes``: seconds, and
    answers (raw text and CF) identical to those at ``sizes[0]``."""
    from cfbench_llm.generator import LocalLLM

    names = task.schema.names
    rows, first = [], None
    for size in sizes:
        gen = LocalLLM(mode, variant, threads=threads, batch_size=size).fit(ctx)
        t0 = time.perf_counter()
        res = gen.generate(q[names], q.target.to_numpy(), 1, 60.0)
        dt = time.perf_counter() - t0
        answers = [(r.raw, None if r.cfs is None else r.cfs[names].to_numpy().tolist()) for r in res]
        first = first if first is not None else answers
        rows.append({"batch_size": size, "seconds": dt, "queries": len(res),
                     "identical": sum(a == b for a, b in zip(first, answers, strict=True))})
    return rows


def table(rows: list[dict], meta: dict) -> str:
    out = [f"task {meta['task']}, {meta['queries']} queries, {meta['threads']} thread(s); "
           f"bfloat16 matmul peak here: {meta['peak_gflops']:.0f} GFLOP/s; a decoder layer's matmuls by rows: "
           + ", ".join(f"{m}: {g:.0f}" for m, g in (meta.get("bf16_gflops_by_rows") or {}).items()),
           "",
           "| cell | dtype | prefill: prefix / heads (slots) | decode: chosen / forced (slots) | full-vocab rows | "
           "GFLOP | measured s | in forwards / choosing / other | GFLOP/s | limit s | × limit |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "failed" in r:
            out.append(f"| {r['cell']} | failed: {r['failed']} |")
            continue
        out.append(
            f"| {r['cell']} | {r['dtype']} | {r['prefix_tokens']} / {r['head_tokens']} ({r['head_slots']}) | "
            f"{r['chosen_tokens']} / {r['forced_tokens']} ({r['step_slots']}) | {r['free_rows']} | {r['gflop']:.0f} | "
            f"{r['seconds']:.1f} | {r['forward_seconds']:.1f} / {r['choose_seconds']:.1f} / {r['other_seconds']:.1f} | "
            f"{r['gflops_per_s']:.0f} | {r['limit_seconds']:.1f} | {r['x_limit']:.1f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="ai-readi")
    ap.add_argument("--queries", type=int, default=100, help="queries, half per class (the headline: 100)")
    ap.add_argument("--configs", default="all", help="mode:variant list, or 'all' (every local variant)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the headline's cells: 1)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--batch-probe", default=None, metavar="SIZES",
                    help="comma-separated batch sizes: time one config at each and count the answers "
                         "identical to those at the first size (instead of the limit table)")
    args = ap.parse_args(argv)

    import torch
    from bench_llm import _queries, run_ours
    from cfbench_llm import models
    from cfbench_llm.generator import VARIANTS

    from cfbench.score.summary import fit_scorer
    from cfbench.tasks.spec import Task, resolve_spec

    configs = ([f"{m}:{v}" for m, vs in VARIANTS.items() for v in vs] if args.configs == "all"
               else args.configs.split(","))
    for c in configs:
        m, _, v = c.partition(":")
        if m not in VARIANTS or (v or "default") not in VARIANTS[m]:
            raise SystemExit(f"bench_llm_limit: unknown config {c!r}; valid: "
                             + ", ".join(f"{m}:{v}" for m, vs in VARIANTS.items() for v in vs))
    sizes = []
    if args.batch_probe is not None:
        try:
            sizes = [int(x) for x in args.batch_probe.split(",")]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 1 or len(configs) != 1:
            raise SystemExit(f"bench_llm_limit: --batch-probe needs positive integers and one config, "
                             f"got {args.batch_probe!r} with {len(configs)} config(s)")
    threads = models.set_threads(args.threads)
    task = Task.load(resolve_spec(args.task))
    ctx = task.fit_context(seed=0)
    q = _queries(task, args.queries)
    if sizes:
        mode, _, variant = configs[0].partition(":")
        probe = batch_probe(task, ctx, q, mode, variant or "default", sizes, threads)
        for r in probe:
            print(f"batch {r['batch_size']}: {r['seconds']:.1f} s; {r['identical']}/{r['queries']} answers "
                  f"identical to batch {sizes[0]}'s")
        return 0
    scorer = fit_scorer(task)
    watch = Watch()
    rows, lims = [], None
    try:
        for c in configs:
            mode, _, variant = c.partition(":")
            watch.reset()
            try:
                row, gen = run_ours(task, ctx, q, mode, variant or "default", scorer, threads=threads)
            except Exception as exc:  # noqa: BLE001 - one variant's failure is its row, the rest go on
                rows.append({"cell": f"llm-{c}", "failed": f"{type(exc).__name__}: {exc}"})
                continue
            row["dtype"] = str(gen.dtype_).removeprefix("torch.") + (" int8" if gen.settings.quantize == "int8" else "")
            del gen
            if lims is None:
                lims = Limit(watch.shape)
            rows.append(summarize(f"llm-{c}" if variant != "default" else f"llm-{mode}", watch, lims, row))
            print(f"{c}: done", file=sys.stderr)
    finally:
        watch.close()
    meta = {"task": args.task, "queries": len(q), "threads": threads, "cpus": os.cpu_count(),
            "torch": torch.__version__, "peak_gflops": (lims.peak / 1e9) if lims else float("nan"),
            "when": time.strftime("%Y-%m-%d %H:%M")}
    if lims is not None:  # the rate a decoder layer's matmuls reach, by rows per matmul
        meta["bf16_gflops_by_rows"] = {m: 2.0 * m * sum(o * i for o, i in lims.shape["linear"]) * lims.shape["layers"]
                                       / lims.linear(m) / 1e9 for m in (1, 8, 25, 50, 100, 200, 400, 1024)}
    print(table(rows, meta))
    if args.json:
        from cfbench.core.strict_json import dumps

        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
