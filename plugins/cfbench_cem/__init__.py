"""cfbench plugin: CEM pertinent negatives (Dhurandhar et al., NeurIPS 2018).

Written here from the paper.  Needs the classifier's gradients (an ``mlp`` or
``logistic-regression`` task); on any other classifier it is skipped as not applicable.  torch
is imported when the method is fitted, so this module imports with only the core installed.
"""

from __future__ import annotations

from typing import Any

from cfbench.api import Capabilities, GeneratorSpec, Param, choices_error, hookimpl, unknown_param

#: what ``CEM.__init__`` accepts besides the variant; κ, β, c and its search from the paper
PARAMS = (
    Param("kappa", float, 0.1, "confidence margin κ of the hinge loss (paper: 0.1)", minimum=0),
    Param("beta", float, 0.1, "L1 weight β of the elastic net (paper: 0.1)", minimum=0),
    Param("c_init", float, 10.0, "initial weight c of the loss term (paper: 10)", exclusive_minimum=0),
    Param("c_steps", int, 9, "binary-search updates of c (paper: 9)", minimum=1),
    Param("max_iter", int, 1000, "FISTA iterations per value of c", minimum=1),
    Param("lr", float, 0.01, "initial FISTA step, decayed as (1 − k/K)^0.5", exclusive_minimum=0),
    Param("check_every", int, 10, "iterations between checks of the snapped CF", minimum=1),
)


def make_cem(variant: str = "default", **params: Any):
    """Factory: an unfitted CEM generator (see ``cfbench_cem.cem.CEM``)."""
    if variant != "default":
        raise choices_error("variant of cem", variant, ("default",))
    for key in params.keys() - {p.name for p in PARAMS}:
        raise unknown_param("cem", key, [p.name for p in PARAMS])
    # the search module needs numpy and the shared helpers only; torch is loaded at fit
    from cfbench_cem.cem import CEM

    return CEM(**params)


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="cem",
            factory=make_cem,
            capabilities=Capabilities(multiple=False, constraints=True, needs_training_data=False,
                                      batch_size=None),  # the model and the schema alone
            needs=frozenset({"proba", "gradients"}),
            extra="nice",
            requires=("torch",),
            cost={"*": 3.5},  # heart-mlp: 3.55 s/query wall (anytime: the 2 s CPU budget, loaded machine)
            anytime=("default",),
            params=PARAMS,
            description=("CEM pertinent negatives (Dhurandhar et al. 2018): FISTA on the hinge "
                         "loss + elastic net, projected onto bounds and directions"),
        )
    ]
