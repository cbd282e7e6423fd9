"""Structured outputs: the JSON schema of an API answer, and how a server is asked to enforce it.

OpenAI, llama.cpp's ``llama-server``, SGLang and vLLM accept the schema as
``response_format={"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``;
vLLM (0.12 and later) also takes its own ``extra_body={"structured_outputs": {"json": schema}}``.
The schema follows what the prompt asks the model to write (``PromptBuilder.api_messages``,
``PromptBuilder.parse_json``): a JSON object of the mutable features only.  A server that
ignores the schema is not trusted: every answer is still parsed and validated as free text,
and ``violation`` says, for the record, where an answer breaks the schema.
"""

from __future__ import annotations

import math
from typing import Any

from cfbench.api import UserError
from cfbench_llm.prompts import PromptBuilder

#: how the schema is sent: the OpenAI field, vLLM's own field, or not at all (free text)
FORMS = ("response_format", "vllm", "none")
#: what a 400/422 answer must mention to count as "this server refuses structured outputs"
REFUSAL_WORDS = ("response_format", "json_schema", "structured_output", "structured output", "schema",
                 "guided", "extra_body", "extra inputs", "unrecognized request argument")
NAME = "counterfactual"


def answer_schema(builder: PromptBuilder) -> dict[str, Any]:
    """The JSON schema of the counterfactual the prompt asks for: one property per mutable
    feature (immutables are not written: the harness copies them), typed ``integer`` or
    ``number``, with the schema's finite bounds as ``minimum``/``maximum``; categorical and
    ordinal codes as ``enum``.  ``cf_style="full"``: every property required; ``"edits"``: any
    non-empty subset.  No other property is allowed."""
    lower, upper = builder.schema.bounds()
    props: dict[str, Any] = {}
    for i in builder.mutable:
        f, fmt = builder.schema.features[i], builder.formats[i]
        if fmt.choices:  # the codes exactly as the prompt writes them
            prop: dict[str, Any] = {"type": "integer", "enum": [int(c) for c in fmt.choices]}
        else:
            prop = {"type": "integer" if f.integer else "number"}
            for key, bound in (("minimum", lower[i]), ("maximum", upper[i])):
                if math.isfinite(bound):  # an open bound is NaN
                    prop[key] = int(bound) if float(bound).is_integer() else float(bound)
        props[f.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if builder.cf_style == "edits":
        schema.update(required=[], minProperties=1)
    else:
        schema["required"] = list(props)
    return schema


def request_fields(form: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``chat.completions.create`` that carry ``schema`` in ``form``."""
    if form == "response_format":
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": NAME, "schema": schema, "strict": True}}}
    if form == "vllm":
        return {"extra_body": {"structured_outputs": {"json": schema}}}
    if form == "none":
        return {}
    raise UserError(f"api parameter structured: got {form!r}; valid choices: {', '.join(FORMS)}")


def refused(exc: BaseException) -> bool:
    """Whether ``exc`` is a server's refusal of the structured-output field: an HTTP 400 or 422
    whose message names it (e.g. ``response_format``, ``json_schema``, an unknown argument)."""
    if getattr(exc, "status_code", None) not in (400, 422):
        return False
    text = f"{exc} {getattr(exc, 'body', '')}".lower()
    return any(word in text for word in REFUSAL_WORDS)


def violation(obj: Any, schema: dict[str, Any]) -> str:
    """Where ``obj`` breaks ``schema`` (the subset ``answer_schema`` writes), or ``""``."""
    if not isinstance(obj, dict):
        return f"expected an object, got {type(obj).__name__}"
    props = schema.get("properties", {})
    missing = [k for k in schema.get("required", ()) if k not in obj]
    if missing:
        return f"missing {missing[0]!r}"
    if schema.get("additionalProperties") is False:
        extra = sorted(set(obj) - set(props))
        if extra:
            return f"not allowed: {extra[0]!r}"
    if len(obj) < schema.get("minProperties", 0):
        return "empty object"
    for key, value in obj.items():
        rule = props.get(key, {})
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if rule.get("type") in ("number", "integer") and not numeric:
            return f"{key!r}: not a number ({str(value)[:40]!r})"
        if not numeric:
            continue
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            finite = False
        if not finite:
            return f"{key!r}: not a finite number"
        if rule.get("type") == "integer" and not float(value).is_integer():
            return f"{key!r}: not an integer ({value})"
        if "enum" in rule and value not in rule["enum"]:
            return f"{key!r}: {value} is not one of {rule['enum']}"
        if "minimum" in rule and value < rule["minimum"]:
            return f"{key!r}: {value} < minimum {rule['minimum']}"
        if "maximum" in rule and value > rule["maximum"]:
            return f"{key!r}: {value} > maximum {rule['maximum']}"
    return ""
