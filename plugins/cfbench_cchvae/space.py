"""The normalised space the C-CHVAE works in, and the way back to the schema's values (numpy only).

Numeric and ordinal features are min-max scaled on the training split to [0, 1]; categorical
features are one-hot.  The schema's immutable features form the conditioning vector ``c``; the
mutable ones the vector ``x`` the VAE encodes and reconstructs.  Decoding goes back feature by
feature: a categorical feature takes the code of its largest output, an ordinal one the nearest
of its codes, an integer one is rounded; nothing is clipped to the schema's bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cfbench.api import FeatureSchema


@dataclass
class Block:
    """One feature's slice of the encoded vector: ``width`` 1 (scaled) or the number of codes."""

    feature: int
    start: int
    width: int
    codes: np.ndarray | None  # categorical: one column per code; ordinal: codes to snap to
    categorical: bool
    integer: bool


@dataclass
class Space:
    """Scaling of the training split plus the block layout of the mutable (x) and immutable (c) parts."""

    lo: np.ndarray
    span: np.ndarray
    x_blocks: list[Block]
    c_blocks: list[Block]
    mutable: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, schema: FeatureSchema) -> Space:
        lo, hi = X.min(axis=0), X.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        mutable = schema.mask("mutable")
        layouts: dict[bool, list[Block]] = {True: [], False: []}
        width = {True: 0, False: 0}
        for j, f in enumerate(schema.features):
            codes = None
            if f.kind != "numeric":
                codes = np.unique(np.concatenate([np.asarray(f.categories, float), X[:, j]]))
            w = len(codes) if f.kind == "categorical" else 1
            m = bool(mutable[j])
            layouts[m].append(Block(j, width[m], w, codes, f.kind == "categorical", f.integer))
            width[m] += w
        return cls(lo, span, layouts[True], layouts[False], mutable)

    @property
    def x_dim(self) -> int:
        return sum(b.width for b in self.x_blocks)

    @property
    def c_dim(self) -> int:
        return sum(b.width for b in self.c_blocks)

    def _encode(self, X: np.ndarray, blocks: list[Block]) -> np.ndarray:
        parts = []
        for b in blocks:
            col = X[:, b.feature]
            if b.categorical:
                parts.append((col[:, None] == b.codes[None, :]).astype(np.float32))
            else:
                parts.append(((col - self.lo[b.feature]) / self.span[b.feature])[:, None])
        if not parts:
            return np.zeros((len(X), 0), np.float32)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def encode_x(self, X: np.ndarray) -> np.ndarray:
        return self._encode(X, self.x_blocks)

    def encode_c(self, X: np.ndarray) -> np.ndarray:
        return self._encode(X, self.c_blocks)

    def decode_x(self, E: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Rows in the schema's order: the query's values, mutable features from ``E`` (snapped)."""
        out = np.repeat(query[None, :].astype(float), len(E), axis=0)
        for b in self.x_blocks:
            part = E[:, b.start : b.start + b.width]
            if b.categorical:
                out[:, b.feature] = b.codes[np.argmax(part, axis=1)]
                continue
            v = part[:, 0].astype(float) * self.span[b.feature] + self.lo[b.feature]
            if b.codes is not None:  # ordinal: the nearest of its codes
                v = b.codes[np.abs(v[:, None] - b.codes[None, :]).argmin(axis=1)]
            elif b.integer:
                v = np.round(v)
            out[:, b.feature] = v
        return out

    def distance(self, C: np.ndarray, q: np.ndarray) -> np.ndarray:
        """L1 distance in the normalised space: range-scaled for numbers, 1 per changed category."""
        d = np.abs(C - q) / self.span
        cat = [b.feature for b in self.x_blocks + self.c_blocks if b.categorical]
        d[:, cat] = (C[:, cat] != q[cat]).astype(float)
        return d.sum(axis=1)


def parse_hidden(text: str) -> list[int]:
    """``"16,8"`` -> ``[16, 8]``; ``""`` -> no hidden layer.  Raises ``ValueError`` otherwise."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    widths = [int(p) for p in parts]
    if any(w < 1 for w in widths):
        raise ValueError("hidden widths must be positive")
    return widths
