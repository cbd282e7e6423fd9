"""api-* generators: availability, key redaction, and a real OpenAI-compatible server on 127.0.0.1.

The server is ``transformers serve`` (FastAPI + uvicorn) serving a tiny random model folder, so
every request really goes over HTTP through the ``openai`` client.  A random model's answers do
not parse: they must come back as ``invalid_output`` with the raw text, never as a crash.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from cfbench.errors import UserError
from cfbench.plugins import registry
from cfbench.task import Task, resolve_spec

KEY = "sk-cfbench-test-0123456789abcdef"


def test_api_methods_unavailable_until_configured(monkeypatch):
    for var in ("CFBENCH_API_BASE", "CFBENCH_API_MODEL", "CFBENCH_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    for name in ("api-zeroshot", "api-fewshot"):
        ok, hint = registry().generator(name).status()
        assert not ok and "CFBENCH_API_BASE" in hint and "CFBENCH_API_MODEL" in hint
    monkeypatch.setenv("CFBENCH_API_BASE", "http://127.0.0.1:9/v1")
    ok, hint = registry().generator("api-zeroshot").status()
    assert not ok and "CFBENCH_API_MODEL" in hint and "CFBENCH_API_BASE" not in hint
    monkeypatch.setenv("CFBENCH_API_MODEL", "m")
    assert registry().generator("api-fewshot").status() == (True, "")


def test_redact_hides_the_key(monkeypatch):
    from cfbench_llm.api import redact

    monkeypatch.setenv("CFBENCH_API_KEY", KEY)
    assert redact(f"401: bad key {KEY} for org") == "401: bad key *** for org"
    assert redact("nothing secret") == "nothing secret"


def test_unreachable_endpoint_is_an_error_per_query_without_the_key(monkeypatch):
    pytest.importorskip("openai")
    from cfbench_llm.api import ApiLLM

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("CFBENCH_API_BASE", f"http://127.0.0.1:{port}/v1?k={KEY}")
    monkeypatch.setenv("CFBENCH_API_MODEL", "m")
    monkeypatch.setenv("CFBENCH_API_KEY", KEY)
    task = Task.load(resolve_spec("heart"))
    q = task.queries(n_per_class=1)
    res = ApiLLM("zeroshot").fit(task.fit_context(0)).generate(q[task.schema.names], q.target.to_numpy(), 1, 2.0)
    assert [r.status for r in res] == ["error", "error"]
    for r in res:
        assert "Connection" in r.reason and "127.0.0.1" in r.reason  # says what failed, and where
        assert KEY not in r.reason and "***" in r.reason  # the key in the URL is redacted


def test_bad_api_parameters():
    from cfbench_llm.api import ApiLLM

    with pytest.raises(UserError, match="unknown api parameter 'examplez'"):
        ApiLLM("fewshot", examplez=2)
    with pytest.raises(UserError, match="valid choices: default, retrieval"):
        ApiLLM("fewshot", "freetext")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``transformers serve`` on 127.0.0.1, offline, serving a tiny model folder; stopped after."""
    pytest.importorskip("torch")
    from cfbench_llm.testing import tiny_model_dir

    exe = shutil.which("transformers")
    assert exe, "the transformers CLI is part of the llm extra"
    model = tiny_model_dir(tmp_path_factory.mktemp("served"), seed=2)
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    log = open(tmp_path_factory.mktemp("log") / "serve.log", "w+")
    proc = subprocess.Popen([exe, "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"transformers serve did not start:\n{log.read()[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1", str(model)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode, variant", [("zeroshot", "default"), ("fewshot", "default"), ("fewshot", "retrieval")])
def test_real_openai_compatible_server(server, monkeypatch, mode, variant):
    from cfbench_llm.api import ApiLLM

    base, model = server
    monkeypatch.setenv("CFBENCH_API_BASE", base)
    monkeypatch.setenv("CFBENCH_API_MODEL", model)
    monkeypatch.setenv("CFBENCH_API_KEY", KEY)
    task = Task.load(resolve_spec("heart"))
    q = task.queries(n_per_class=1)
    gen = ApiLLM(mode, variant, max_tokens=24, concurrency=2).fit(task.fit_context(0))
    res = gen.generate(q[task.schema.names], q.target.to_numpy(), 1, 60.0)
    assert len(res) == 2
    for r in res:
        # the server answered (a random model's text does not parse, but nothing crashed)
        assert r.status in ("ok", "invalid_output"), (r.status, r.reason)
        assert r.raw is not None and r.extra["new_tokens"] > 0 and r.extra["prompt_tokens"] > 0
        assert KEY not in (r.raw + r.reason)
    if (mode, variant) == ("fewshot", "default"):  # examples are sent as earlier user/assistant turns
        assert len(gen.examples_) == 6
        msgs = gen.builder_.api_messages(q[task.schema.names].to_numpy(float)[0], 0, 1, gen.examples_)
        assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 6 + ["user"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
