"""cfbench plugin: REVISE (Joshi et al. 2019), recourse by gradient search in a VAE's latent space.

Written here from the paper.  Needs the classifier's gradients (an ``mlp`` or
``logistic-regression`` task); on any other classifier it is skipped as not applicable.  torch
is imported when the method is fitted, so this module imports with only the core installed.
"""

from __future__ import annotations

from typing import Any

from cfbench.api import Capabilities, GeneratorSpec, Param, choices_error, hookimpl, unknown_param

#: what ``REVISE.__init__`` accepts besides the variant (see docs/baselines.md for their sources)
PARAMS = (
    Param("lam", float, 0.5, "weight λ of the L1 distance to the query against the class loss",
          minimum=0),
    Param("lr", float, 0.1, "Adam learning rate in the latent space", exclusive_minimum=0),
    Param("max_iter", int, 1000, "most Adam steps per query", minimum=1),
    Param("check_every", int, 10, "steps between checks of the snapped CF on the classifier",
          minimum=1),
    Param("latent", int, 8, "latent width of the VAE", minimum=1),
    Param("hidden", int, 64, "width of the VAE's first hidden layer (the second is half)", minimum=2),
    Param("vae_epochs", int, 200, "VAE training epochs over the training split", minimum=1),
    Param("vae_lr", float, 1e-3, "VAE training learning rate (Adam)", exclusive_minimum=0),
    Param("rounds", int, 3, "searches, λ divided by 10 after each without a valid CF "
          "(1 = the paper's single search)", minimum=1),
)


def make_revise(variant: str = "default", **params: Any):
    """Factory: an unfitted REVISE generator (see ``cfbench_revise.revise.REVISE``)."""
    if variant != "default":
        raise choices_error("variant of revise", variant, ("default",))
    for key in params.keys() - {p.name for p in PARAMS}:
        raise unknown_param("revise", key, [p.name for p in PARAMS])
    # the search module needs numpy and the shared helpers only; torch is loaded at fit
    from cfbench_revise.revise import REVISE

    return REVISE(**params)


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="revise",
            factory=make_revise,
            capabilities=Capabilities(multiple=False, constraints=False, batch_size=None),
            needs=frozenset({"proba", "gradients"}),
            extra="nice",
            requires=("torch",),
            cost={"*": 2.0},  # heart-mlp: 2.11 s/query, mostly the whole 2 s budget
            first_use={"*": 5.0},
            params=PARAMS,
            description=("REVISE (Joshi et al. 2019): Adam in the latent space of a VAE trained "
                         "on the training split, decoded CFs"),
        )
    ]
