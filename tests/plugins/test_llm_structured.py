"""Structured outputs on OpenAI-compatible servers, and api-fewshot:verified.

The schema is built from the task's feature schema (``cfbench_llm.structured``); scripted servers
on 127.0.0.1 (stdlib ``http.server`` in a thread, ephemeral port) check that each request carries
it in the configured form, answer with schema-valid or schema-breaking JSON, refuse the schema
with a 400, or answer slowly; every answer must be recorded for what it is.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from chat_server import ChatServer

from cfbench.core.errors import UserError
from cfbench.core.plugins import registry
from cfbench.core.schema import Feature, FeatureSchema
from cfbench.tasks.spec import Task, resolve_spec

pytest.importorskip("openai")

from cfbench_llm import structured  # noqa: E402
from cfbench_llm.api import ApiLLM  # noqa: E402
from cfbench_llm.prompts import PromptBuilder, load_templates, value_formats  # noqa: E402


class ScriptedServer(ChatServer):
    """An OpenAI-compatible chat endpoint on 127.0.0.1 whose answers come from ``handler(body)``
    (``chat_server.ChatServer``: a string is the message content of a 200 answer, usage 10
    prompt and 5 completion tokens; a ``(status, payload)`` pair is sent as it is)."""


@pytest.fixture(scope="module")
def heart():
    task = Task.load(resolve_spec("heart"))
    return task, task.fit_context(0), task.queries(n_per_class=2)


def _endpoint(monkeypatch, srv: ScriptedServer) -> None:
    monkeypatch.setenv("CFBENCH_API_BASE", srv.base)
    monkeypatch.setenv("CFBENCH_API_MODEL", "m")
    monkeypatch.delenv("CFBENCH_API_KEY", raising=False)


def _answer(task, **override) -> str:
    """Every mutable feature at its training median (codes: the most common), values overridden."""
    out = {}
    for f in task.schema.features:
        if f.mutable:
            col = task.X_train[f.name]
            out[f.name] = float(col.mode()[0] if f.kind != "numeric" else col.median())
    out.update(override)
    return json.dumps(out)


def _last_user(body: dict) -> str:
    return body["messages"][-1]["content"]


# ----------------------------------------------------------------------------- the schema


def test_schema_follows_the_features_the_prompt_asks_for(heart):
    task, ctx, _ = heart
    gen = ApiLLM("zeroshot")
    builder = PromptBuilder(task.schema, value_formats(task.schema, task.X_train), ctx.class_names,
                            "heart", "", load_templates())
    s = structured.answer_schema(builder)
    mutable = [f.name for f in task.schema.features if f.mutable]
    assert list(s["properties"]) == mutable and "age" not in s["properties"] and "sex" not in s["properties"]
    assert s["required"] == mutable and s["additionalProperties"] is False and s["type"] == "object"
    assert s["properties"]["cp"] == {"type": "integer", "enum": [1, 2, 3, 4]}
    assert s["properties"]["thal"] == {"type": "integer", "enum": [3, 6, 7]}
    assert s["properties"]["ca"]["enum"] == [0, 1, 2, 3]  # ordinal codes too
    assert s["properties"]["chol"] == {"type": "integer", "minimum": 100, "maximum": 600}
    assert s["properties"]["oldpeak"] == {"type": "number", "minimum": 0, "maximum": 7}
    # what the prompt asks for and what the schema allows are the same keys
    x = task.X_train[task.schema.names].to_numpy(float)[0]
    assert list(json.loads(builder.cf_json(x))) == list(s["properties"])
    assert gen.params["structured"] == "response_format"  # the default


def test_open_bounds_are_left_out_and_edits_need_no_key():
    schema = FeatureSchema((Feature("a", lower=None, upper=5.0), Feature("b", lower=0.5, upper=None),
                            Feature("c", mutable=False, lower=0, upper=1)))
    X = pd.DataFrame({"a": [1.5, 2.25], "b": [1.0, 3.0], "c": [0.0, 1.0]})
    for style, required in (("full", ["a", "b"]), ("edits", [])):
        b = PromptBuilder(schema, value_formats(schema, X), {0: "no", 1: "yes"}, "t", "", load_templates(),
                          cf_style=style)
        s = structured.answer_schema(b)
        assert s["properties"] == {"a": {"type": "number", "maximum": 5}, "b": {"type": "number", "minimum": 0.5}}
        assert s["required"] == required
        assert s.get("minProperties", 0) == (1 if style == "edits" else 0)


def test_violation_names_the_broken_rule():
    s = {"type": "object", "additionalProperties": False, "required": ["a", "b"],
         "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}, "b": {"type": "integer", "enum": [1, 2]}}}
    assert structured.violation({"a": 3, "b": 2}, s) == ""
    assert structured.violation({"a": 3.0, "b": 1}, s) == ""  # 3.0 is an integer in JSON Schema
    assert "missing 'b'" in structured.violation({"a": 3}, s)
    assert "not allowed: 'c'" in structured.violation({"a": 3, "b": 2, "c": 0}, s)
    assert "maximum" in structured.violation({"a": 10, "b": 2}, s)
    assert "minimum" in structured.violation({"a": -1, "b": 2}, s)
    assert "not an integer" in structured.violation({"a": 2.5, "b": 2}, s)
    assert "not one of" in structured.violation({"a": 1, "b": 3}, s)
    assert "not a number" in structured.violation({"a": "x", "b": 2}, s)
    assert "not a finite number" in structured.violation({"a": 10 ** 400, "b": 2}, s)
    assert "expected an object" in structured.violation([1], s)


def test_refused_only_for_a_400_or_422_about_the_schema():
    class HTTPError(Exception):
        def __init__(self, status: int, message: str) -> None:
            super().__init__(message)
            self.status_code, self.body = status, {"message": message}

    assert structured.refused(HTTPError(400, "response_format json_schema is not supported"))
    assert structured.refused(HTTPError(400, "Unrecognized request argument supplied: structured_outputs"))
    assert structured.refused(HTTPError(422, "Extra inputs are not permitted: response_format"))
    assert not structured.refused(HTTPError(400, "maximum context length is 8192 tokens"))
    assert not structured.refused(HTTPError(500, "response_format crashed the server"))
    assert not structured.refused(ConnectionError("response_format"))


def test_bad_structured_value_is_one_line():
    with pytest.raises(UserError, match=r"structured 'xml'; valid choices: none, response_format, vllm$"):
        ApiLLM("zeroshot", structured="xml")
    with pytest.raises(UserError, match="samples: expected a positive integer"):
        ApiLLM("fewshot", "verified", samples=0)
    with pytest.raises(UserError, match="api parameter compose: expected true or false, got 'no'"):
        ApiLLM("fewshot", "verified", compose="no")
    with pytest.raises(UserError, match="unknown parameter 'samples' of method 'api-zeroshot'"):
        ApiLLM("zeroshot", samples=2)


# ----------------------------------------------------------------------------- over HTTP


@pytest.mark.parametrize("form", ["response_format", "vllm", "none"])
def test_each_request_carries_the_schema_in_the_configured_form(heart, monkeypatch, form):
    """Valid answers are ok; answers that break the schema are recorded as written: a value
    out of bounds is an ok CF flagged ``schema_ok: False``, a missing feature is
    ``invalid_output`` with the raw text; nothing is repaired."""
    task, ctx, q = heart
    answers = [_answer(task), _answer(task, chol=900.0), _answer(task, extra_key=1.0),
               json.dumps({"chol": 240.0})]

    def handler(body: dict) -> str:  # the answer of the query whose patient the request shows
        patient = json.loads(_last_user(body).split(": ", 1)[1].split("\n")[0])
        return answers[list(q["chol"]).index(patient["chol"])]

    with ScriptedServer(handler) as srv:
        _endpoint(monkeypatch, srv)
        gen = ApiLLM("zeroshot", structured=form, concurrency=2).fit(ctx)
        res = gen.generate(q[task.schema.names], q.target.to_numpy(), 1, 10.0)
    assert len(q) == 4 and q["chol"].nunique() == 4
    schema = gen.schema_
    for body in srv.bodies:
        if form == "response_format":
            assert body["response_format"] == {"type": "json_schema", "json_schema": {
                "name": "counterfactual", "schema": schema, "strict": True}}
            assert "structured_outputs" not in body
        elif form == "vllm":
            assert body["structured_outputs"] == {"json": schema} and "response_format" not in body
        else:
            assert "structured_outputs" not in body and "response_format" not in body
    assert [r.status for r in res] == ["ok", "ok", "ok", "invalid_output"]
    assert all(r.extra["structured"] == form and r.extra["calls"] == 1 for r in res)
    assert res[1].cfs["chol"].iloc[0] == 900.0  # as written, not clipped
    assert "missing feature 'cp'" in res[3].reason and res[3].raw == answers[3]
    if form == "none":
        assert all("schema_ok" not in r.extra for r in res)
    else:
        assert [r.extra["schema_ok"] for r in res] == [True, False, False, False]
        assert "maximum" in res[1].extra["schema_violation"]
        assert "extra_key" in res[2].extra["schema_violation"]
        assert "missing 'cp'" in res[3].extra["schema_violation"]


def test_a_server_refusing_the_schema_is_asked_again_without_it(heart, monkeypatch):
    """A 400 naming response_format: the query is retried once without the schema, and the rest
    of the run sends none; a 400 about anything else is that query's error, not retried."""
    task, ctx, q = heart

    def handler(body: dict) -> tuple[int, dict] | str:
        if "response_format" in body:
            return 400, {"error": {"message": "'response_format' of type 'json_schema' is not supported",
                                   "type": "invalid_request_error"}}
        return _answer(task)

    with ScriptedServer(handler) as srv:
        _endpoint(monkeypatch, srv)
        gen = ApiLLM("zeroshot", concurrency=1).fit(ctx)
        res = gen.generate(q[task.schema.names], q.target.to_numpy(), 1, 10.0)
        again = gen.generate(q[task.schema.names].iloc[:1], q.target.to_numpy()[:1], 1, 10.0)
    assert [r.status for r in res + again] == ["ok"] * 5
    assert [r.extra["calls"] for r in res] == [2, 1, 1, 1]
    assert len(srv.bodies) == 6 and sum("response_format" in b for b in srv.bodies) == 1
    for r in res + again:
        assert r.extra["structured"] == "none" and "not supported" in r.extra["structured_refused"]
        assert r.extra["schema_ok"]  # still checked against the schema meant

    def other(body: dict) -> tuple[int, dict]:
        return 400, {"error": {"message": "This model's maximum context length is 8 tokens"}}

    with ScriptedServer(other) as srv:
        _endpoint(monkeypatch, srv)
        gen = ApiLLM("zeroshot", concurrency=1).fit(ctx)
        res = gen.generate(q[task.schema.names], q.target.to_numpy(), 1, 10.0)
    assert [r.status for r in res] == ["error"] * 4 and len(srv.bodies) == 4
    assert all("context length" in r.reason and r.extra["structured"] == "response_format" for r in res)


