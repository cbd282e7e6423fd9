"""Speed of the local LLM generators against the naive loop, measured in the same process.

Naive loop: the few-shot prompt with free-text JSON, ``model.generate`` (greedy, stop at a
newline), one query at a time.  ``llm-fewshot`` (fixed examples, constrained decoding, shared
prefix computed once, queries batched) is timed over ``--queries`` queries; its s/CF is given
both for generation alone and with the one-off prefix amortised.  Peak memory is the process's
peak RSS after the constrained run (the model included), before the naive loop runs.

    python benchmarks/bench_llm.py --task ai-readi --queries 100 --naive 5 [--threads 2] [--json out.json]
    python benchmarks/bench_llm.py --configs fast --naive 0      # peak memory of one variant alone
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import pandas as pd


def _queries(task, n: int) -> pd.DataFrame:
    per_class = -(-n // 2)
    q = task.queries(n_per_class=per_class)
    return q.groupby("source", group_keys=False).head(per_class).head(n).reset_index(drop=True)


def _validity(task, res, q) -> tuple[float, float]:
    ok = [i for i, r in enumerate(res) if r.status == "ok"]
    if not ok:
        return 0.0, 0.0
    cfs = pd.concat([res[i].cfs for i in ok])
    valid = task.predict(cfs) == q.target.to_numpy()[ok]
    return len(ok) / len(res), float(valid.sum()) / len(res)


def run_ours(task, ctx, q, variant: str, **params) -> dict:
    from cfbench_llm.generator import LocalLLM

    t0 = time.perf_counter()
    gen = LocalLLM("fewshot", variant, **params).fit(ctx)
    fit_s = time.perf_counter() - t0
    before = dict(gen.engine_.stats)
    t1 = time.perf_counter()
    res = gen.generate(q[task.schema.names], q.target.to_numpy(), 1, 60.0)
    gen_s = time.perf_counter() - t1
    parsed, valid = _validity(task, res, q)
    tokens = gen.engine_.stats["forward_tokens"] - before["forward_tokens"]
    n = len(q)
    return {
        "method": f"llm-fewshot:{variant}", "queries": n, "fit_s": fit_s,
        "prefix_tokens": gen.stats_["prefix_tokens"], "prefix_s": gen.stats_["prefix_seconds"],
        "generate_s": gen_s, "s_per_cf": gen_s / n, "s_per_cf_with_prefix": (gen_s + gen.stats_["prefix_seconds"]) / n,
        "tokens_processed": tokens, "tokens_per_s": tokens / gen_s,
        "new_tokens_per_cf": float(np.mean([r.extra.get("new_tokens", 0) for r in res])),
        "parse_rate": parsed, "valid_rate": valid, "peak_rss_gb": _peak_gb(),
    }, gen


def run_naive(task, gen, q) -> dict:
    """One query at a time: full few-shot JSON prompt, ``generate`` greedy, stop at a newline."""
    import torch

    model, tok, b = gen.model_, gen.tok_, gen.builder_
    pool = gen.pool_
    prefix = b.instructions() + b.examples_block([b.record_json(*pool.pair(i)) for i in gen.examples_]) + "\n"
    X = q[task.schema.names].to_numpy(float)
    src = task.predict(q[task.schema.names])
    cap = 12 * len(b.mutable) + 16
    stop = sorted(gen.engine_.vocab.newline_ids | gen.engine_.vocab.eos)
    results, tokens, t0 = [], 0, time.perf_counter()
    for x, s, t in zip(X, src, q.target.to_numpy(), strict=True):
        head, _ = b.query_text(x, int(s), int(t), json_format=True)
        ids = tok(prefix + head.rstrip(" "), return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=cap, do_sample=False, eos_token_id=stop,
                                 pad_token_id=tok.pad_token_id)
        new = out[0, ids["input_ids"].shape[1]:]
        tokens += int(ids["input_ids"].shape[1] + len(new))
        raw = tok.decode(new, skip_special_tokens=True)
        cf, why = b.parse_json(raw, x)
        from cfbench.generator import QueryResult

        results.append(QueryResult.ok(pd.DataFrame([cf], columns=task.schema.names)) if cf is not None
                       else QueryResult("invalid_output", None, why, raw=raw))
    dt = time.perf_counter() - t0
    parsed, valid = _validity(task, results, q)
    return {"method": "naive loop (few-shot JSON, generate, 1 query at a time)", "queries": len(q),
            "prompt_tokens": len(tok(prefix + head)["input_ids"]), "generate_s": dt, "s_per_cf": dt / len(q),
            "tokens_processed": tokens, "tokens_per_s": tokens / dt, "parse_rate": parsed, "valid_rate": valid}


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="ai-readi")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--naive", type=int, default=5, help="queries for the naive loop (it is slow)")
    ap.add_argument("--freetext", type=int, default=0, help="also time llm-fewshot:freetext on this many queries")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the variant's own")
    ap.add_argument("--digits", type=int, default=3, help="significant digits of values in prompts")
    ap.add_argument("--configs", default="fast,default",
                    help="llm-fewshot variants to time (fast, default, retrieval), or settings of the "
                         "default variant as row_style:cf_style:quantize:max_edits")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    from cfbench_llm import models

    from cfbench.task import Task, resolve_spec

    threads = models.set_threads(args.threads)
    task = Task.load(resolve_spec(args.task))
    ctx = task.fit_context(seed=0)
    q = _queries(task, args.queries)
    load0 = os.getloadavg()[0]
    rows = []
    for config in args.configs.split(","):
        if ":" not in config:
            params = {} if args.batch_size is None else {"batch_size": args.batch_size}
            ours, _ = run_ours(task, ctx, q, config, threads=threads, digits=args.digits, **params)
            rows.append(ours)
            continue
        try:
            style, cf_style, quant, max_edits = config.split(":")
            max_edits = int(max_edits)
        except ValueError:
            raise SystemExit(f"--configs: expected row_style:cf_style:quantize:max_edits, got {config!r}") from None
        ours, _ = run_ours(task, ctx, q, "default", batch_size=args.batch_size or 32, threads=threads,
                           digits=args.digits, row_style=style, cf_style=cf_style, quantize=quant,
                           max_edits=max_edits)
        ours["method"] += f" {config}"
        rows.append(ours)
    if args.freetext:
        ft, _ = run_ours(task, ctx, q.head(args.freetext), "freetext", batch_size=args.batch_size or 32,
                         threads=threads, digits=args.digits, row_style="json", cf_style="full")
        rows.append(ft)
    if args.naive:  # the naive loop writes full JSON rows, whatever the configs above
        from cfbench_llm.generator import LocalLLM

        full = LocalLLM("fewshot", "freetext", threads=threads, digits=args.digits,
                        row_style="json", cf_style="full").fit(ctx)
        rows.append(run_naive(task, full, _queries(task, args.naive)))
    meta = {"task": args.task, "threads": threads, "cpus": os.cpu_count(), "batch_size": args.batch_size,
            "digits": args.digits,
            "loadavg_1min_start": load0, "loadavg_1min_end": os.getloadavg()[0],
            "torch": __import__("torch").__version__, "python": sys.version.split()[0]}
    cols = ["method", "queries", "s_per_cf", "s_per_cf_with_prefix", "tokens_per_s", "new_tokens_per_cf",
            "parse_rate", "valid_rate", "peak_rss_gb"]
    table = pd.DataFrame(rows)
    print(json.dumps(meta))
    print(table[[c for c in cols if c in table]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
