"""api-* generators: availability, key redaction, and a real OpenAI-compatible server on 127.0.0.1.

The server is ``transformers serve`` (FastAPI + uvicorn) serving a tiny random model folder, so
every request really goes over HTTP through the ``openai`` client.  A random model's answers do
not parse: they must come back as ``invalid_output`` with the raw text, never as a crash.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import pytest
from chat_server import ChatServer

from cfbench.core.errors import UserError
from cfbench.core.plugins import registry
from cfbench.tasks.spec import Task, resolve_spec

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

    with pytest.raises(UserError, match="unknown parameter 'examplez' of method 'api-fewshot'"):
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
@pytest.mark.parametrize("mode, variant, params", [
    ("zeroshot", "default", {}), ("fewshot", "default", {}), ("fewshot", "retrieval", {}),
    ("zeroshot", "default", {"structured": "vllm"}), ("fewshot", "verified", {"samples": 2, "rounds": 2})])
def test_real_openai_compatible_server(server, monkeypatch, mode, variant, params):
    """``transformers serve`` ignores ``response_format`` (with a warning) and refuses vLLM's
    ``structured_outputs`` field with a 422: the answers are free text either way, recorded as
    such, and the refusal costs one extra call, once."""
    from cfbench_llm.api import ApiLLM

    base, model = server
    monkeypatch.setenv("CFBENCH_API_BASE", base)
    monkeypatch.setenv("CFBENCH_API_MODEL", model)
    monkeypatch.setenv("CFBENCH_API_KEY", KEY)
    task = Task.load(resolve_spec("heart"))
    q = task.queries(n_per_class=1)
    gen = ApiLLM(mode, variant, max_tokens=24, concurrency=1, **params).fit(task.fit_context(0))
    res = gen.generate(q[task.schema.names], q.target.to_numpy(), 1, 60.0)
    assert len(res) == 2
    for r in res:
        # the server answered (a random model's text does not parse, but nothing crashed)
        assert r.status in (("ok", "invalid_output", "not_found") if variant == "verified"
                            else ("ok", "invalid_output")), (r.status, r.reason)
        assert r.raw is not None and r.extra["new_tokens"] > 0 and r.extra["prompt_tokens"] > 0
        assert KEY not in (r.raw + r.reason)
        assert r.extra["schema_ok"] in (True, False) if variant != "verified" else "schema_violations" in r.extra
    if params.get("structured") == "vllm":
        assert [r.extra["calls"] for r in res] == [2, 1]
        assert all(r.extra["structured"] == "none" and "structured_outputs" in r.extra["structured_refused"]
                   for r in res)
    else:
        assert all(r.extra["structured"] == "response_format" and "structured_refused" not in r.extra for r in res)
    if variant == "verified":  # nothing valid from a random model: every round, every call
        assert all(r.extra["calls"] == r.extra["samples"] == 4 and r.extra["rounds"] == 2 for r in res)
    if (mode, variant) == ("fewshot", "default"):  # examples are sent as earlier user/assistant turns
        assert len(gen.examples_) == 6
        msgs = gen.builder_.api_messages(q[task.schema.names].to_numpy(float)[0], 0, 1, gen.examples_)
        assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 6 + ["user"]


class HostileServer(ChatServer):
    """An OpenAI-compatible chat endpoint on 127.0.0.1 that answers from a script, in order
    (``chat_server.ChatServer``): each scripted answer is the message content (a string) or, for
    a dict, the whole JSON body; ``requests`` counts what it was asked."""

    def __init__(self, answers: list) -> None:
        self.answers = list(answers)
        order = itertools.count()  # next() is atomic: concurrent requests take distinct answers
        super().__init__(lambda body: self.answers[next(order) % len(self.answers)], usage=(1, 1))

    @property
    def requests(self) -> int:
        return len(self.bodies)


def _answer(task, override: dict | None = None, raw_value: str | None = None) -> str:
    """A parseable JSON answer (every mutable feature), with values overridden or raw text."""
    names = [f.name for f in task.schema.features if f.mutable]
    values = {n: json.dumps(float(task.X_train[n].median())) for n in names}
    values.update({k: json.dumps(v) for k, v in (override or {}).items()})
    if raw_value is not None:
        values[names[0]] = raw_value
    return "{" + ", ".join(f'"{n}": {v}' for n, v in values.items()) + "}"


def test_one_bad_api_answer_fails_only_its_own_query(monkeypatch):
    """A 5000-digit integer, a broken body and a good answer: each query gets its own outcome."""
    pytest.importorskip("openai")
    from cfbench_llm.api import ApiLLM

    task = Task.load(resolve_spec("heart"))
    q = task.queries(n_per_class=2)
    answers = [
        _answer(task, raw_value="1" * 5000),  # json raises ValueError, not JSONDecodeError
        _answer(task),  # good
        {"id": "x", "object": "chat.completion", "created": 0, "model": "m",  # message: null
         "choices": [{"index": 0, "finish_reason": "stop", "message": None}]},
        _answer(task, raw_value="1" + "0" * 400),  # an integer too large for a float
    ]
    with HostileServer(answers) as srv:
        monkeypatch.setenv("CFBENCH_API_BASE", f"http://127.0.0.1:{srv.port}/v1")
        monkeypatch.setenv("CFBENCH_API_MODEL", "m")
        gen = ApiLLM("zeroshot", concurrency=1).fit(task.fit_context(0))
        res = gen.generate(q[task.schema.names], q.target.to_numpy(), 1, 10.0)
    assert [r.status for r in res] == ["invalid_output", "ok", "error", "invalid_output"]
    assert "invalid JSON" in res[0].reason and "not a finite number" in res[3].reason


@pytest.mark.slow
def test_huge_api_values_and_leaked_credentials_through_a_run(monkeypatch, tmp_path):
    """``"thalach": 1e308`` from the server is invalid_output and the summary is written; a
    3-character key and the credentials of the base URL appear in no record."""
    pytest.importorskip("openai")
    from cfbench.execution.config import RunConfig
    from cfbench.execution.orchestrator import execute
    from cfbench.execution.select import resolve_methods
    from cfbench.records.store import load_records
    from cfbench.score.summary import summarize

    task = Task.load(resolve_spec("heart"))
    key, password, token = "Zq9", "s3cretpw", "QQtokenQQ"
    answers = [_answer(task, {"thalach": 1e308}), _answer(task),
               f"leaking Zq9 / {password} / {token} / http://u:{password}@h/x {{not json"]
    with HostileServer(answers) as srv:
        monkeypatch.setenv("CFBENCH_API_BASE",
                           f"http://user:{password}@127.0.0.1:{srv.port}/v1?api_key={token}")
        monkeypatch.setenv("CFBENCH_API_MODEL", "m")
        monkeypatch.setenv("CFBENCH_API_KEY", key)
        params = (("api-zeroshot", {"concurrency": 1}),)
        cfg = RunConfig(task="heart", methods="api-zeroshot", n_queries=3, timeout=20.0,
                        out=tmp_path / "run", params=params)
        execute(cfg, task, resolve_methods("api-zeroshot", params=params)[0])
    recs = sorted(load_records(cfg.out), key=lambda r: r["query_id"])
    statuses = Counter(r["status"] for r in recs)
    assert statuses["invalid_output"] >= 2 and statuses["ok"] >= 1, statuses
    assert any("envelope" in r["reason"] and "thalach" in r["reason"] for r in recs)
    summary = summarize(task, recs)
    assert list(summary["methods"]) == ["api-zeroshot[concurrency=1]"]
    assert summary["methods"]["api-zeroshot[concurrency=1]"]["all"]["n_cfs"] == statuses["ok"]
    text = (cfg.out / "records.jsonl").read_text()
    for secret in (key, password, token):
        assert secret not in text
    assert "leaking ***" in text


def test_redact_short_keys_and_url_credentials(monkeypatch):
    from cfbench_llm.api import redact

    monkeypatch.setenv("CFBENCH_API_KEY", "k1")
    monkeypatch.setenv("CFBENCH_API_BASE", "https://bob:hunter2@api.example/v1?api_key=T0K&x=1")
    text = redact("key k1; url https://bob:hunter2@api.example/v1?api_key=T0K&x=1; pw hunter2 T0K")
    assert "k1" not in text and "hunter2" not in text and "T0K" not in text and "bob" not in text
    assert "x=1" in text and "api.example/v1" in text  # what is not secret stays readable


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
