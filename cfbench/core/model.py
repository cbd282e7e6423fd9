"""What a generator may know about the task's classifier beyond ``predict_proba``: ``ModelView``.

Gradient, linear and tree methods need the model's inside.  ``FitContext.model`` is a
``ModelView``: the ``kinds`` of access the classifier offers, the encoded space ``Z`` it works in
(scaled numbers, one-hot categories: ``encode``/``decode`` and one ``FeatureBlock`` per feature)
and, per kind, a differentiable torch mirror, the linear weights or the tree arrays.  Every mirror
is checked against the classifier's own ``predict_proba`` on the training rows when first built,
so a method never optimises a model other than the one it is scored on.  Plain numpy here; the
scikit-learn and XGBoost extraction lives with the classifier (``cfbench.tasks.model_view``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from cfbench.core.errors import UserError

#: Every kind of access a classifier may offer, and so a method may need.
KINDS = ("proba", "gradients", "linear", "trees")
#: What a method needs unless it says otherwise: the probabilities every classifier gives.
PROBA_ONLY = frozenset({"proba"})
#: Largest difference to ``predict_proba`` a mirror may show (float64 mirrors; XGBoost's float32
#: trees get ``FLOAT32_TOLERANCE``).
TOLERANCE = 1e-6
FLOAT32_TOLERANCE = 1e-5
ACTIVATIONS = ("identity", "logistic", "tanh", "relu")


class ModelMismatch(RuntimeError):
    """A mirror of the classifier does not reproduce its ``predict_proba``: never use it."""


def kinds_text(kinds: frozenset[str] | set[str]) -> str:
    """``proba, trees``: kinds in ``KINDS`` order."""
    return ", ".join(k for k in KINDS if k in kinds) or "nothing"


def not_applicable(needs: frozenset[str], kinds: frozenset[str], classifier: str) -> str | None:
    """Why a method needing ``needs`` cannot run on a ``classifier`` offering ``kinds`` (None: it can).

    E.g. ``needs gradients; the task's classifier random-forest offers proba, trees``.
    """
    missing = [k for k in KINDS if k in needs and k not in kinds]
    missing += sorted(set(needs) - set(KINDS) - set(kinds))
    if not missing:
        return None
    return (f"needs {', '.join(missing)}; the task's classifier {classifier} offers "
            f"{kinds_text(kinds)}")


@dataclass(frozen=True)
class FeatureBlock:
    """One feature's columns in the encoded space: where it sits and how it was encoded.

    A numeric or ordinal feature is one column ``(x - mean) / scale``; a categorical feature is
    one column per code in ``categories`` (one-hot; a code outside them encodes as all zeros).
    """

    name: str
    kind: str  # the schema's kind: numeric, ordinal or categorical
    columns: tuple[int, ...]
    mean: float | None = None
    scale: float | None = None
    categories: tuple[float, ...] = ()

    @property
    def one_hot(self) -> bool:
        return self.mean is None

    def to_z(self, value: float) -> float:
        """A value of a scaled feature (a bound, say) in encoded units."""
        if self.one_hot:
            raise ValueError(f"feature {self.name!r} is one-hot encoded; it has no scaled value")
        return (value - self.mean) / self.scale


@dataclass(frozen=True)
class Linear:
    """A linear classifier in the encoded space: the logit of class 1 is ``Z @ weights + intercept``."""

    weights: np.ndarray  # (d,)
    intercept: float

    def proba(self, Z: np.ndarray) -> np.ndarray:
        p1 = _sigmoid(np.asarray(Z, float) @ self.weights + self.intercept)
        return np.column_stack([1 - p1, p1])


@dataclass(frozen=True)
class Network:
    """A feed-forward network in the encoded space: ``act(Z @ W0 + b0) ...`` then a logistic
    output unit giving the probability of class 1 (scikit-learn's ``MLPClassifier`` layout;
    logistic regression is the network without hidden layers)."""

    weights: tuple[np.ndarray, ...]  # (d, h1), (h1, h2), ..., (h_last, 1)
    biases: tuple[np.ndarray, ...]
    activation: str = "relu"  # of the hidden layers; one of ACTIVATIONS

    def proba(self, Z: np.ndarray) -> np.ndarray:
        a = np.asarray(Z, float)
        last = len(self.weights) - 1
        for i, (W, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            a = a @ W + b
            if i < last:
                a = _ACT[self.activation](a)
        p1 = _sigmoid(a[:, 0])
        return np.column_stack([1 - p1, p1])


@dataclass(frozen=True)
class Tree:
    """One tree as parallel arrays over its nodes (node 0 is the root).

    A row goes left when ``float32(z[feature]) <= threshold`` (both libraries compare float32
    values); a leaf has ``left == right == -1`` and carries ``value``.
    """

    feature: np.ndarray  # int, index in Z; -1 at leaves
    threshold: np.ndarray  # float64
    left: np.ndarray  # int, -1 at leaves
    right: np.ndarray
    value: np.ndarray  # float64: class-1 probability (forests) or margin (boosting) at leaves

    def leaf_values(self, Z: np.ndarray) -> np.ndarray:
        Z32 = np.asarray(Z, float).astype(np.float32).astype(float)
        node = np.zeros(len(Z32), dtype=np.int64)
        rows = np.arange(len(Z32))
        while True:
            inner = self.left[node] >= 0
            if not inner.any():
                return self.value[node]
            n, r = node[inner], rows[inner]
            go_left = Z32[r, self.feature[n]] <= self.threshold[n]
            node[inner] = np.where(go_left, self.left[n], self.right[n])


#: How the leaves of an ensemble become the class-1 probability.
COMBINE = ("mean", "sigmoid-sum")


@dataclass(frozen=True)
class Trees:
    """A tree ensemble: ``mean`` averages the trees' class-1 probabilities (random forest);
    ``sigmoid-sum`` is ``sigmoid(base + sum of leaf margins)`` (gradient boosting, XGBoost)."""

    trees: tuple[Tree, ...]
    combine: str
    base: float = 0.0

    def proba(self, Z: np.ndarray) -> np.ndarray:
        leaves = np.stack([t.leaf_values(Z) for t in self.trees])
        if self.combine == "mean":
            p1 = leaves.mean(axis=0)
        else:
            p1 = _sigmoid(self.base + leaves.sum(axis=0))
        return np.column_stack([1 - p1, p1])


class ModelSource(Protocol):
    """Where a ``ModelView`` gets the model's inside from (see ``cfbench.tasks.model_view``)."""

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray: ...
    def network(self) -> Network: ...
    def linear(self) -> Linear: ...
    def trees(self) -> tuple[Trees, float]: ...  # the ensemble and the tolerance it is held to


