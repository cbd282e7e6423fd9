"""Declared parameters of the LLM generators: what ``Settings`` (local) and ``ApiLLM`` accept.

Kept apart from the generators so that listing and validating them imports no model code; the
tests check these declarations against ``Settings`` and ``api.PARAMS`` field by field.
``LOCAL`` and ``API`` are every field; each method declares (and its factory accepts) only the
ones its mode uses (``LOCAL_BY_MODE``, ``API_BY_MODE``): few-shot keys for the few-shot modes,
fine-tuning keys for llm-finetuned.
"""

from __future__ import annotations

from typing import Any

from cfbench.api import Param, UserError, registry, unknown_param
from cfbench_llm.models import DTYPES, QUANTIZE
from cfbench_llm.prompts import CF_STYLES, ROW_STYLES
from cfbench_llm.structured import FORMS as STRUCTURED

#: shared by the local and the API generators (prompt formatting and few-shot examples)
_PROMPT = (
    Param("examples", int, 3, "few-shot examples per direction (fixed) or per query (retrieval)",
          minimum=1),
    Param("example_seed", int, None, "seed of the fixed few-shot examples (unset: the run's seed)",
          minimum=0),
    Param("pool", int, 400, "training rows whose nearest-unlike-neighbour CFs are example "
          "candidates", minimum=1),
    Param("prompt_dir", str, None, "folder overriding the prompt templates (unset: "
          "$CFBENCH_PROMPT_DIR or the packaged ones)"),
    Param("row_style", str, "json", "how a patient row is written in prompts", choices=ROW_STYLES),
    Param("sep", str, ",", "separator between values in the values/named row styles"),
    Param("digits", int, 3, "significant digits of values in prompts", minimum=1),
)

LOCAL = (
    Param("model", str, None, "Hugging Face id or local folder (unset: $CFBENCH_LLM_MODEL or "
          "the embedded Gemma 3 270M)"),
    Param("device", str, None, "auto, cpu or cuda[:N] (unset: auto)"),
    Param("batch_size", int, 32, "most sequences decoded together (memory grows with it; "
          "the fast variant uses 50)", minimum=1),
    *_PROMPT,
    Param("cf_style", str, "full", "what the model writes: the full row or only the changed "
          "features (the fast variant uses edits)", choices=CF_STYLES),
    Param("max_edits", int, 0, "edits style: most features one CF may change (0 = no cap; the "
          "fast variant uses 3)", minimum=0),
    Param("quantize", str, "none", "int8 = dynamic int8 linear layers, CPU only (the fast and "
          "verified variants use int8, unless the device is a GPU or dtype is bfloat16)", choices=QUANTIZE),
    Param("dtype", str, "auto", "the model's float type: auto = bfloat16 on CUDA and on CPUs with "
          "native bfloat16 (AVX512-BF16/AMX) unless int8, else float32", choices=DTYPES),
    Param("clip", bool, False, "clip generated values to the schema bounds"),
    Param("max_new_tokens", int, 0, "free-text token cap (0 = 12 per mutable feature + 16)",
          minimum=0),
    Param("temperature", float, 1.0, "k > 1: sampling temperature of the candidates (k = 1 "
          "decodes greedily; the verified variant samples at 1.5 whatever k)", minimum=0),
    Param("samples", int, 0, "k > 1: candidates sampled per query, the distinct ones kept "
          "(0 = 3k; the verified variant: 8 per round, whatever k)", minimum=0),
    Param("rounds", int, 4, "verified variant: sampling rounds; each later round shows the model "
          "the candidates the classifier rejected", minimum=1),
    Param("compose", bool, True, "verified variant: a query without a valid candidate has its "
          "rejected candidates' edits merged, best single edit first, until the classifier agrees"),
    Param("steer", bool, True, "verified variant, edits style: each sampled candidate must first "
          "change one of the features whose single change moves the classifier most toward the target"),
    Param("tune_malloc", bool, True, "tune glibc malloc for long decoding runs"),
    Param("threads", int, None, "torch CPU threads (unset: $CFBENCH_LLM_THREADS or torch's)",
          minimum=1),
    Param("pairs", int, 128, "fine-tuning: training pairs", minimum=1),
    Param("epochs", int, 2, "fine-tuning: epochs", minimum=1),
    Param("lr", float, 1e-3, "fine-tuning: learning rate", exclusive_minimum=0),
    Param("rank", int, 8, "fine-tuning: LoRA rank", minimum=1),
    Param("ft_batch", int, 8, "fine-tuning: batch size", minimum=1),
    Param("teacher", str, "prototype", "fine-tuning: CFs the model learns: prototype (features "
          "moved to the target class's typical values until the classifier gives 0.7), "
          "nearest-neighbour (nearest unlike training row), sparse (that row sparsified and "
          "classifier-checked as the edits examples) or any registered method[:variant]"),
    Param("checkpointing", bool, True, "fine-tuning: recompute each layer's activations in the "
          "backward pass (under half the peak memory, ~1.4x the CPU time; the same adapter)"),
    Param("force_finetune", bool, False, "fine-tuning: train again even if an adapter is cached"),
)

