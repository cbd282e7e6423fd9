"""cfbench plugin: DiCE (Mothilal, Sharma & Tan, FAT* 2020) through the ``dice-ml`` package.

Variants are DiCE's model-agnostic explainers: ``random``, ``genetic`` and ``kdtree``.  The task's
immutables become ``features_to_vary`` (the mutable features), its bounds and directions become a
per-query ``permitted_range``.  DiCE does not always keep to them; the harness's constraint
metrics report where it does not.  ``dice_ml`` is imported only when a generator is built.
"""

from __future__ import annotations

from typing import Any

from cfbench.api import Capabilities, GeneratorSpec, Param, hookimpl

VARIANTS = ("random", "genetic", "kdtree")

#: what ``DiceGenerator.__init__`` accepts besides the variant
PARAMS = (
    Param("total_cfs", int, None, "CFs DiCE optimises jointly per query (its total_CFs; "
          "unset: k); the first k are kept", minimum=1),
    Param("posthoc_sparsity_algorithm", str, "binary", "DiCE's post-hoc sparsity search "
          "(linear is DiCE's default and very slow at 4-6 decimals)", choices=("binary", "linear")),
    Param("posthoc_sparsity_param", float, None, "DiCE's post-hoc sparsity quantile (unset: "
          "DiCE's 0.1; 0 switches the post-hoc step off)", minimum=0, maximum=1),
    Param("dice_precision", bool, False, "let DiCE infer each feature's decimals from the column "
          "mode (breaks validity on some data) instead of the training data's decimals"),
)


def make_dice(variant: str = "random", **params: Any):  # params: checked against PARAMS
    """Factory: an unfitted DiCE generator for ``variant`` (see ``cfbench_dice.generator``)."""
    # the generator module imports dice-ml: loaded when the method is built, not at registration
    from cfbench_dice.generator import DiceGenerator

    return DiceGenerator(variant, **params)


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="dice",
            factory=make_dice,
            variants=VARIANTS,
            capabilities=Capabilities(
                multiple=True,
                constraints=True,
                needs_training_data=True,
                stochastic=True,
                batch_size=1,
            ),
            extra="dice",
            requires=("dice_ml",),
            cost={"random": 0.54, "genetic": 0.34, "kdtree": 0.085},  # s/query (ai-readi headline, warm, 2026-12-07, 2-core AMD EPYC)
            preload=("dice_ml", "cfbench_dice.generator"),
            params=PARAMS,
            description="DiCE diverse counterfactuals (dice-ml): random sampling, genetic search or KD-tree",
        )
    ]
