"""cfbench plugin: CFNOW (de Oliveira, Sörensen & Martens) through the ``cfnow`` package.

Variants: ``greedy`` (greedy search + CFNOW's fine-tuning), ``random`` (random search, the first
CFs found, no fine-tuning) and ``random_optim`` (random search + fine-tuning).  ``cfnow`` is
imported only when a generator is fitted, with NLTK's downloader stubbed (see
``cfbench_cfnow.generator.import_cfnow``).
"""

from __future__ import annotations

from typing import Any

from cfbench.api import Capabilities, GeneratorSpec, Param, hookimpl

VARIANTS = ("greedy", "random", "random_optim")

#: what ``CfnowGenerator.__init__`` accepts besides the variant
PARAMS = (
    Param("limit_seconds", float, None, "CFNOW's fine-tuning time limit per query "
          "(unset: the whole per-query budget)", minimum=0),
    Param("it_max", int, None, "CFNOW's iteration cap of the search (unset: CFNOW's)", minimum=1),
    Param("ft_change_factor", float, None, "CFNOW's step factor in fine-tuning (unset: CFNOW's)",
          exclusive_minimum=0),
    Param("size_tabu", int, None, "length of CFNOW's tabu list (unset: CFNOW's, kept below the "
          "number of features that can move)", minimum=0),
)


def make_cfnow(variant: str = "greedy", **params: Any):
    """Factory: an unfitted CFNOW generator for ``variant`` (see ``cfbench_cfnow.generator``)."""
    # the generator module imports cfnow: loaded when the method is built, not at registration
    from cfbench_cfnow.generator import CfnowGenerator

    return CfnowGenerator(variant, **params)


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="cfnow",
            factory=make_cfnow,
            variants=VARIANTS,
            capabilities=Capabilities(
                multiple=True,
                constraints=True,
                needs_training_data=False,
                stochastic=True,
                batch_size=1,
            ),
            extra="cfnow",
            requires=("cfnow",),
            params=PARAMS,
            # greedy and random_optim fine-tune until the per-query budget runs out
            anytime=("greedy", "random_optim"),
            cost={"random": 0.28},  # s/query (ai-readi headline, warm, 2026-12-07, 2-core AMD EPYC)
            description=(
                "CFNOW tabu search (cfnow.find_tabular): greedy or random search, "
                "optionally fine-tuned; immutables kept by searching the mutable subspace"
            ),
        )
    ]
