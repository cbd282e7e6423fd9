"""cfbench plugin: Wachter, Mittelstadt and Russell (2017), counterfactuals by gradient descent.

Written here from the paper.  Needs the classifier's gradients (an ``mlp`` or
``logistic-regression`` task); on any other classifier it is skipped as not applicable.  torch
is imported when the method is fitted, so this module imports with only the core installed.
"""

from __future__ import annotations

from typing import Any

from cfbench.api import Capabilities, GeneratorSpec, Param, choices_error, hookimpl, unknown_param

#: what ``Wachter.__init__`` accepts besides the variant; the paper names λ, its schedule and the
#: MAD-weighted L1 distance but gives no numbers, so these are ours (see docs/baselines.md)
PARAMS = (
    Param("lam", float, 0.1, "initial weight λ of the prediction term λ·(f(x')−1)²", exclusive_minimum=0),
    Param("lam_factor", float, 10.0, "λ is multiplied by this after each round without a valid CF",
          minimum=1),
    Param("rounds", int, 5, "rounds of the λ schedule (each a fresh Adam run from the last point)",
          minimum=1),
    Param("steps", int, 200, "Adam steps per round", minimum=1),
    Param("lr", float, 0.05, "Adam learning rate in the encoded space", exclusive_minimum=0),
    Param("check_every", int, 10, "steps between checks of the snapped CF on the classifier",
          minimum=1),
)


def make_wachter(variant: str = "default", **params: Any):
    """Factory: an unfitted Wachter generator (see ``cfbench_wachter.wachter.Wachter``)."""
    if variant != "default":
        raise choices_error("variant of wachter", variant, ("default",))
    for key in params.keys() - {p.name for p in PARAMS}:
        raise unknown_param("wachter", key, [p.name for p in PARAMS])
    # the search module needs numpy and the shared helpers only; torch is loaded at fit
    from cfbench_wachter.wachter import Wachter

    return Wachter(**params)


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="wachter",
            factory=make_wachter,
            capabilities=Capabilities(multiple=False, constraints=False, batch_size=None),
            needs=frozenset({"proba", "gradients"}),
            extra="nice",
            requires=("torch",),
            cost={"*": 1.5},  # heart-mlp: 1.57 s/query (2 s budget, loaded 2-core machine)
            params=PARAMS,
            description=("Wachter et al. 2017: Adam on λ·(f(x')−1)² + MAD-weighted L1 in the "
                         "encoded space, λ raised until the CF is valid"),
        )
    ]
