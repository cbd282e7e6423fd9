"""cfbench plugin: ROAR, robust algorithmic recourse (Upadhyay, Joshi and Lakkaraju, NeurIPS 2021).

Written here from the paper.  Needs the classifier's gradients (an ``mlp`` or
``logistic-regression`` task); on any other classifier it is skipped as not applicable.  torch
is imported when the method is fitted, so this module imports with only the core installed.
"""

from __future__ import annotations

from typing import Any

from cfbench.api import Capabilities, GeneratorSpec, Param, choices_error, hookimpl, unknown_param

#: what ``ROAR.__init__`` accepts besides the variant (see docs/baselines.md for their sources)
PARAMS = (
    Param("delta_max", float, 0.1, "radius of the L∞ ball of weight and bias shifts (paper: 0.1)",
          minimum=0),
    Param("lam", float, 0.1, "weight λ of the L1 cost against the worst-case loss", exclusive_minimum=0),
    Param("lr", float, 0.01, "Adam learning rate in the encoded space", exclusive_minimum=0),
    Param("max_iter", int, 1000, "most Adam steps of one solve", minimum=1),
    Param("tol", float, 1e-6, "a solve stops once the objective changes less than this in a step",
          minimum=0),
    Param("rounds", int, 4, "solves, λ halved after each whose CF the classifier does not "
          "accept (1 = the paper's single solve)", minimum=1),
)


def make_roar(variant: str = "default", **params: Any):
    """Factory: an unfitted ROAR generator (see ``cfbench_roar.roar.ROAR``)."""
    if variant != "default":
        raise choices_error("variant of roar", variant, ("default",))
    for key in params.keys() - {p.name for p in PARAMS}:
        raise unknown_param("roar", key, [p.name for p in PARAMS])
    # the search module needs numpy and the shared helpers only; torch is loaded at fit
    from cfbench_roar.roar import ROAR

    return ROAR(**params)


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="roar",
            factory=make_roar,
            capabilities=Capabilities(multiple=False, constraints=False, needs_training_data=False,
                                      batch_size=None),  # the model alone
            needs=frozenset({"proba", "gradients"}),
            extra="nice",
            requires=("torch",),
            cost={"*": 0.3},  # heart-mlp: 0.30 s/query
            params=PARAMS,
            description=("ROAR (Upadhyay et al. 2021): recourse robust to model shifts, min-max "
                         "over L∞-bounded weight shifts of a local linear model"),
        )
    ]