@dataclass
class ModelView:
    """The task's classifier as a method may use it: ``kinds`` it offers, its encoded space and,
    per kind, a mirror checked against ``predict_proba`` (built on first use)."""

    classifier: str
    kinds: frozenset[str]
    #: one block per feature in schema order; empty when the encoding is unknown (a user's model)
    blocks: tuple[FeatureBlock, ...] = ()
    source: ModelSource | None = field(default=None, repr=False)
    #: rows (feature columns) the mirrors are checked on: the training split
    check_rows: pd.DataFrame | None = field(default=None, repr=False)
    _built: dict[str, Any] = field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled to workers without the torch module (rebuilt and re-checked there)."""
        state = dict(self.__dict__)
        state["_built"] = {k: v for k, v in self._built.items() if k not in ("torch", "torch_diff")}
        return state

    # ------------------------------------------------------------------ encoded space
    @property
    def n_encoded(self) -> int:
        """Width ``d`` of the encoded space."""
        return sum(len(b.columns) for b in self.blocks)

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.blocks]

    def _need_blocks(self) -> None:
        if not self.blocks:
            raise UserError(f"the encoded space of classifier {self.classifier!r} is unknown "
                            "(only cfbench's own pipelines describe theirs)")

    def encode(self, X: pd.DataFrame) -> np.ndarray:
        """Feature rows (schema columns) as the classifier sees them: ``(n, d)`` float64."""
        self._need_blocks()
        Z = np.zeros((len(X), self.n_encoded))
        for b in self.blocks:
            x = np.asarray(X[b.name], dtype=float)
            if b.one_hot:
                for col, code in zip(b.columns, b.categories, strict=True):
                    Z[:, col] = x == code
            else:
                Z[:, b.columns[0]] = (x - b.mean) / b.scale
        return Z

    def decode(self, Z: np.ndarray) -> pd.DataFrame:
        """Encoded rows back to features: scaled columns unscaled, each one-hot block's
        largest entry taken as its category code."""
        self._need_blocks()
        Z = np.atleast_2d(np.asarray(Z, dtype=float))
        out = {}
        for b in self.blocks:
            if b.one_hot:
                out[b.name] = np.asarray(b.categories, float)[np.argmax(Z[:, list(b.columns)], axis=1)]
            else:
                out[b.name] = Z[:, b.columns[0]] * b.scale + b.mean
        return pd.DataFrame(out, columns=self.names)

    def column_mask(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        """Boolean mask over Z of the columns of the named features (e.g. the schema's immutables)."""
        self._need_blocks()
        mask = np.zeros(self.n_encoded, dtype=bool)
        for b in self.blocks:
            if b.name in names:
                mask[list(b.columns)] = True
        return mask

    def bounds(self, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature bounds (schema order, NaN = open) as bounds over Z; one-hot columns: [0, 1]."""
        self._need_blocks()
        lo, hi = np.full(self.n_encoded, -np.inf), np.full(self.n_encoded, np.inf)
        for i, b in enumerate(self.blocks):
            cols = list(b.columns)
            if b.one_hot:
                lo[cols], hi[cols] = 0.0, 1.0
                continue
            if not np.isnan(lower[i]):
                lo[cols] = b.to_z(lower[i])
            if not np.isnan(upper[i]):
                hi[cols] = b.to_z(upper[i])
        return lo, hi

    def directions(self, directions: np.ndarray) -> np.ndarray:
        """Per-feature directions (+1 increase-only, -1 decrease-only, 0 any; schema order) over
        Z: a scaled column keeps its feature's (scales are positive), one-hot columns get 0."""
        self._need_blocks()
        out = np.zeros(self.n_encoded, dtype=int)
        for i, b in enumerate(self.blocks):
            if not b.one_hot:
                out[b.columns[0]] = int(directions[i])
        return out

    # ------------------------------------------------------------------ mirrors
    def _require(self, kind: str) -> None:
        if kind not in self.kinds or self.source is None:
            raise UserError(f"classifier {self.classifier!r} offers {kinds_text(self.kinds)}, "
                            f"not {kind} (declare needs={{{kind!r}}} in the GeneratorSpec)")

    def _reference(self) -> tuple[np.ndarray, np.ndarray]:
        """(encoded check rows, the classifier's predict_proba on them), computed once."""
        if "reference" not in self._built:
            X = self.check_rows
            self._built["reference"] = (self.encode(X), np.asarray(self.source.predict_proba(X), float))
        return self._built["reference"]

    def _checked(self, kind: str, make: Callable[[], Any], proba: Callable[[Any, np.ndarray], np.ndarray],
                 tolerance: float = TOLERANCE) -> Any:
        """Build a mirror once and refuse it unless it reproduces predict_proba on the check rows."""
        if kind not in self._built:
            mirror = make()
            Z, expected = self._reference()
            diff = float(np.max(np.abs(proba(mirror, Z) - expected))) if len(Z) else 0.0
            if not diff <= tolerance:
                raise ModelMismatch(f"the {kind} mirror of classifier {self.classifier!r} differs "
                                    f"from its predict_proba by {diff:.3g} (> {tolerance:g})")
            self._built[kind] = mirror
            self._built[f"{kind}_diff"] = diff
        return self._built[kind]

    def network(self) -> Network:
        """The network (numpy arrays) behind ``torch_module``: for "gradients"."""
        self._require("gradients")
        return self._checked("network", self.source.network, lambda m, Z: m.proba(Z))

    def torch_module(self) -> Any:
        """A ``torch.nn.Module`` from encoded rows ``(n, d)`` to class probabilities ``(n, 2)``,
        float64, differentiable: the classifier's exact mirror (for "gradients")."""
        net = self.network()

        def make() -> Any:
            # torch is optional (the nice/llm extras) and slow to import: only gradient methods pay
            from cfbench.core.torch_mirror import build_module

            return build_module(net)

        def proba(module: Any, Z: np.ndarray) -> np.ndarray:
            # torch again: as above, loaded only when a mirror is asked for
            import torch

            with torch.no_grad():
                return module(torch.from_numpy(Z)).numpy()

        return self._checked("torch", make, proba)

    def linear(self) -> Linear:
        """Weights and intercept over Z of the class-1 logit (for "linear")."""
        self._require("linear")
        return self._checked("linear", self.source.linear, lambda m, Z: m.proba(Z))

    def trees(self) -> Trees:
        """The ensemble as plain arrays per tree and how its leaves combine (for "trees")."""
        self._require("trees")
        if "trees" not in self._built:
            ensemble, tolerance = self.source.trees()
            return self._checked("trees", lambda: ensemble, lambda m, Z: m.proba(Z), tolerance)
        return self._built["trees"]

    def agreement(self) -> dict[str, float]:
        """Max abs difference to predict_proba of each mirror built so far (for reports, tests)."""
        return {k[:-5]: v for k, v in self._built.items() if k.endswith("_diff")}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """scikit-learn's ``expit`` (scipy's logistic), written out to keep the core scipy-free."""
    x = np.asarray(x, float)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


_ACT: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda a: a,
    "logistic": _sigmoid,
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0),
}
