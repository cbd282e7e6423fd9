"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp's server, ``transformers serve``).

Configured by environment variables only: ``CFBENCH_API_BASE`` (base URL, e.g.
``http://127.0.0.1:8000/v1``), ``CFBENCH_API_MODEL`` and, if the endpoint needs one,
``CFBENCH_API_KEY``.  The key is passed to the client and nowhere else: every message that leaves
this module (reasons, raw text, errors) has it, and any credentials in the base URL, replaced by
``***``.  One bad answer (unparsable, absurd numbers, an exception) fails only its own query.
A chat API gives no control of the logits, but most servers can enforce a JSON schema
(``structured``: the schema of the answer, sent as the server expects; a server that refuses it
is asked again without it, for the rest of the run).  Whatever the server promised, every answer
is parsed and checked as free text: one that does not parse is ``invalid_output`` with the raw
text kept, and ``extra`` says how it was asked for and whether it kept to the schema.
``api-fewshot:verified`` puts the task's classifier in the loop (``verify.Verifier``, shared
with ``llm-fewshot:verified``), within the query's budget.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from cfbench.api import FitContext, QueryResult, UserError, choices_error
from cfbench.api import redact as redaction
from cfbench_llm import structured
from cfbench_llm.params import API as API_PARAMS
from cfbench_llm.params import API_BY_MODE, API_VERIFIED, refuse_unused
from cfbench_llm.prompts import (
    ExamplePool,
    PromptBuilder,
    first_json_object,
    load_templates,
    value_formats,
)
from cfbench_llm.verify import Verifier

ENV_BASE, ENV_MODEL, ENV_KEY = "CFBENCH_API_BASE", "CFBENCH_API_MODEL", "CFBENCH_API_KEY"
VARIANTS = {"zeroshot": ("default",), "fewshot": ("default", "retrieval", "verified")}
PARAMS = {p.name: p.default for p in API_PARAMS}  # declared in cfbench_llm.params


def available() -> tuple[bool, str]:
    """Usable once a base URL and a model name are set."""
    missing = [v for v in (ENV_BASE, ENV_MODEL) if not os.environ.get(v)]
    if missing:
        return False, (f"set {' and '.join(missing)} to an OpenAI-compatible endpoint and model "
                       f"(and {ENV_KEY} if it needs a key)")
    return True, ""


def redact(text: str, secret: str | None = None) -> str:
    """``text`` with the API key (from the environment, or ``secret``), however short, and any
    credentials of ``CFBENCH_API_BASE`` (``user:pass@``, ``?api_key=``) replaced by ``***``."""
    secret = secret if secret is not None else os.environ.get(ENV_KEY, "")
    extra = [secret] if secret else []
    extra += redaction.url_secrets(os.environ.get(ENV_BASE, ""))
    return redaction.redact(text, extra)


