"""Another model through ``CFBENCH_LLM_MODEL``: the path a user takes to run the generators on
Llama-3.1-8B or BioMistral-7B, exercised with tiny random models of those architectures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from cfbench_llm import models  # noqa: E402
from cfbench_llm.testing import tiny_model_dir  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_cli_runs_every_local_llm_family_on_another_model(tmp_path, arch):
    model = tiny_model_dir(tmp_path / arch, seed=2, sliding_window=16, arch=arch)
    env = {**os.environ, "CFBENCH_LLM_MODEL": str(model), "CFBENCH_CACHE": str(tmp_path / "cache"),
           "CFBENCH_LLM_THREADS": "1"}
    methods = "llm-zeroshot:default,llm-fewshot:default,llm-fewshot:verified,llm-finetuned"
    r = subprocess.run([sys.executable, "-m", "cfbench", "run", "--task", "heart", "--methods", methods,
                        "--n-queries", "1", "--out", str(tmp_path / "run"), "--jobs", "1",
                        "--param", "llm-finetuned.pairs=8", "--param", "llm-finetuned.epochs=1"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    labels = {(rec["method"], rec["variant"]) for rec in records}
    assert labels == {("llm-zeroshot", "default"), ("llm-fewshot", "default"), ("llm-fewshot", "verified"),
                      ("llm-finetuned", "default")}
    for rec in records:  # the model ran: parsed CFs, or the verifier's honest "none valid"
        assert rec["status"] in (("ok", "not_found") if rec["variant"] == "verified" else ("ok",)), rec
    # the adapter was trained on the model named by the environment, and nothing else was loaded
    meta = list((tmp_path / "cache" / "llm" / "adapters").glob("*/meta.json"))
    assert len(meta) == 1 and json.loads(meta[0].read_text())["key"]["model"].startswith(f"{arch}:")
    assert not (tmp_path / "cache" / "llm" / "models").exists()  # the default model was never converted


def test_inference_dtype_is_bfloat16_only_where_it_is_fast(monkeypatch):
    import torch

    monkeypatch.setattr(models, "cpu_has_fast_bf16", lambda: True)
    assert models.inference_dtype("cpu") == torch.bfloat16
    assert models.inference_dtype("cpu", quantize="int8") == torch.float32  # int8 layers take float32
    assert models.inference_dtype("cpu", "float32") == torch.float32
    monkeypatch.setattr(models, "cpu_has_fast_bf16", lambda: False)
    assert models.inference_dtype("cpu") == torch.float32
    assert models.inference_dtype("cpu", "bfloat16") == torch.bfloat16  # asked for: given


def test_conversion_parses_each_gguf_once(monkeypatch, tmp_path):
    """Inside ``shared_gguf_reader`` every open of one path is the same reader (transformers
    opens the GGUF three times while converting it); outside, gguf is as it was."""
    import gguf

    made: list[str] = []

    class Reader:
        def __init__(self, path, mode="r"):
            made.append(os.fspath(path))

    monkeypatch.setattr(gguf, "GGUFReader", Reader)
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    with models.shared_gguf_reader():
        first = gguf.GGUFReader(a)
        assert gguf.GGUFReader(str(a)) is first and gguf.GGUFReader(a, "r") is first
        assert gguf.GGUFReader(b) is not first
    assert made == [str(a), str(b)]
    assert gguf.GGUFReader is Reader  # restored
    gguf.GGUFReader(a)
    assert made == [str(a), str(b), str(a)]
