"""cfbench plugin: FeatureTweak, actionable feature tweaking of tree ensembles (Tolomei et al., KDD 2017).

Written from the paper (``cfbench_featuretweak.tweak``); needs the task's trees
(``context.model.trees()``: random forest, gradient boosting, XGBoost) and nothing beyond numpy.
"""

from __future__ import annotations

from typing import Any

from cfbench.api import Capabilities, GeneratorSpec, Param, UserError, hookimpl

PARAMS = (
    Param("epsilon", float, 0.1, "tolerance of the epsilon-satisfactory tweak, in encoded "
          "(standard-deviation) units", exclusive_minimum=0),
    Param("cost", str, "euclidean", "distance in the encoded space the cheapest tweak minimises",
          choices=("euclidean", "manhattan")),
)


def make_feature_tweak(variant: str = "default", **params: Any):
    """Factory: an unfitted ``FeatureTweak`` (the method has one variant)."""
    # the method module is loaded when the method is built, not when plugins are listed
    from cfbench_featuretweak.tweak import FeatureTweak

    if variant != "default":
        raise UserError(f"unknown feature-tweak variant {variant!r}; valid choices: default")
    return FeatureTweak(**params)


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="feature-tweak",
            factory=make_feature_tweak,
            capabilities=Capabilities(multiple=True, constraints=True, batch_size=None),
            needs=frozenset({"proba", "trees"}),
            params=PARAMS,
            cost={"*": 0.11},  # s/query: 0.11 (ai-readi headline, warm, 2026-12-07, 2-core AMD EPYC); heart 0.25
            preload=("cfbench_featuretweak.tweak",),
            description=("FeatureTweak: least-cost epsilon-satisfactory tweak into a target-class "
                         "leaf of a tree voting for the wrong class"),
        )
    ]
