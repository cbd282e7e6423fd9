"""``Settings``: the parameters of the local LLM generators, validated.

Shared by the generators (``generator.LocalLLM``) and fine-tuning (``finetune``,
``finetune_run``), so it sits below both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cfbench.api import UserError
from cfbench_llm.models import DTYPES, QUANTIZE
from cfbench_llm.params import check_teacher
from cfbench_llm.prompts import CF_STYLES, ROW_STYLES


@dataclass
class Settings:
    """Parameters of the local generators (all optional; validated in ``LocalLLM.__init__``)."""

    model: str | None = None  # HF id or local folder; default $CFBENCH_LLM_MODEL or the embedded Gemma 3 270M
    device: str | None = None  # auto | cpu | cuda[:N]
    batch_size: int = 32  # most sequences decoded together (memory grows with it)
    examples: int = 3  # few-shot examples per direction (fixed) or per query (retrieval)
    example_seed: int | None = None  # seed of the fixed examples; default the run's seed
    pool: int = 400  # training rows whose nearest-unlike-neighbour CFs are example candidates
    prompt_dir: str | None = None  # folder overriding templates/*.txt; default $CFBENCH_PROMPT_DIR
    row_style: str = "json"  # json | named | values (see prompts.PromptBuilder; docs/llm.md for the trade-off)
    sep: str = ","
    cf_style: str = "full"  # full | edits (only the changed features; see prompts.PromptBuilder)
    max_edits: int = 0  # edits format: most features one counterfactual may change (0 = no cap)
    quantize: str = "none"  # none | int8 (dynamic int8 linear layers, CPU only; see docs/llm.md)
    dtype: str = "auto"  # auto | float32 | bfloat16 (auto: bfloat16 where it is fast; models.inference_dtype)
    digits: int = 3  # significant digits of values in prompts
    clip: bool = False  # clip generated values to the schema bounds (counted in extra["clipped"])
    max_new_tokens: int = 0  # free text cap; 0 = 12 per mutable feature + 16
    temperature: float = 1.0  # k > 1: sampling temperature (0 or k = 1: greedy)
    samples: int = 0  # k > 1 (or verified): candidates drawn per query (0 = 3k); the distinct ones are kept
    rounds: int = 4  # verified: sampling rounds; a later round shows the model the rejected candidates
    compose: bool = True  # verified: merge a query's rejected candidates (verify.Verifier.compose)
    steer: bool = True  # verified: sampled candidates start from the features ranked by verify.Verifier.steer
    tune_malloc: bool = True  # see models.tune_malloc
    threads: int | None = None  # torch CPU threads; default $CFBENCH_LLM_THREADS or torch's default
    # fine-tuning (llm-finetuned)
    pairs: int = 128
    epochs: int = 2
    lr: float = 1e-3
    rank: int = 8
    ft_batch: int = 8
    teacher: str = "prototype"  # prototype | nearest-neighbour | sparse | a method[:variant]
    checkpointing: bool = True  # recompute activations in the backward pass (memory only)
    force_finetune: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Settings:
        fields = cls.__dataclass_fields__
        unknown = sorted(set(params) - set(fields))
        if unknown:
            raise UserError(f"unknown llm parameter {unknown[0]!r}; valid parameters: {', '.join(sorted(fields))}")
        s = cls(**params)
        for f in fields.values():  # a switch is a bool, not a truthy string
            if f.type in ("bool", bool) and not isinstance(getattr(s, f.name), bool):
                raise UserError(f"llm parameter {f.name}: expected true or false, got {getattr(s, f.name)!r}")
        if isinstance(s.max_edits, bool) or not isinstance(s.max_edits, int) or s.max_edits < 0:
            raise UserError(f"llm parameter max_edits: expected a non-negative integer, got {s.max_edits!r}")
        for name in ("batch_size", "examples", "pool", "digits", "pairs", "epochs", "rank", "ft_batch", "rounds"):
            v = getattr(s, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserError(f"llm parameter {name}: expected a positive integer, got {v!r}")
        if s.cf_style not in CF_STYLES:
            raise UserError(f"llm parameter cf_style: got {s.cf_style!r}; valid choices: {', '.join(CF_STYLES)}")
        if s.quantize not in QUANTIZE:
            raise UserError(f"llm parameter quantize: got {s.quantize!r}; valid choices: {', '.join(QUANTIZE)}")
        if s.dtype not in DTYPES:
            raise UserError(f"llm parameter dtype: got {s.dtype!r}; valid choices: {', '.join(DTYPES)}")
        if s.dtype == "bfloat16" and s.quantize == "int8":
            raise UserError("llm parameters: quantize='int8' needs dtype 'float32' (or 'auto'), got 'bfloat16'")
        if s.row_style not in ROW_STYLES:
            raise UserError(f"llm parameter row_style: got {s.row_style!r}; valid choices: {', '.join(ROW_STYLES)}")
        for name in ("max_new_tokens", "samples"):
            v = getattr(s, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise UserError(f"llm parameter {name}: expected a non-negative integer, got {v!r}")
        if isinstance(s.temperature, bool) or not (isinstance(s.temperature, float | int) and s.temperature >= 0):
            raise UserError(f"llm parameter temperature: expected a number >= 0, got {s.temperature!r}")
        if s.example_seed is not None and (isinstance(s.example_seed, bool)
                                           or not isinstance(s.example_seed, int) or s.example_seed < 0):
            raise UserError(f"llm parameter example_seed: expected an integer >= 0, got {s.example_seed!r}")
        if not (isinstance(s.lr, float | int) and s.lr > 0):
            raise UserError(f"llm parameter lr: expected a positive number, got {s.lr!r}")
        check_teacher(s.teacher)
        return s
