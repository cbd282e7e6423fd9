"""cfbench plugin: LLM counterfactual generators after SenseCF (Soumma et al., BSN 2025).

Local Hugging Face models (default: the embedded Gemma 3 270M) as ``llm-zeroshot``,
``llm-fewshot`` and ``llm-finetuned`` (LoRA, trained on first use or by ``cfbench finetune``);
any OpenAI-compatible chat endpoint as ``api-zeroshot`` and ``api-fewshot`` (answers held to a JSON
schema where the server can; ``api-fewshot:verified`` checks candidates with the task's classifier).  Local variants
decode with the structure written by the harness and values restricted to number tokens, so
their output always parses; ``freetext`` variants let the model write JSON, for comparison.
torch, transformers, peft and openai are imported only when a generator is built.
"""

from __future__ import annotations

import argparse
from typing import Any

from cfbench.api import Capabilities, GeneratorSpec, UserError, hookimpl
from cfbench_llm.api import ApiLLM
from cfbench_llm.api import available as api_available
from cfbench_llm.descriptions import API, LOCAL
from cfbench_llm.params import API_BY_MODE, API_VERIFIED, FAST, LOCAL_BY_MODE, VERIFIED

LOCAL_REQUIRES = ("torch", "transformers", "safetensors")
#: queries per generate() call: large enough to batch, small enough that a killed batch loses little
BATCH = 50
#: expected seconds per query on one core beside another cell, fit included: the headline's
#: cells (ai-readi, 100 queries, Gemma 3 270M; bfloat16, int8 for fast and verified), measured
#: warm on the 2-core AMD EPYC development machine, 2026-12-07 (heart's take a quarter to a
#: half); for the plan line only.  ``cfbench run`` replaces them with the cell's own times on
#: a machine where it ran before (``cfbench.execution.timings``).
COSTS = {
    "zeroshot": {"default": 1.17, "freetext": 2.54},
    "fewshot": {"default": 1.62, "retrieval": 4.17, "freetext": 2.68, "fast": 0.43, "verified": 1.13},
    "finetuned": {"default": 1.04},
}
#: the local variants share one first-use set-up: converting the embedded model into the cache
SETUP = "cfbench-llm:local-model"
#: seconds of the first fit: the embedded model's conversion and the default LoRA fine-tune, at one
#: thread beside another cell (ai-readi 770 s on the 2-core AMD EPYC machine, 2026-12-07; heart
#: about a third): the fine-tuned cell starts early, not last, on a cold cache
FIRST_USE = {"finetuned": {"default": 770.0}}


def _local(mode: str):
    def factory(variant: str = "default", **params: Any):
        # generator loads sklearn (cfbench.score.metrics, through finetune) and, on fit, torch: imported
        # when a generator is built, so that registering the plugin stays light
        from cfbench_llm.generator import LocalLLM

        return LocalLLM(mode, variant, **params)

    factory.__name__ = f"make_llm_{mode}"
    return factory


def _api(mode: str):
    def factory(variant: str = "default", **params: Any):
        return ApiLLM(mode, variant, **params)

    factory.__name__ = f"make_api_{mode}"
    return factory


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    # immutables are copied by construction, but bounds and directions are not enforced;
    # k > 1 samples candidates (seeded by the run's seed and the query) and keeps distinct ones
    local_caps = Capabilities(multiple=True, constraints=False, needs_training_data=True,
                              stochastic=False, batch_size=BATCH)
    specs = [
        GeneratorSpec(
            name=f"llm-{mode}",
            factory=_local(mode),
            variants=variants,
            capabilities=local_caps,
            extra="llm",
            requires=LOCAL_REQUIRES + (("peft",) if mode == "finetuned" else ()),
            preload=("torch", "transformers"),
            params=LOCAL_BY_MODE[mode],
            variant_defaults=({"fast": FAST, "verified": VERIFIED} if mode == "fewshot" else {}),
            description=LOCAL[mode],
            cost=COSTS[mode],
            setup=SETUP,
            first_use=FIRST_USE.get(mode, {}),
        )
        for mode, variants in (
            ("zeroshot", ("default", "freetext")),
            ("fewshot", ("default", "retrieval", "freetext", "fast", "verified")),
            ("finetuned", ("default",)),
        )
    ]
    specs += [
        GeneratorSpec(
            name=f"api-{mode}",
            factory=_api(mode),
            variants=variants,
            capabilities=Capabilities(multiple=False, constraints=False, needs_training_data=True,
                                      stochastic=False, batch_size=BATCH),
            extra="llm",
            requires=("openai",),
            params=API_BY_MODE[mode],
            variant_defaults=({"verified": API_VERIFIED} if mode == "fewshot" else {}),
            description=API[mode],
            available=api_available,
        )
        for mode, variants in (("zeroshot", ("default",)), ("fewshot", ("default", "retrieval", "verified")))
    ]
    return specs


