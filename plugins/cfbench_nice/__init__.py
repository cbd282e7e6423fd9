"""cfbench plugin: NICE, nearest-instance counterfactual explanations (Brughmans et al., DMKD 2023).

Implemented here from the paper (the ``nicex`` package pins numpy<2 and pandas<2).  Only the
``plausibility`` variant needs torch (for its autoencoder); it is imported when that variant is
fitted, so this module imports with nothing but the core installed.
"""

from __future__ import annotations

from typing import Any

from cfbench.api import Capabilities, GeneratorSpec, Param, hookimpl

VARIANTS = ("none", "sparsity", "proximity", "plausibility")

#: what ``NICE.__init__`` accepts besides the variant (both only matter for ``plausibility``)
PARAMS = (
    Param("ae_epochs", int, 100, "training epochs of the plausibility autoencoder", minimum=1),
    Param("ae_hidden", int, 2, "bottleneck width of the plausibility autoencoder", minimum=1),
)


def make_nice(variant: str = "sparsity", **params: Any):
    """Factory: an unfitted NICE generator for ``variant`` (see ``cfbench_nice.nice.NICE``)."""
    # NICE's module loads torch for one variant: imported when the method is built
    from cfbench_nice.nice import NICE

    return NICE(variant, **params)


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="nice",
            factory=make_nice,
            variants=VARIANTS,
            capabilities=Capabilities(
                multiple=False,
                constraints=True,
                needs_training_data=True,
                stochastic=False,
                batch_size=None,
            ),
            extra="nice",
            requires=(),
            variant_requires={"plausibility": ("torch",)},
            cost={"*": 0.004, "plausibility": 0.025},  # s/query with the fit (ai-readi headline, warm, 2026-12-07, 2-core AMD EPYC)
            preload=("cfbench_nice.nice",),
            params=PARAMS,
            description=(
                "NICE: greedy feature substitution from the nearest unlike neighbour "
                "(reward: none, sparsity, proximity or autoencoder plausibility)"
            ),
        )
    ]
