"""Speed of the local LLM generators against the naive loop, measured in the same process.

Naive loop: the few-shot prompt with free-text JSON, ``model.generate`` (greedy, stop at a
newline), one query at a time.  ``llm-fewshot`` (fixed examples, constrained decoding, shared
prefix computed once, queries batched) is timed over ``--queries`` queries; its s/CF is given
both for generation alone and with the one-off prefix amortised.  Peak memory is the process's
peak RSS after the constrained run (the model included), before the naive loop runs.

    python benchmarks/bench_llm.py --task ai-readi --queries 100 --naive 5 [--threads 2] [--json out.json]
    python benchmarks/bench_llm.py --configs fast --naive 0      # peak memory of one variant alone
    python benchmarks/bench_llm.py --configs all --naive 0 --threads 2   # every local variant, one process each

Beside speed, each row gives the parsed and valid shares over all queries and, over the valid
CFs, L1/MAD, #changed and the LOF-inlier share, scored by the metric suite as on the boards.
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


def _quality(task, scorer, res, q) -> dict:
    """Parsed and valid shares over all queries; L1/MAD, #changed and LOF-inlier share over the
    valid CFs (the boards' definitions, from the metric suite's own scorer)."""
    ok = [i for i, r in enumerate(res) if r.status == "ok" and r.cfs is not None and len(r.cfs)]
    out = {"parse_rate": len(ok) / len(res), "valid_rate": 0.0, "l1_mad": float("nan"),
           "n_changed": float("nan"), "lof_inlier": float("nan")}
    valid_all = np.zeros(len(res), dtype=bool)  # per query; a query without a CF is invalid
    sources = q.source.to_numpy()

    def per_direction() -> None:  # validity per direction, over that direction's queries
        for s in (0, 1):
            mine = sources == s
            out[f"valid_{s}to{1 - s}"] = float(valid_all[mine].mean()) if mine.any() else float("nan")

    per_direction()
    if not ok:
        return out
    names = task.schema.names
    C = np.concatenate([res[i].cfs[names].to_numpy(float)[:1] for i in ok])
    X = q[names].to_numpy(float)[ok]
    target = q.target.to_numpy()[ok]
    pred = task.predict(pd.DataFrame(scorer.clip(C), columns=names))
    scores = scorer.score(X, C, target, pred)
    valid = pred == target
    out["valid_rate"] = float(valid.sum()) / len(res)
    valid_all[ok] = valid
    per_direction()
    if valid.any():
        v = scores[valid]
        out.update(l1_mad=float(v["l1_mad"].mean()), n_changed=float(v["n_changed"].mean()),
                   lof_inlier=float(v["lof_inlier"].mean()))
    return out


def run_ours(task, ctx, q, mode: str, variant: str, scorer=None, **params) -> tuple[dict, object]:
    """One local LLM method timed as the runner calls it: fit once, then ``generate`` on chunks of
    the plugin's batch (50 queries), k = 1."""
    from cfbench_llm import BATCH
    from cfbench_llm.generator import LocalLLM

    from cfbench.score.summary import fit_scorer

    t0 = time.perf_counter()
    gen = LocalLLM(mode, variant, **params).fit(ctx)
    fit_s = time.perf_counter() - t0
    before = dict(gen.engine_.stats)
    names = task.schema.names
    t1 = time.perf_counter()
    res = []
    for lo in range(0, len(q), BATCH):
        part = q.iloc[lo: lo + BATCH]
        res += gen.generate(part[names], part.target.to_numpy(), 1, 60.0)
    gen_s = time.perf_counter() - t1
    tokens = gen.engine_.stats["forward_tokens"] - before["forward_tokens"]
    n = len(q)
    row = {
        "method": f"llm-{mode}:{variant}", "queries": n, "fit_s": fit_s,
        "prefix_tokens": gen.stats_["prefix_tokens"], "prefix_s": gen.stats_["prefix_seconds"],
        "generate_s": gen_s, "s_per_cf": gen_s / n, "s_per_cf_with_prefix": (gen_s + gen.stats_["prefix_seconds"]) / n,
        "tokens_processed": tokens, "tokens_per_s": tokens / gen_s,
        "new_tokens_per_cf": float(np.mean([r.extra.get("new_tokens", 0) for r in res])),
        "features": len(names), "rounds_per_cf": float(np.mean([r.extra.get("rounds", 1) for r in res])),
        **_quality(task, scorer or fit_scorer(task), res, q), "peak_rss_gb": _peak_gb(),
    }
    if params:
        row["params"] = params
    return row, gen


def run_naive(task, gen, q, scorer) -> dict:
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
        from cfbench.core.generator import QueryResult

        results.append(QueryResult.ok(pd.DataFrame([cf], columns=task.schema.names)) if cf is not None
                       else QueryResult("invalid_output", None, why, raw=raw))
    dt = time.perf_counter() - t0
    return {"method": "naive loop (few-shot JSON, generate, 1 query at a time)", "queries": len(q),
            "prompt_tokens": len(tok(prefix + head)["input_ids"]), "generate_s": dt, "s_per_cf": dt / len(q),
            "tokens_processed": tokens, "tokens_per_s": tokens / dt, **_quality(task, scorer, results, q)}


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _parse_config(config: str) -> tuple[str, str, dict]:
    """``variant`` (of llm-fewshot), ``mode:variant``, or ``row_style:cf_style:quantize:max_edits``
    (settings of llm-fewshot's default variant) -> (mode, variant, params)."""
    from cfbench_llm.generator import MODES

    parts = config.split(":")
    if len(parts) == 1:
        return "fewshot", parts[0], {}
    if len(parts) == 2 and parts[0] in MODES:
        return parts[0], parts[1], {}
    if len(parts) == 4 and parts[3].isdigit():
        style, cf_style, quant, max_edits = parts
        return "fewshot", "default", {"row_style": style, "cf_style": cf_style, "quantize": quant,
                                      "max_edits": int(max_edits)}
    raise SystemExit(f"--configs: expected a llm-fewshot variant, mode:variant (mode one of {', '.join(MODES)}) "
                     f"or row_style:cf_style:quantize:max_edits, got {config!r}")


