"""LLM caches run no code from disk: adapters and the converted model are safetensors only,
with SHA-256s recorded when they were written and checked before they are used."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import Evil

from cfbench.core.errors import UserError


@pytest.fixture()
def fake_training(monkeypatch, tmp_path):
    """ensure_adapter with a stand-in for LoRA training that writes a safetensors-named file."""
    from cfbench_llm import finetune

    calls: list[Path] = []

    def train(context, settings, builder, out, log=None):
        calls.append(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "adapter_model.safetensors").write_bytes(b"weights %d" % len(calls))
        (out / "adapter_config.json").write_text('{"r": 8}')
        return {"pairs": 1}

    monkeypatch.setattr(finetune, "train", train)
    monkeypatch.setattr(finetune, "adapter_key", lambda context, settings, builder: {"k": 1})
    ctx = SimpleNamespace(task_name="t", cache_dir=tmp_path / "cache")
    settings = SimpleNamespace(force_finetune=False)
    return finetune, ctx, settings, calls


def test_adapter_hashes_recorded_and_checked(fake_training, tmp_path, capfd):
    finetune, ctx, settings, calls = fake_training
    path, info = finetune.ensure_adapter(ctx, settings, None)
    weights = path / "adapter_model.safetensors"
    assert info["files"]["adapter_model.safetensors"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert finetune.ensure_adapter(ctx, settings, None)[0] == path and len(calls) == 1  # cached

    weights.write_bytes(b"swapped weights")
    finetune.ensure_adapter(ctx, settings, None)
    assert len(calls) == 2
    err = capfd.readouterr().err
    assert "discarding cached adapter" in err and "does not match" in err

    marker = tmp_path / "pwned"
    (path / "adapter_model.bin").write_bytes(pickle.dumps(Evil(marker)))
    finetune.ensure_adapter(ctx, settings, None)
    assert len(calls) == 3 and not marker.exists() and not (path / "adapter_model.bin").exists()
    assert "pickle weights (adapter_model.bin)" in capfd.readouterr().err

    meta = json.loads((path / "meta.json").read_text())
    del meta["files"]  # an adapter cached before hashes were recorded
    (path / "meta.json").write_text(json.dumps(meta))
    finetune.ensure_adapter(ctx, settings, None)
    assert len(calls) == 4 and "records no file hashes" in capfd.readouterr().err


def test_load_finetuned_refuses_pickle_adapters(tmp_path, monkeypatch):
    from cfbench_llm import finetune, models

    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("base model loaded"))
    (tmp_path / "adapter_model.bin").write_bytes(b"\x80\x04junk")
    with pytest.raises(UserError, match="adapter must be adapter_model.safetensors"):
        finetune.load_finetuned(None, tmp_path, None, "cpu")


def test_converted_model_checkpoint_checks(tmp_path):
    from cfbench_llm import models

    (tmp_path / models.WEIGHTS).write_bytes(b"converted weights")
    assert "is missing" in models.checkpoint_problem(tmp_path)
    (tmp_path / models.SIDECAR).write_text(hashlib.sha256(b"converted weights").hexdigest() + "\n")
    assert models.checkpoint_problem(tmp_path) is None
    (tmp_path / models.WEIGHTS).write_bytes(b"other weights!!!!")
    assert "does not match" in models.checkpoint_problem(tmp_path)
    (tmp_path / models.WEIGHTS).write_bytes(b"converted weights")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04")
    assert "pickle weights (pytorch_model.bin)" in models.checkpoint_problem(tmp_path)


def test_local_checkpoints_are_read_as_safetensors(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from cfbench_llm import models

    seen = {}

    class Fake:
        def to(self, device):
            return self

        def eval(self):
            return self

    def fake_model(path, **kw):
        seen.update(kw)
        return Fake()

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda path, **kw: object())
    (tmp_path / "model.safetensors").write_bytes(b"x")
    models.load(str(tmp_path), device="cpu", fresh=True)
    assert seen["use_safetensors"] is True
