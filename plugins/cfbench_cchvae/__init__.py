"""cfbench plugin: C-CHVAE, counterfactuals from a conditional VAE's latent space (Pawelczyk et al., WWW 2020).

Implemented here from the paper (see ``cfbench_cchvae.cchvae``).  Needs torch (the ``nice``
extra); it is imported when the method is fitted, so this module imports with the core alone.
"""

from __future__ import annotations

from typing import Any

from cfbench.api import Capabilities, GeneratorSpec, Param, hookimpl

#: what ``CCHVAE.__init__`` accepts besides the variant; defaults from the authors' code
#: (github.com/MartinPawel/c-chvae) for the paper's experiments unless the text says otherwise
PARAMS = (
    Param("latent_dim", int, 2, "latent dimension of the VAE (the paper's z)", minimum=1),
    Param("hidden", str, "5", "hidden layer widths of encoder and decoder, comma-separated "
          "(decoder mirrored; one layer of 5 like the HVAE's y layer)"),
    Param("epochs", int, 80, "VAE training epochs", minimum=1),
    Param("lr", float, 1e-3, "Adam learning rate of the VAE", exclusive_minimum=0),
    Param("batch_size", int, 100, "VAE training batch size", minimum=1),
    Param("step", float, 0.5, "width of each latent ring (the search radius grows by this)",
          exclusive_minimum=0),
    Param("samples", int, 1000, "latent points sampled per ring", minimum=1),
    Param("max_iter", int, 500, "rings searched at most before giving up", minimum=1),
    Param("p_norm", int, 2, "norm of the latent rings (1 or 2)", choices=(1, 2)),
    Param("constraints", bool, True, "discard decoded candidates that break a direction or bound "
          "(not in the paper; false: the paper's search, violations scored)"),
)


def make_cchvae(variant: str = "default", **params: Any):
    """Factory: an unfitted C-CHVAE generator (see ``cfbench_cchvae.cchvae.CCHVAE``)."""
    # the generator module is small, but its fit loads torch: imported when the method is built
    from cfbench_cchvae.cchvae import CCHVAE

    return CCHVAE(variant, **params)


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="cchvae",
            factory=make_cchvae,
            variants=("default",),
            capabilities=Capabilities(
                multiple=True,
                constraints=True,
                needs_training_data=True,
                stochastic=True,
                batch_size=None,
            ),
            extra="nice",
            requires=("torch",),
            cost={"*": 0.03},  # s/query with its fit: 0.021 warm, 0.037 with the VAE trained (ai-readi headline, warm, 2026-12-07, 2-core AMD EPYC); heart 0.087
            preload=("cfbench_cchvae.cchvae",),
            params=PARAMS,
            description=(
                "C-CHVAE: growing-sphere search in the latent space of a VAE conditioned on the "
                "immutable features (trained once per task, cached)"
            ),
        )
    ]
