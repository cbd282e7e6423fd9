"""cfbench plugin: FACE, feasible and actionable counterfactual explanations (Poyiadzi et al.,
AIES 2020), written here from the paper.

Model-agnostic (only ``predict_proba``); needs scipy for the shortest paths, imported when the
method is fitted, so the plugin loads with the core alone.
"""

from __future__ import annotations

from typing import Any

from cfbench.api import Capabilities, GeneratorSpec, Param, hookimpl

VARIANTS = ("knn", "epsilon")

#: what ``FACE.__init__`` accepts besides the variant (see its docstring)
PARAMS = (
    Param("k", int, 10, "knn variant: neighbours each point is joined to", minimum=1),
    Param("epsilon", float, 1.5, "epsilon variant: longest edge, in the normalised space "
          "(range-scaled numerics, a change of category = 1; on heart about the median distance "
          "to the 20th-nearest training row)", exclusive_minimum=0),
    Param("tp", float, 0.6, "prediction threshold: a candidate's target-class probability "
          "must reach it", minimum=0, maximum=1),
    Param("td", float, 0.001, "density threshold: a candidate's density (relative to the "
          "densest training row) must reach it", minimum=0, maximum=1),
    Param("bandwidth", float, None, "Gaussian KDE bandwidth in the normalised space (unset: "
          "Scott's rule)", exclusive_minimum=0),
    Param("immutables", str, "agree", "agree: edges only between rows equal on the immutables "
          "(the paper); project: rows are given the query's immutable values first",
          choices=("agree", "project")),
)


def make_face(variant: str = "knn", **params: Any):
    """Factory: an unfitted FACE generator for ``variant`` (see ``cfbench_face.face.FACE``)."""
    from cfbench_face.face import FACE  # keeps listing quick

    return FACE(variant, **params)


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="face",
            factory=make_face,
            variants=VARIANTS,
            capabilities=Capabilities(
                multiple=True,  # the k candidates with the shortest paths
                constraints=True,  # immutables (graph) and directions (edges); see face.py
                needs_training_data=True,
                stochastic=False,
                batch_size=None,
            ),
            requires=("scipy",),  # a scikit-learn dependency, so in practice always there
            cost={"*": 0.001},  # s/query: 0.0007 (ai-readi headline, warm, 2026-12-07, 2-core AMD EPYC); heart 0.003
            params=PARAMS,
            preload=("cfbench_face.face",),
            description=(
                "FACE: shortest density-weighted path over a k-NN or epsilon graph of the "
                "training rows to a confidently classified, dense target-class row"
            ),
        )
    ]
