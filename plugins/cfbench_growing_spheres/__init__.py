"""cfbench plugin: Growing Spheres (Laugel et al., IPMU 2018), written here from the paper.

Model-agnostic: it needs only the classifier's ``predict_proba``.  Imports nothing beyond the
core (numpy, pandas), so the plugin always loads.
"""

from __future__ import annotations

from typing import Any

from cfbench.api import Capabilities, GeneratorSpec, Param, hookimpl

VARIANTS = ("default",)

#: what ``GrowingSpheres.__init__`` accepts besides the variant (see its docstring)
PARAMS = (
    Param("n_in_layer", int, 2000, "points sampled per sphere or layer (reference package: 2000)",
          minimum=1),
    Param("first_radius", float, 0.1, "radius of the first ball around the query, in the "
          "normalised space (range-scaled numerics, one-hot categoricals)", exclusive_minimum=0),
    Param("decrease_radius", float, 10.0, "factor the radius is divided by while the ball still "
          "holds an enemy (the paper halves: 2; reference package: 10)", exclusive_minimum=1),
    Param("layer_step", float, None, "width of each growing layer (unset: the radius the zoom-in "
          "ended at, the paper's eta)", exclusive_minimum=0),
    Param("sparse", bool, True, "run the paper's feature-selection step (reset features to the "
          "query's value while the prediction stays the target)"),
)


def make_growing_spheres(variant: str = "default", **params: Any):
    """Factory: an unfitted Growing Spheres generator (see ``growing_spheres.GrowingSpheres``)."""
    from cfbench_growing_spheres.growing_spheres import GrowingSpheres  # keeps listing quick

    return GrowingSpheres(variant, **params)


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="growing-spheres",
            factory=make_growing_spheres,
            variants=VARIANTS,
            capabilities=Capabilities(
                multiple=False,
                constraints=False,  # immutables and codes kept; bounds and directions are not
                needs_training_data=True,  # only the feature ranges, for the normalised space
                stochastic=True,  # random sampling, seeded per query
                batch_size=1,
            ),
            cost={"*": 0.22},  # s/query: 0.22 (ai-readi headline, warm, 2026-12-07, 2-core AMD EPYC); heart 0.73-0.80 (~12 layers of 2000)
            params=PARAMS,
            preload=("cfbench_growing_spheres.growing_spheres",),
            description=(
                "Growing Spheres: sample growing spherical layers around the query until the "
                "class flips, then reset features to the query's for sparsity"
            ),
        )
    ]
