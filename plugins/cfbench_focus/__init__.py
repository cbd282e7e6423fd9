"""cfbench plugin: FOCUS, flexible optimizable counterfactuals for tree ensembles (Lucic et al., AAAI 2022).

Written from the paper in numpy (``cfbench_focus.focus``); needs the task's trees
(``context.model.trees()``) and nothing beyond numpy.
"""

from __future__ import annotations

from typing import Any

from cfbench.api import Capabilities, GeneratorSpec, Param, UserError, hookimpl

PARAMS = (
    Param("sigma", float, 1.0, "sharpness of the sigmoid replacing each split", exclusive_minimum=0),
    Param("beta", float, 0.01, "weight of the distance term in the loss", exclusive_minimum=0),
    Param("lr", float, 0.001, "Adam's learning rate", exclusive_minimum=0),
    Param("iterations", int, 1000, "Adam steps per query", minimum=1),
    Param("distance", str, "euclidean", "distance in the encoded space the loss penalises",
          choices=("euclidean", "manhattan")),
)


def make_focus(variant: str = "default", **params: Any):
    """Factory: an unfitted ``Focus`` (the method has one variant)."""
    # the method module (and scipy) load when the method is built, not when plugins are listed
    from cfbench_focus.focus import Focus

    if variant != "default":
        raise UserError(f"unknown focus variant {variant!r}; valid choices: default")
    return Focus(**params)


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="focus",
            factory=make_focus,
            capabilities=Capabilities(multiple=False, constraints=True, batch_size=None),
            needs=frozenset({"proba", "trees"}),
            requires=("scipy",),
            extra="focus",
            params=PARAMS,
            cost={"*": 0.53},  # s/query: 0.53 (ai-readi headline, warm, 2026-12-07, 2-core AMD EPYC); heart 0.65
            preload=("cfbench_focus.focus",),
            description=("FOCUS: Adam on the sigmoid-smoothed tree ensemble, the closest real "
                         "flip kept"),
        )
    ]
