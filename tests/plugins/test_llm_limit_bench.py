"""``benchmarks/bench_llm_limit.py`` counts what the engine does from outside: its counts must
add up to what the decoded answers report, and the engine must be left as it was."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from cfbench_llm.engine import Engine  # noqa: E402
from cfbench_llm.generator import LocalLLM  # noqa: E402
from cfbench_llm.testing import tiny_model_dir  # noqa: E402

from cfbench.tasks.spec import Task, resolve_spec  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
import bench_llm_limit as bench  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_counts_add_up_and_the_engine_is_restored(tmp_path):
    tiny = str(tiny_model_dir(tmp_path / "tiny", seed=1, sliding_window=32))
    task = Task.load(resolve_spec("heart"))
    q = task.queries(n_per_class=3)
    ctx = task.fit_context(seed=0)
    ctx.cache_dir = tmp_path
    before = dict(vars(Engine))
    watch = bench.Watch()
    try:
        gen = LocalLLM("zeroshot", "default", model=tiny, batch_size=4).fit(ctx)
        res = gen.generate(q[task.schema.names], q.target.to_numpy(), 1, 10.0)
    finally:
        watch.close()
    assert dict(vars(Engine)) == before
    c = watch.c
    # every token after a head is one the model chose or one the harness forced
    assert c["chosen_tokens"] + c["forced_tokens"] == sum(r.extra["new_tokens"] for r in res)
    assert c["chosen_tokens"] > 0 and c["forced_tokens"] > 0
    assert c["prefix_tokens"] == len(gen.prefix_.ids)
    # each distinct head once: the queries' prompts after the prefix
    assert c["head_tokens"] == sum(r.extra["prompt_tokens"] - len(gen.prefix_.ids) for r in res)
    kinds = {f["kind"] for f in watch.forwards}
    assert kinds == {"prefix", "head", "step"}
    lim = bench.Limit(watch.shape)
    row = bench.summarize("llm-zeroshot", watch, lim, {"queries": len(q), "generate_s": 1.0, "prefix_s": 0.1,
                                                       "s_per_cf": 1.1 / len(q), "fit_s": 0.5})
    assert row["step_slots"] >= c["chosen_tokens"] - len(q)  # a sequence's last token is not fed
    assert row["gflop_linear"] > 0 and row["gflop_attention"] > 0 and row["gflop_vocab"] == 0
    assert 0 < row["limit_seconds"] and row["x_limit"] == pytest.approx(1.1 / row["limit_seconds"])


def test_the_batch_probe_compares_answers_across_batch_sizes(tmp_path, monkeypatch):
    tiny = str(tiny_model_dir(tmp_path / "tiny", seed=1, sliding_window=32))
    task = Task.load(resolve_spec("heart"))
    q = task.queries(n_per_class=3)
    ctx = task.fit_context(seed=0)
    ctx.cache_dir = tmp_path
    import cfbench_llm.generator as g

    class Tiny(LocalLLM):  # the probe builds the variant itself: point it at the tiny model
        def __init__(self, mode, variant, **params):
            super().__init__(mode, variant, model=tiny, **params)

    monkeypatch.setattr(g, "LocalLLM", Tiny)
    rows = bench.batch_probe(task, ctx, q, "zeroshot", "default", [4, 4, 2], threads=1)
    assert [r["batch_size"] for r in rows] == [4, 4, 2]
    assert all(r["queries"] == len(q) and r["seconds"] > 0 for r in rows)
    assert rows[0]["identical"] == rows[1]["identical"] == len(q)  # the same batching: the same answers
    assert 0 <= rows[2]["identical"] <= len(q)