class ApiLLM:
    """Zero- or few-shot counterfactuals from a chat endpoint, queries sent concurrently."""

    def __init__(self, mode: str, variant: str = "default", **params: Any) -> None:
        if mode not in VARIANTS:
            raise choices_error("api mode", mode, VARIANTS)
        if variant not in VARIANTS[mode]:
            raise choices_error(f"variant of api-{mode}", variant, VARIANTS[mode])
        refuse_unused(f"api-{mode}", API_BY_MODE[mode], params)  # keys this mode never uses
        self.mode, self.variant = mode, variant
        preset = API_VERIFIED if variant == "verified" else {}
        self.params = {**PARAMS, **preset, **params}
        for name in ("concurrency", "samples", "rounds"):
            v = self.params[name]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserError(f"api parameter {name}: expected a positive integer, got {v!r}")
        if not isinstance(self.params["compose"], bool):
            raise UserError(f"api parameter compose: expected true or false, got {self.params['compose']!r}")
        if self.params["structured"] not in structured.FORMS:
            raise choices_error("api parameter structured", self.params["structured"], structured.FORMS)

    def fit(self, context: FitContext) -> ApiLLM:
        ok, hint = available()
        if not ok:
            raise UserError(hint)
        from openai import OpenAI  # heavy optional dependency: imported on first use

        p = self.params
        self.base_url_ = os.environ[ENV_BASE]
        self.model_ = os.environ[ENV_MODEL]
        self.client_ = OpenAI(base_url=self.base_url_, api_key=os.environ.get(ENV_KEY) or "none", max_retries=1)
        self.names_ = context.schema.names
        self.predict_ = context.predict
        formats = value_formats(context.schema, context.X_train, int(p["digits"]))
        self.builder_ = PromptBuilder(context.schema, formats, context.class_names, context.task_name,
                                      context.task_description, load_templates(p["prompt_dir"]),
                                      p["row_style"], p["sep"])
        self.schema_ = structured.answer_schema(self.builder_)
        self.structured_ = p["structured"]  # "none" once the server has refused it
        self.refusal_ = ""  # why, for the records
        self.pool_ = self.examples_ = None
        if self.mode == "fewshot":
            self.pool_ = ExamplePool(int(p["pool"]), seed=context.seed).fit(context)
            if self.variant != "retrieval":
                seed = context.seed if p["example_seed"] is None else int(p["example_seed"])
                self.examples_ = [self.pool_.pair(i) for i in self.pool_.fixed(int(p["examples"]), seed)]
        self.verifier_ = Verifier(context, formats, bool(p["compose"])) if self.variant == "verified" else None
        return self

    def generate(self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float) -> list[QueryResult]:
        X = queries[self.names_].to_numpy(float)
        sources = np.asarray(self.predict_(queries[self.names_]), dtype=int)
        jobs = list(zip(X, sources, np.asarray(targets, dtype=int), strict=True))
        with ThreadPoolExecutor(max_workers=int(self.params["concurrency"])) as pool:
            return list(pool.map(lambda job: self._guarded(*job, k=max(int(k), 1), budget=budget), jobs))

    def _guarded(self, x: np.ndarray, source: int, target: int, k: int, budget: float) -> QueryResult:
        """``_one`` (or ``_verified``), with anything it raises turned into an ``error`` of this query alone."""
        try:
            if self.variant == "verified":
                return self._verified(x, source, target, k, budget)
            return self._one(x, source, target, budget)
        except Exception as exc:  # noqa: BLE001 - one bad answer must not fail the batch
            return QueryResult("error", None, redact(f"{type(exc).__name__}: {exc}")[:500])

    def _examples(self, x: np.ndarray, source: int) -> list:
        if self.variant == "retrieval":
            picks = self.pool_.nearest(x, int(source), int(self.params["examples"]))
            return [self.pool_.pair(i) for i in picks]
        return self.examples_ or []

    def _one(self, x: np.ndarray, source: int, target: int, budget: float) -> QueryResult:
        messages = self.builder_.api_messages(x, int(source), int(target), self._examples(x, source))
        return self._ask(messages, x, max(float(budget), 1.0))

    def _ask(self, messages: list[dict], x: np.ndarray, timeout: float) -> QueryResult:
        """One call (two when the server refuses the schema: the second without it), its answer
        parsed: one CF, ``invalid_output`` with the raw text, or the call's ``error``/``timeout``.
        ``extra``: seconds, calls, tokens, ``structured`` (how the answer was asked for) and,
        when a schema was sent, ``schema_ok`` (and ``schema_violation``)."""
        cap = int(self.params["max_tokens"]) or 12 * len(self.builder_.mutable) + 32
        form = self.structured_
        extra: dict[str, Any] = {"calls": 1}
        t0 = time.perf_counter()

        def create(form: str) -> Any:
            return self.client_.chat.completions.create(
                model=self.model_, messages=messages, max_tokens=cap, timeout=timeout,
                temperature=float(self.params["temperature"]), **structured.request_fields(form, self.schema_))

        try:
            try:
                resp = create(form)
            except Exception as exc:
                if form == "none" or not structured.refused(exc):
                    raise
                self.structured_, form = "none", "none"  # remembered for the rest of the run
                self.refusal_ = redact(_describe(exc))[:300]
                extra["calls"] += 1
                resp = create(form)
        except Exception as exc:  # network, HTTP, timeout: reported per query, key never shown
            kind = "timeout" if "timeout" in type(exc).__name__.lower() else "error"
            extra.update(seconds=time.perf_counter() - t0, structured=form)
            return QueryResult(kind, None, redact(f"{_describe(exc)} (endpoint {self.base_url_})")[:500],
                               extra=extra)
        extra.update(seconds=time.perf_counter() - t0, structured=form)
        if self.refusal_:
            extra["structured_refused"] = self.refusal_
        try:
            return self._read(resp, x, extra)
        except Exception as exc:  # noqa: BLE001 - a malformed body fails this answer only
            return QueryResult("error", None, redact(f"malformed answer: {type(exc).__name__}: {exc}")[:500],
                               extra=extra)

    def _read(self, resp: Any, x: np.ndarray, extra: dict[str, Any]) -> QueryResult:
        """The answer of one call: its text parsed and checked against the schema, for the record."""
        raw = resp.choices[0].message.content or "" if resp.choices else ""
        usage = getattr(resp, "usage", None)
        if usage is not None:
            extra.update(prompt_tokens=usage.prompt_tokens or 0, new_tokens=usage.completion_tokens or 0)
        if self.params["structured"] != "none":  # a schema was meant: did the answer keep to it?
            obj, why = first_json_object(raw)
            broken = why or structured.violation(obj, self.schema_)
            extra["schema_ok"] = not broken
            if broken:
                extra["schema_violation"] = redact(broken)[:200]
        cf, why = self.builder_.parse_json(raw, x)
        if cf is None:
            return QueryResult("invalid_output", None, f"answer not parsed: {why}", raw=redact(raw), extra=extra)
        return QueryResult.ok(pd.DataFrame([cf], columns=self.names_), raw=redact(raw), extra=extra)

    def _verified(self, x: np.ndarray, source: int, target: int, k: int, budget: float) -> QueryResult:
        """The classifier in the loop over the API (``verify.Verifier.search``, as
        ``llm-fewshot:verified``): ``samples`` calls per round, up to ``rounds`` rounds, a later
        round's last message listing the candidates the classifier rejected.  The first call is
        always made; no call starts once the query's ``budget`` (wall seconds) is spent, and each
        call may take at most what is left of it (at least 1 s); a round whose calls all failed
        (HTTP errors, timeouts) ends the query.  ``extra`` counts the calls and tokens of the
        whole query."""
        t0 = time.perf_counter()
        examples = self._examples(x, source)
        n_samples = int(self.params["samples"])
        asked: list[QueryResult] = []
        spent = False

        def propose(pending: np.ndarray, notes: list[str], r: int) -> list[list[QueryResult]]:
            nonlocal spent
            if asked and all(a.status in ("error", "timeout") for a in asked[-n_samples:]):
                return [[]]  # every call of the last round failed: the endpoint, not the model
            messages = self.builder_.api_messages(x, int(source), int(target), examples, note=notes[0])
            got: list[QueryResult] = []
            for _ in range(n_samples):
                left = float(budget) - (time.perf_counter() - t0)
                if left <= 0 and asked:
                    spent = True
                    break
                got.append(self._ask(messages, x, max(left, 1.0)))
                asked.append(got[-1])
            return [got]

        def feedback(x_: np.ndarray, s: int, t: int, rows: list[np.ndarray]) -> str:
            return self.builder_.feedback(x_, s, t, rows, json_format=True)  # as the answers are written

        rounds = int(self.params["rounds"])
        res = self.verifier_.search(x[None, :], np.array([source]), np.array([target]), k, rounds,
                                    propose, feedback)[0]
        forms = list(dict.fromkeys(a.extra["structured"] for a in asked))
        res.extra.update(seconds=time.perf_counter() - t0, structured=",".join(forms),
                         budget_spent=spent)
        if "schema_ok" in asked[0].extra:
            res.extra["schema_violations"] = sum(not a.extra.get("schema_ok", True) for a in asked)
        if self.refusal_:
            res.extra["structured_refused"] = self.refusal_
        return res


def _describe(exc: BaseException) -> str:
    """``exc`` in one line, with the HTTP body the server sent when its message leaves it out
    (the openai client says only "Error code: 422" for a body without an ``error`` member)."""
    text = f"{type(exc).__name__}: {exc}"
    body = getattr(exc, "body", None)
    return text if body is None or str(body) in text else f"{text} {body}"
