"""Move the mutable features toward the target-class mean until the prediction flips.

Every candidate is made a row the schema allows before the classifier sees it: values within
their bounds, integer features rounded, categorical and ordinal features at their nearest code,
no feature moved against its direction, immutables as they are.
"""

import numpy as np
import pandas as pd

from cfbench.api import Capabilities, FitContext, GeneratorSpec, Param, QueryResult, hookimpl


class Shift:
    def __init__(self, variant: str = "linear", steps: int = 20) -> None:
        self.variant, self.steps = variant, steps

    def fit(self, context: FitContext) -> "Shift":
        schema = context.schema
        self.columns = schema.names
        X = context.X_train[self.columns]
        self.means = {c: X[context.y_train == c].mean().to_numpy() for c in (0, 1)}
        self.mutable = schema.mask("mutable")  # immutables stay as they are
        self.directions = schema.directions()  # +1 increase-only, -1 decrease-only, 0 any
        self.integer = schema.mask("integer")
        lower, upper = schema.bounds()  # NaN where a bound is open
        # an integer feature stays within the integers inside its bounds
        self.lower = np.where(self.integer, np.ceil(lower), lower)
        self.upper = np.where(self.integer, np.floor(upper), upper)
        self.codes = {j: np.asarray(f.categories) for j, f in enumerate(schema) if f.categories}
        self.predict = context.predict
        return self

    def allowed(self, C: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Rows ``C`` made into values the schema allows, for the query ``x``."""
        C = np.fmin(np.fmax(C, self.lower), self.upper)  # fmax/fmin skip NaN; np.clip does not
        C = np.where(self.integer, np.round(C), C)
        for j, codes in self.codes.items():  # the nearest code
            C[:, j] = codes[np.abs(C[:, [j]] - codes).argmin(axis=1)]
        # last, as they only ever put back the query's own value
        C = np.where(self.directions > 0, np.maximum(C, x), C)
        C = np.where(self.directions < 0, np.minimum(C, x), C)
        return np.where(self.mutable, C, x)

    def generate(self, queries: pd.DataFrame, targets: np.ndarray, k: int, budget: float):
        out = []
        for x, t in zip(queries[self.columns].to_numpy(float), targets, strict=True):
            # all step sizes at once along the line to the target-class mean
            alphas = np.linspace(0, 1, self.steps + 1)[1:]
            if self.variant == "quadratic":
                alphas = alphas**2
            cands = self.allowed(x + alphas[:, None] * (self.means[int(t)] - x), x)
            cands = pd.DataFrame(cands, columns=self.columns).drop_duplicates()
            hit = np.flatnonzero(self.predict(cands) == t)  # the smallest steps that flip it
            if len(hit) == 0:
                out.append(QueryResult.not_found("the target-class mean does not flip it"))
            else:
                out.append(QueryResult.ok(cands.iloc[hit[:k]]))
        return out


@hookimpl
def cfbench_generators():
    return [
        GeneratorSpec(
            name="shift",
            factory=lambda variant="linear", **params: Shift(variant, **params),
            variants=("linear", "quadratic"),
            # every keyword Shift accepts besides the variant; cfbench validates against it
            params=(Param("steps", int, 20, "step sizes tried along the line", minimum=1),),
            capabilities=Capabilities(multiple=True, constraints=True, batch_size=16),
            description="move mutable features toward the target-class mean",
        )
    ]
