"""cfbench plugin: CFProto, counterfactuals guided by class prototypes (Van Looveren & Klaise, ECML PKDD 2021).

Implemented here from the paper (see ``cfbench_cfproto.cfproto``), k-d tree prototypes in the
classifier's encoded space.  It needs the classifier's gradients (logistic regression, MLP) and
torch (the ``nice`` extra); torch is imported when the method is fitted, so this module imports
with the core alone.
"""

from __future__ import annotations

from typing import Any

from cfbench.api import Capabilities, GeneratorSpec, Param, hookimpl

#: what ``CFProto.__init__`` accepts besides the variant; where each default comes from is in
#: docs/baselines.md (the paper's, or its reference implementation's documented defaults)
PARAMS = (
    Param("kappa", float, 0.0, "hinge margin kappa: the target probability must beat every other "
          "class's by this much", minimum=0),
    Param("beta", float, 0.1, "weight of the L1 term (the FISTA shrinkage threshold)", minimum=0),
    Param("theta", float, 100.0, "weight of the prototype term (0: no prototype, CEM-style "
          "elastic net)", minimum=0),
    Param("c_init", float, 10.0, "initial weight c of the prediction loss", exclusive_minimum=0),
    Param("c_steps", int, 10, "FISTA runs of the bisection search over c", minimum=1),
    Param("max_iterations", int, 1000, "FISTA iterations per c step", minimum=1),
    Param("learning_rate", float, 0.01, "initial learning rate (polynomial decay to 0, power 0.5)",
          exclusive_minimum=0),
    Param("proto_k", int, 1, "nearest target-class training rows (k-d tree in the encoded space) "
          "averaged into the prototype", minimum=1),
)


def make_cfproto(variant: str = "kdtree", **params: Any):
    """Factory: an unfitted CFProto generator (see ``cfbench_cfproto.cfproto.CFProto``)."""
    # the generator module imports numpy and scipy only; torch is loaded by fit
    from cfbench_cfproto.cfproto import CFProto

    return CFProto(variant, **params)


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="cfproto",
            factory=make_cfproto,
            variants=("kdtree",),
            capabilities=Capabilities(
                multiple=False,
                constraints=True,
                needs_training_data=True,
                stochastic=False,
                batch_size=None,
            ),
            needs=frozenset({"proba", "gradients"}),
            extra="nice",
            requires=("torch",),
            cost={"*": 0.18},  # measured on heart with an MLP: 0.18 s/query (docs/baselines.md)
            params=PARAMS,
            description=(
                "CFProto: FISTA on an elastic-net loss with a k-d tree prototype of the target "
                "class, in the classifier's encoded space (needs gradients)"
            ),
        )
    ]
