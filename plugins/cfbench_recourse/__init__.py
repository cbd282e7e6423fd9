"""cfbench plugin: Actionable Recourse for linear classifiers (Ustun, Spangher & Liu, FAT* 2019).

Written from the paper (``cfbench_recourse.recourse``); needs the task's linear weights
(``context.model.linear()``, logistic regression) and scipy's HiGHS MILP solver.
"""

from __future__ import annotations

from typing import Any

from cfbench.api import Capabilities, GeneratorSpec, Param, UserError, hookimpl

PARAMS = (
    Param("grid", int, 100, "percentile steps of each numeric feature's action grid "
          "(100: every percentile)", minimum=1),
    Param("cost", str, "max", "percentile-shift cost: max over features (the paper's) or total",
          choices=("max", "total")),
)


def make_recourse(variant: str = "default", **params: Any):
    """Factory: an unfitted ``ActionableRecourse`` (the method has one variant)."""
    # the method module (and scipy) load when the method is built, not when plugins are listed
    from cfbench_recourse.recourse import ActionableRecourse

    if variant != "default":
        raise UserError(f"unknown actionable-recourse variant {variant!r}; valid choices: default")
    return ActionableRecourse(**params)


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="actionable-recourse",
            factory=make_recourse,
            capabilities=Capabilities(multiple=True, constraints=True),
            needs=frozenset({"proba", "linear"}),
            requires=("scipy",),
            extra="recourse",
            params=PARAMS,
            cost={"*": 0.12},  # s/query measured on heart (10 queries per class)
            preload=("cfbench_recourse.recourse",),
            description=("Actionable Recourse: least percentile-shift action on a grid that flips "
                         "a linear classifier (integer program, HiGHS)"),
        )
    ]
