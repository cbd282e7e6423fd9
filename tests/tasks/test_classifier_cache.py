"""The classifier cache runs no code from disk: skops with an allow-list, a hash sidecar, and
the model's hash in every record's provenance.  Each test plants what an attacker would."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import joblib
import pytest
import skops.io as sio
from conftest import Evil
from sklearn.dummy import DummyClassifier
from sklearn.preprocessing import FunctionTransformer

from cfbench.tasks.classifier import ALLOWED_TYPES, UntrustedModel, loads_skops
from cfbench.tasks.model_digest import model_digest
from cfbench.tasks.spec import Task, load_spec

SPEC = '''
name = "cache-probe"
[dataset]
loader = "sklearn-breast-cancer"
[classifier]
model = "random-forest"
params = { n_estimators = 15 }
[[features]]
name = "mean radius"
[[features]]
name = "mean texture"
[[features]]
name = "worst area"
'''




@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CFBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "classifiers"


@pytest.fixture()
def spec(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text(SPEC)
    return load_spec(p)


def _entry(cache: Path) -> tuple[Path, Path]:
    models = list(cache.glob("*.skops"))
    assert len(models) == 1, models
    return models[0], models[0].with_name(models[0].name + ".json")


def _forge(model: Path, sidecar: Path, data: bytes) -> None:
    """Replace the cached file and write a sidecar that matches it (the attacker can do both)."""
    model.write_bytes(data)
    sidecar.write_text(json.dumps({"sha256": hashlib.sha256(data).hexdigest()}))


def test_cache_is_skops_with_sidecar_and_provenance_carries_the_hash(cache, spec):
    first = Task.load(spec)
    model, sidecar = _entry(cache)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert json.loads(sidecar.read_text())["sha256"] == digest
    assert not list(cache.glob("*.joblib"))
    identity = first.provenance()["model_sha256"]
    assert identity == model_digest(first.model) != digest  # the model's state, not its file's bytes
    second = Task.load(spec)
    assert second.model_from_cache and second.scores == first.scores
    assert second.provenance()["model_sha256"] == identity  # loaded from the cache: the same
    uncached = Task.load(spec, use_cache=False)  # fitted again and not written: still the same
    assert uncached.provenance()["model_sha256"] == identity and len(list(cache.glob("*"))) == 2


def test_malicious_pickle_in_the_cache_is_never_executed(cache, spec, tmp_path, capfd):
    first = Task.load(spec)
    model, sidecar = _entry(cache)
    marker = tmp_path / "pwned"
    _forge(model, sidecar, pickle.dumps(Evil(marker)))
    joblib.dump(Evil(marker), model.with_suffix(".joblib"))  # the old cache format, same key
    again = Task.load(spec)
    assert not marker.exists()
    assert not again.model_from_cache and again.scores == first.scores
    err = capfd.readouterr().err
    assert "discarding cached classifier" in err and "it is a pickle" in err
    assert len(err.strip().splitlines()) == 1
    assert Task.load(spec).model_from_cache  # the retrained model was cached again


def test_skops_file_with_an_untrusted_type_is_refused(cache, spec, tmp_path, capfd):
    Task.load(spec)
    model, sidecar = _entry(cache)
    marker = tmp_path / "pwned"
    _forge(model, sidecar, sio.dumps(FunctionTransformer(os.system, kw_args={"command": f"touch {marker}"})))
    again = Task.load(spec)
    assert not again.model_from_cache and not marker.exists()
    assert "outside the allow-list" in capfd.readouterr().err


def test_tampered_bytes_fail_the_hash_and_the_model_is_retrained(cache, spec, capfd):
    first = Task.load(spec)
    model, _ = _entry(cache)
    blob = bytearray(model.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    model.write_bytes(bytes(blob))
    again = Task.load(spec)
    assert not again.model_from_cache and again.scores == first.scores
    err = capfd.readouterr().err
    assert "does not match" in err and "retraining" in err


def test_swapped_model_without_its_sidecar_is_not_used(cache, spec, capfd):
    first = Task.load(spec)
    model, _ = _entry(cache)
    X, y = first.X_train, first.y_train
    model.write_bytes(sio.dumps(DummyClassifier(strategy="constant", constant=0).fit(X, y)))
    again = Task.load(spec)
    assert not again.model_from_cache and again.scores == first.scores
    assert "does not match" in capfd.readouterr().err


def test_loads_skops_trusts_only_the_allow_list():
    with pytest.raises(UntrustedModel, match="pickle"):
        loads_skops(pickle.dumps({"a": 1}))
    with pytest.raises(UntrustedModel, match="not a skops file"):
        loads_skops(b"hello")
    data = sio.dumps(FunctionTransformer(os.system))
    with pytest.raises(UntrustedModel, match="system"):
        loads_skops(data)
    assert "posix.system" not in ALLOWED_TYPES and "builtins.eval" not in ALLOWED_TYPES