# ----------------------------------------------------------------------------- verified


def _chol_classifier(gen: ApiLLM, task) -> None:
    """A stand-in classifier for the verifier: class 1 exactly when chol >= 300."""
    chol = task.schema.names.index("chol")
    gen.verifier_.classes = np.array([0, 1])
    gen.verifier_.predict_proba = lambda X: np.where((np.asarray(X)[:, chol] >= 300)[:, None],
                                                     [0.1, 0.9], [0.9, 0.1])


def test_verified_counts_calls_and_shows_the_rejected(heart, monkeypatch):
    """Towards class 1 the first round's answers (chol 200) are rejected; the second round's
    request lists them and its answers (chol 350) are accepted: 2 rounds, 4 calls and their
    tokens in the record.  Towards class 0 the first round's answers are valid."""
    task, ctx, q = heart
    assert registry().generator("api-fewshot").variant_defaults["verified"] == {"temperature": 1.0}

    def handler(body: dict) -> str:
        return _answer(task, chol=350.0 if "Rejected" in _last_user(body) else 200.0)

    with ScriptedServer(handler) as srv:
        _endpoint(monkeypatch, srv)
        gen = ApiLLM("fewshot", "verified", samples=2, rounds=3, concurrency=2).fit(ctx)
        _chol_classifier(gen, task)
        res = gen.generate(q[task.schema.names], q.target.to_numpy(), 1, 30.0)
    notes = [_last_user(b) for b in srv.bodies if "Rejected" in _last_user(b)]
    for t, r in zip(q.target.to_numpy(), res, strict=True):
        assert r.status == "ok", r.reason
        calls, rounds = (4, 2) if t == 1 else (2, 1)
        assert {k: r.extra[k] for k in ("calls", "rounds", "samples")} == {"calls": calls, "rounds": rounds,
                                                                           "samples": calls}
        assert r.extra["prompt_tokens"] == 10 * calls and r.extra["new_tokens"] == 5 * calls
        assert r.extra["structured"] == "response_format" and r.extra["schema_violations"] == 0
        assert not r.extra["budget_spent"]
        chol = r.cfs["chol"].iloc[0]
        assert (chol >= 300) == (t == 1)  # what the (stand-in) classifier accepts
    assert len(srv.bodies) == sum(r.extra["calls"] for r in res)
    assert all(b["temperature"] == 1.0 and b["response_format"]["json_schema"]["strict"] for b in srv.bodies)
    # the rejected candidate is shown as the JSON the model writes, in the few-shot conversation
    assert len(notes) == 2 * int((q.target == 1).sum())
    assert all('"chol": 200' in n and n.startswith("Patient (") for n in notes)
    assert all(len(b["messages"]) == 1 + 2 * 6 + 1 for b in srv.bodies)


