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

import torch  # noqa: E402
from cfbench_llm import models  # noqa: E402
from cfbench_llm.testing import tiny_model_dir  # noqa: E402

from cfbench.core.errors import UserError  # noqa: E402


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


@pytest.mark.slow
def test_a_non_gemma_folder_runs_through_the_same_engine_in_bfloat16(tmp_path):
    """The GPU recipe's settings on the CPU: ``model=<folder>`` of a Llama-architecture causal
    LM, an explicit device and ``dtype=bfloat16``; zero-shot and the verified variant (whose
    preset int8, a float32 CPU speed-up, gives way to the bfloat16 asked for) write records."""
    from cfbench_llm.generator import LocalLLM

    from cfbench.tasks.spec import Task, resolve_spec

    folder = str(tiny_model_dir(tmp_path / "llama", seed=4, arch="llama", layers=2))
    task = Task.load(resolve_spec("heart"))
    q = task.queries(n_per_class=1)
    ctx = task.fit_context(seed=0)
    ctx.cache_dir = tmp_path / "cache"
    for mode, variant, extra in (("zeroshot", "default", {}), ("fewshot", "verified", {"rounds": 1, "samples": 2, "examples": 1})):
        gen = LocalLLM(mode, variant, model=folder, device="cpu", dtype="bfloat16", batch_size=8, **extra).fit(ctx)
        assert type(gen.model_).__name__ == "LlamaForCausalLM" and gen.settings.quantize == "none"
        assert next(gen.model_.parameters()).dtype == torch.bfloat16
        res = gen.generate(q[task.schema.names], q.target.to_numpy(), 1, 10.0)
        assert len(res) == len(q)
        for r in res:  # random weights: validity is irrelevant, but every query has its record
            assert r.status in ("ok", "not_found"), (variant, r.status, r.reason)
            assert r.extra["dtype"] == "bfloat16" and r.extra["new_tokens"] > 0
        assert variant != "default" or all(r.status == "ok" for r in res)  # constrained: always parses
    assert not (tmp_path / "cache" / "llm" / "models").exists()  # the embedded model was never converted


def test_the_gpu_settings_without_a_gpu_are_one_line_and_presets_follow_them():
    from cfbench_llm.generator import LocalLLM

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match=r"^device 'cuda': torch sees no CUDA device here .*valid here: auto, cpu$"):
        models.device_and_dtype("cuda")
    with pytest.raises(UserError, match="valid choices: auto, cpu, cuda, cuda:N"):
        models.device_and_dtype("tpu")
    # the int8 of the fast/verified presets is for CPUs in float32: a GPU or bfloat16 turns it off,
    # an explicit quantize still wins (and is refused with bfloat16, in one line)
    assert LocalLLM("fewshot", "verified", device="cuda").settings.quantize == "none"
    assert LocalLLM("fewshot", "fast", dtype="bfloat16").settings.quantize == "none"
    assert LocalLLM("fewshot", "verified").settings.quantize == "int8"
    with pytest.raises(UserError, match="quantize='int8' needs dtype 'float32'"):
        LocalLLM("fewshot", "verified", dtype="bfloat16", quantize="int8")


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