def _parse_param(text: str) -> tuple[str, object]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise SystemExit(f"--param: expected key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _isolated(args, config: str) -> list[dict]:
    """Run one config in a child process, so that its peak RSS is its own."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        cmd = [sys.executable, __file__, "--task", args.task, "--queries", str(args.queries), "--naive", "0",
               "--digits", str(args.digits), "--configs", config, "--json", out, "--no-isolate"]
        cmd += ["--threads", str(args.threads)] if args.threads is not None else []
        cmd += ["--batch-size", str(args.batch_size)] if args.batch_size is not None else []
        for p in args.param:
            cmd += ["--param", p]
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL)
        if done.returncode != 0 or not os.path.exists(out):
            return [{"method": f"{config} (failed: exit {done.returncode})", "queries": args.queries}]
        with open(out) as fh:
            return json.load(fh)["rows"]  # nulls become NaN in the table


def main(argv: list[str] | None = None) -> int:
    from cfbench.core.errors import UserError

    try:
        return _main(argv)
    except UserError as exc:  # a bad --param or --task: one line, as the CLI gives it
        raise SystemExit(f"bench_llm: {exc}") from None


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="ai-readi")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--naive", type=int, default=5, help="queries for the naive loop (it is slow)")
    ap.add_argument("--freetext", type=int, default=0, help="also time llm-fewshot:freetext on this many queries")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the variant's own")
    ap.add_argument("--digits", type=int, default=3, help="significant digits of values in prompts")
    ap.add_argument("--configs", default="fast,default",
                    help="comma-separated: llm-fewshot variants (fast, default, retrieval, freetext, verified), "
                         "mode:variant (zeroshot:default, zeroshot:freetext, finetuned:default, ...), 'all' for "
                         "every local variant, or settings of the default variant as row_style:cf_style:quantize:max_edits")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="generator parameter for every config (JSON value), e.g. samples=4; repeatable")
    ap.add_argument("--no-isolate", action="store_true",
                    help="run every config in this process (default with several configs: one child process "
                         "each, so that each peak RSS is the variant's own)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    from cfbench_llm import models
    from cfbench_llm.generator import VARIANTS

    from cfbench.score.summary import fit_scorer
    from cfbench.tasks.spec import Task, resolve_spec

    configs = args.configs.split(",")
    if configs == ["all"]:
        configs = [f"{m}:{v}" for m, vs in VARIANTS.items() for v in vs]
    parsed = [_parse_config(c) for c in configs]
    params = dict(_parse_param(p) for p in args.param)
    threads = models.set_threads(args.threads)
    task = Task.load(resolve_spec(args.task))
    ctx = task.fit_context(seed=0)
    q = _queries(task, args.queries)
    scorer = fit_scorer(task)
    load0 = os.getloadavg()[0]
    rows = []
    for config, (mode, variant, own) in zip(configs, parsed, strict=True):
        if len(configs) > 1 and not args.no_isolate:
            rows += _isolated(args, config)
            print(f"{config}: done", file=sys.stderr)
            continue
        extra = {"batch_size": args.batch_size} if args.batch_size is not None else {}
        ours, _ = run_ours(task, ctx, q, mode, variant, scorer, threads=threads, digits=args.digits,
                           **{**extra, **own, **params})
        if own:
            ours["method"] += f" {config}"
        rows.append(ours)
    if args.freetext:
        ft, _ = run_ours(task, ctx, q.head(args.freetext), "fewshot", "freetext", scorer,
                         batch_size=args.batch_size or 32, threads=threads, digits=args.digits,
                         row_style="json", cf_style="full")
        rows.append(ft)
    if args.naive:  # the naive loop writes full JSON rows, whatever the configs above
        from cfbench_llm.generator import LocalLLM

        full = LocalLLM("fewshot", "freetext", threads=threads, digits=args.digits,
                        row_style="json", cf_style="full").fit(ctx)
        rows.append(run_naive(task, full, _queries(task, args.naive), scorer))
    meta = {"task": args.task, "threads": threads, "cpus": os.cpu_count(), "batch_size": args.batch_size,
            "digits": args.digits, "params": params,
            "loadavg_1min_start": load0, "loadavg_1min_end": os.getloadavg()[0],
            "torch": __import__("torch").__version__, "python": sys.version.split()[0]}
    cols = ["method", "queries", "s_per_cf", "s_per_cf_with_prefix", "tokens_per_s", "new_tokens_per_cf",
            "parse_rate", "valid_rate", "valid_0to1", "valid_1to0", "l1_mad", "n_changed", "lof_inlier",
            "peak_rss_gb"]
    table = pd.DataFrame(rows)
    print(json.dumps(meta))
    print(table[[c for c in cols if c in table]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.json:
        from cfbench.core.strict_json import dumps

        with open(args.json, "w") as fh:  # strict JSON: a metric without valid CFs is null, not NaN
            fh.write(dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