@hookimpl
def cfbench_add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="LoRA fine-tune the local LLM for a task (what llm-finetuned does on first use)",
        description="Fine-tune the local model (default: embedded Gemma 3 270M) with LoRA on "
                    "(query -> counterfactual) pairs from the task's training split, and cache the adapter.",
    )
    p.add_argument("--task", required=True, help="task name or spec file")
    p.add_argument("--model", default=None, help="HF id or local folder (default: $CFBENCH_LLM_MODEL or embedded Gemma 3 270M)")
    p.add_argument("--pairs", type=int, default=None, help="training pairs (default 128)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 2)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3)")
    p.add_argument("--rank", type=int, default=None, help="LoRA rank (default 8)")
    p.add_argument("--ft-batch", type=int, default=None, help="batch size (default 8)")
    p.add_argument("--teacher", default=None,
                   help="CFs the model learns: prototype (default: features moved to the target "
                        "class's typical values until the classifier gives 0.7), nearest-neighbour, "
                        "sparse (nearest unlike neighbour sparsified and classifier-checked, as the "
                        "edits examples) or a registered method[:variant]")
    p.add_argument("--no-checkpointing", action="store_true",
                   help="keep all activations for the backward pass (faster, about 4x the memory)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default $CFBENCH_LLM_THREADS or torch's)")
    p.add_argument("--heldout", type=int, default=30,
                   help="training rows, never teacher pairs, on which the adapter's CFs are checked "
                        "with the task's classifier (default 30; 0 = skip)")
    p.add_argument("--seed", type=int, default=0, help="seed (the run seed the adapter is for; default 0)")
    p.add_argument("--data-dir", default=None, help="dataset folder (e.g. a real AI-READI release)")
    p.add_argument("--force", action="store_true", help="train again even if a cached adapter exists")
    p.set_defaults(func=_finetune_command)


def _finetune_command(args: argparse.Namespace) -> int:
    # finetune_run loads the task machinery, sklearn and the generator: imported when the command runs
    from cfbench_llm.finetune_run import run_finetune

    params = {k: v for k, v in (("model", args.model), ("pairs", args.pairs), ("epochs", args.epochs),
                                ("lr", args.lr), ("rank", args.rank), ("ft_batch", args.ft_batch),
                                ("teacher", args.teacher), ("threads", args.threads))
              if v is not None}
    if args.no_checkpointing:
        params["checkpointing"] = False
    if args.force:
        params["force_finetune"] = True
    if args.heldout < 0:
        raise UserError(f"cfbench finetune: --heldout must be an integer >= 0, got {args.heldout}")
    path, info = run_finetune(args.task, params, seed=args.seed, data_dir=args.data_dir, heldout=args.heldout)
    for line in finetune_report(path, info):
        print(line)
    return 0


def finetune_report(path: Any, info: dict[str, Any]) -> list[str]:
    """The lines ``cfbench finetune`` prints: the adapter, its loss curve and its held-out check."""
    losses = info.get("losses") or []
    nan = float("nan")
    out = [f"adapter: {path}",
           f"pairs {info.get('pairs')}, steps {info.get('steps')}, {info.get('seconds', 0):.1f} s; "
           f"loss {losses[0] if losses else nan:.4f} -> {losses[-1] if losses else nan:.4f}"]
    curve = info.get("loss_curve")
    if curve:
        out.append(f"loss curve (mean of {len(curve)} equal spans of steps): " + " ".join(f"{v:.3f}" for v in curve))
    if info.get("teacher_changed") is not None:
        valid = info.get("teacher_validity")
        out.append(f"teacher CFs change {info['teacher_changed']:.2f} features on average"
                   + ("" if valid is None else f"; {100 * valid:.0f}% of them are valid (task's classifier)"))
    h = info.get("heldout")
    if h:
        def num(v: Any) -> str:
            return "-" if v is None else f"{v:.2f}"

        out.append(f"held-out training rows: {h['valid']}/{h['rows']} valid ({100 * h['validity']:.0f}%), "
                   f"{h['found']} with a CF; features changed {num(h['changed_mean'])} mean "
                   f"({num(h['changed_mean_valid'])} over the valid ones); {h['seconds']:.0f} s")
    return out