def test_verified_stops_at_the_budget_and_keeps_errors_as_errors(heart, monkeypatch):
    task, ctx, q = heart
    x, t = q[task.schema.names].iloc[:2], q.target.to_numpy()[:2]
    with ScriptedServer(lambda body: _answer(task, chol=200.0 if t[0] == 1 else 350.0), delay=0.1) as srv:
        _endpoint(monkeypatch, srv)
        gen = ApiLLM("fewshot", "verified", samples=4, rounds=3, concurrency=1).fit(ctx)
        _chol_classifier(gen, task)
        res = gen.generate(x.iloc[:1], t[:1], 1, 0.05)  # the first call alone outlasts the budget
    assert res[0].status == "not_found" and res[0].extra["calls"] == 1 and res[0].extra["budget_spent"]
    assert len(srv.bodies) == 1

    def down(body: dict) -> tuple[int, dict]:
        return 400, {"error": {"message": "model 'm' is not loaded"}}

    with ScriptedServer(down) as srv:
        _endpoint(monkeypatch, srv)
        gen = ApiLLM("fewshot", "verified", samples=2, rounds=2, concurrency=1).fit(ctx)
        res = gen.generate(x, t, 1, 10.0)
    # no answer parsed: the endpoint's error, not "no valid counterfactual"
    assert [r.status for r in res] == ["error", "error"]
    assert all("not loaded" in r.reason and r.extra["calls"] == 2 for r in res)
    assert len(srv.bodies) == 4  # a round whose calls all failed ends the query: no second round
