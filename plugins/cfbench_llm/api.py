"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp's server, ``transformers serve``).

Configured by environment variables only: ``CFBENCH_API_BASE`` (base URL, e.g.
``http://127.0.0.1:8000/v1``), ``CFBENCH_API_MODEL`` and, if the endpoint needs one,
``CFBENCH_API_KEY``.  The key is passed to the client and nowhere else: every message that leaves
this module (reasons, raw text, errors) has it, and any credentials in the base URL, replaced by
``***``.  One bad answer (unparsable, absurd numbers, an exception) fails only its own query.
A chat API gives no control of the logits, so these variants are free text (JSON), and answers
that do not parse are ``invalid_output`` with the raw text kept.
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
from cfbench_llm.params import API as API_PARAMS
from cfbench_llm.params import API_BY_MODE, refuse_unused
from cfbench_llm.prompts import ExamplePool, PromptBuilder, load_templates, value_formats

ENV_BASE, ENV_MODEL, ENV_KEY = "CFBENCH_API_BASE", "CFBENCH_API_MODEL", "CFBENCH_API_KEY"
VARIANTS = {"zeroshot": ("default",), "fewshot": ("default", "retrieval")}
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
        self.params = {**PARAMS, **params}
        if int(self.params["concurrency"]) < 1:
            raise UserError(f"api parameter concurrency: expected a positive integer, got {self.params['concurrency']!r}")

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
        self.pool_ = self.examples_ = None
        if self.mode == "fewshot":
            self.pool_ = ExamplePool(int(p["pool"]), seed=context.seed).fit(context)
            if self.variant == "default":
                seed = context.seed if p["example_seed"] is None else int(p["example_seed"])
                self.examples_ = [self.pool_.pair(i) for i in self.pool_.fixed(int(p["examples"]), seed)]
        return self

    def generate(self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float) -> list[QueryResult]:
        X = queries[self.names_].to_numpy(float)
        sources = np.asarray(self.predict_(queries[self.names_]), dtype=int)
        jobs = list(zip(X, sources, np.asarray(targets, dtype=int), strict=True))
        with ThreadPoolExecutor(max_workers=int(self.params["concurrency"])) as pool:
            return list(pool.map(lambda job: self._guarded(*job, budget=budget), jobs))

    def _guarded(self, x: np.ndarray, source: int, target: int, budget: float) -> QueryResult:
        """``_one``, with anything it raises turned into an ``error`` of this query alone."""
        try:
            return self._one(x, source, target, budget)
        except Exception as exc:  # noqa: BLE001 - one bad answer must not fail the batch
            return QueryResult("error", None, redact(f"{type(exc).__name__}: {exc}")[:500])

    def _one(self, x: np.ndarray, source: int, target: int, budget: float) -> QueryResult:
        examples = self.examples_ or []
        if self.variant == "retrieval":
            picks = self.pool_.nearest(x, int(source), int(self.params["examples"]))
            examples = [self.pool_.pair(i) for i in picks]
        messages = self.builder_.api_messages(x, int(source), int(target), examples)
        cap = int(self.params["max_tokens"]) or 12 * len(self.builder_.mutable) + 32
        t0 = time.perf_counter()
        try:
            resp = self.client_.chat.completions.create(
                model=self.model_, messages=messages, max_tokens=cap,
                temperature=float(self.params["temperature"]), timeout=max(float(budget), 1.0),
            )
        except Exception as exc:  # network, HTTP, timeout: reported per query, key never shown
            kind = "timeout" if "timeout" in type(exc).__name__.lower() else "error"
            return QueryResult(kind, None, redact(f"{type(exc).__name__}: {exc} (endpoint {self.base_url_})")[:500])
        raw = resp.choices[0].message.content or "" if resp.choices else ""
        extra = {"seconds": time.perf_counter() - t0}
        usage = getattr(resp, "usage", None)
        if usage is not None:
            extra.update(prompt_tokens=usage.prompt_tokens, new_tokens=usage.completion_tokens)
        cf, why = self.builder_.parse_json(raw, x)
        if cf is None:
            return QueryResult("invalid_output", None, f"answer not parsed: {why}", raw=redact(raw), extra=extra)
        return QueryResult.ok(pd.DataFrame([cf], columns=self.names_), raw=redact(raw), extra=extra)