API = (
    *_PROMPT,
    Param("max_tokens", int, 0, "answer token cap (0 = 12 per mutable feature + 32)", minimum=0),
    Param("concurrency", int, 4, "queries sent to the endpoint at once", minimum=1),
    Param("temperature", float, 0.0, "sampling temperature (the verified variant uses 1.0)", minimum=0),
    Param("structured", str, "response_format", "how the answer's JSON schema is sent: response_format "
          "(OpenAI, llama.cpp's llama-server, SGLang, vLLM), vllm (vLLM's structured_outputs field) or "
          "none (free text); a server that refuses it (HTTP 400/422) is asked again without it, for the "
          "rest of the run", choices=STRUCTURED),
    Param("samples", int, 4, "verified variant: candidates asked for per round (one API call each)",
          minimum=1),
    Param("rounds", int, 3, "verified variant: rounds within the query's budget; each later round "
          "shows the model the candidates the classifier rejected", minimum=1),
    Param("compose", bool, True, "verified variant: a query without a valid candidate has its "
          "rejected candidates' edits merged, best single edit first, until the classifier agrees"),
)

#: keys only the few-shot modes use (examples in the prompt; rounds, compose, steer: the verified variant)
FEWSHOT_KEYS = ("examples", "example_seed", "pool", "rounds", "compose", "steer")
#: keys only llm-finetuned uses (its LoRA training)
FINETUNE_KEYS = ("pairs", "epochs", "lr", "rank", "ft_batch", "teacher", "checkpointing", "force_finetune")
#: teachers built in (besides any registered method): the nearest unlike training row, that row
#: sparsified as the edits examples are (``prompts.ExamplePool(sparse=True)``), and the
#: greedy move to the target class's typical values (``finetune.prototype_cfs``)
TEACHERS = ("nearest-neighbour", "sparse", "prototype")
#: keys llm-finetuned cannot use: its adapter is trained on full rows (cf_style must be full)
EDIT_KEYS = ("cf_style", "max_edits")


def _without(params: tuple[Param, ...], *drop: tuple[str, ...]) -> tuple[Param, ...]:
    names = {n for keys in drop for n in keys}
    return tuple(p for p in params if p.name not in names)


LOCAL_BY_MODE: dict[str, tuple[Param, ...]] = {
    "zeroshot": _without(LOCAL, FEWSHOT_KEYS, FINETUNE_KEYS),
    "fewshot": _without(LOCAL, FINETUNE_KEYS),
    "finetuned": _without(LOCAL, FEWSHOT_KEYS, EDIT_KEYS),
}
#: keys only the API's verified variant uses (``rounds`` is a few-shot key already)
API_VERIFIED_KEYS = ("samples",)
API_BY_MODE: dict[str, tuple[Param, ...]] = {
    "zeroshot": _without(API, FEWSHOT_KEYS, API_VERIFIED_KEYS),
    "fewshot": API,
}

#: the ``fast`` variant of llm-fewshot: fixed examples as ``default``, but bare values for the
#: patient, only the changed features (at most 3) for the counterfactual, int8 linear layers and
#: larger batches.  About 6x faster than ``default`` on a 2-core CPU, at lower validity
#: (docs/llm.md has the measurements).  Parameters given explicitly still win.
FAST: dict[str, Any] = {"row_style": "values", "cf_style": "edits", "max_edits": 3, "quantize": "int8",
                        "batch_size": 50}


#: the ``verified`` variant of llm-fewshot (a cfbench extension, not SenseCF's method): the
#: ``fast`` prompt (at most 3 edited features), ``samples`` candidates per query (the first greedy, the
#: rest sampled at ``temperature``, seeded), clipped to the schema's bounds; those that move a
#: feature against its direction are dropped, the rest checked with the task's classifier; the valid ones
#: closest to the query (L1/MAD) are returned, and a query with none goes to another round (up
#: to ``rounds``) that shows the model what was rejected and allows 3 more edits.  Parameters
#: given explicitly still win.
VERIFIED: dict[str, Any] = {"row_style": "values", "cf_style": "edits", "max_edits": 3, "quantize": "int8",
                            "batch_size": 400, "samples": 8, "temperature": 1.5, "clip": True}


#: the ``verified`` variant of api-fewshot (a cfbench extension, as llm-fewshot's): ``samples``
#: candidates per round sampled at this temperature (at 0 they would all be one answer), checked
#: with the task's classifier by ``verify.Verifier`` as the local variant's are.
API_VERIFIED: dict[str, Any] = {"temperature": 1.0}


def refuse_unused(method: str, declared: tuple[Param, ...], params: dict[str, Any]) -> None:
    """One line naming the first key ``method`` does not declare, and the keys it does."""
    names = {p.name for p in declared}
    unknown = sorted(set(params) - names)
    if unknown:
        raise unknown_param(method, unknown[0], names)


def check_teacher(teacher: Any) -> None:
    """One line naming a ``teacher`` that is neither built in nor a registered method, and the valid ones."""
    if teacher in TEACHERS:
        return
    names = sorted(registry().generators)
    if isinstance(teacher, str) and teacher.partition(":")[0] in names:
        return
    raise UserError(f"llm parameter teacher: got {teacher!r}; valid choices: {', '.join(TEACHERS)} or a "
                    f"registered method[:variant] ({', '.join(names)})")
