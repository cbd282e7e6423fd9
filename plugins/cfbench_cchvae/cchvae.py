"""C-CHVAE (Pawelczyk, Broelemann & Kasneci, WWW 2020), written from the paper for cfbench.

``fit`` trains (or loads from the cache) a VAE conditioned on the immutable features on the
training split (``vae.py``).  For a query ``x`` with immutables ``c`` and target class ``t``,
``generate`` encodes ``z = mu(x, c)`` and searches growing latent rings: at step ``i`` it draws
``samples`` points ``z + delta`` with ``||delta||_p`` uniform in ``[i * step, (i + 1) * step)``
(a standard normal direction scaled to that length, as in the authors' code), decodes them with
``c`` held fixed, snaps them to the schema's values and asks the classifier; the first ring that
holds target-class candidates ends the search, and the candidate nearest to ``x`` (L1 in the
normalised space: range-scaled numbers, 1 per changed category) is the CF.  With ``k > 1`` the
search goes on to further rings until ``k`` distinct candidates are found or ``max_iter`` is
reached, and returns the ``k`` nearest.

Constraints: immutables are never generated (they are the decoder's condition and copied from
the query), categorical codes come from the decoder's softmax, ordinal features snap to their
nearest code and integer features are rounded.  Numbers come out of a sigmoid over the training
range, so a CF never leaves the range seen in training, but the schema's bounds and directions
are not part of the method: with ``constraints=True`` (the default) decoded candidates that move
a feature against its direction or outside its bounds are discarded before the classifier is
asked (never clipped); ``constraints=False`` is the paper's search, and whatever it returns is
scored, violations included.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cfbench.api import Deadline, FitContext, QueryResult, UserError, cache_dir, torch_one_thread
from cfbench_cchvae.space import parse_hidden


class CCHVAE:
    """Counterfactuals by growing-sphere search in the latent space of a conditional VAE.

    Keyword arguments are the parameters declared in ``cfbench_cchvae.PARAMS`` (defaults from the
    authors' code of the paper's experiments; see docs/baselines.md).
    """

    def __init__(self, variant: str = "default", latent_dim: int = 2, hidden: str = "5",
                 epochs: int = 80, lr: float = 1e-3, batch_size: int = 100, step: float = 0.5,
                 samples: int = 1000, max_iter: int = 500, p_norm: int = 2,
                 constraints: bool = True) -> None:
        if variant != "default":
            raise UserError(f"unknown cchvae variant {variant!r}; valid choices: default")
        try:
            parse_hidden(hidden)
        except (TypeError, ValueError):
            raise UserError(f"cchvae: hidden must be comma-separated positive widths such as "
                            f"'16,8', got {hidden!r}") from None
        for name, value in (("latent_dim", latent_dim), ("epochs", epochs),
                            ("batch_size", batch_size), ("samples", samples),
                            ("max_iter", max_iter)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"cchvae: {name} must be a positive integer, got {value!r}")
        if not lr > 0 or not step > 0:
            raise UserError(f"cchvae: lr and step must be positive, got {lr!r} and {step!r}")
        if p_norm not in (1, 2):
            raise UserError(f"cchvae: p_norm must be 1 or 2, got {p_norm!r}")
        self.params = {"latent_dim": latent_dim, "hidden": hidden, "epochs": epochs,
                       "lr": float(lr), "batch_size": batch_size}
        self.step, self.samples, self.max_iter = float(step), samples, max_iter
        self.p_norm, self.constraints = p_norm, constraints

    # ------------------------------------------------------------------ fit
    def fit(self, context: FitContext) -> CCHVAE:
        """Train or load the conditional VAE for this training split, schema, seed and parameters."""
        # torch is an optional dependency (the `nice` extra): imported when the method is fitted
        from cfbench_cchvae.vae import fitted_vae

        schema = context.schema
        self.columns_ = schema.names
        self.classes_ = np.asarray(context.classes)
        self.predict_proba_ = context.predict_proba
        self.seed_ = int(context.seed)
        root = Path(context.cache_dir) if context.cache_dir is not None else cache_dir()
        self.net_, self.meta_ = fitted_vae(context.X_train, schema, self.seed_, self.params,
                                           root, context.task_name)
        self.space_ = self.net_.space
        self.lower_, self.upper_ = schema.bounds()
        self.dirs_ = schema.directions()
        return self

    # ------------------------------------------------------------------ search
    def _predict(self, C: np.ndarray) -> np.ndarray:
        proba = np.asarray(self.predict_proba_(pd.DataFrame(C, columns=self.columns_)), float)
        return self.classes_[np.argmax(proba, axis=1)]

    def _admissible(self, q: np.ndarray, C: np.ndarray) -> np.ndarray:
        """Rows that keep every direction and bound of the schema (open bounds are NaN)."""
        delta = C - q
        bad = ((self.dirs_ > 0) & (delta < 0)) | ((self.dirs_ < 0) & (delta > 0))
        with np.errstate(invalid="ignore"):
            bad |= (C < self.lower_) | (C > self.upper_)
        return ~bad.any(axis=1)

    def _rng(self, q: np.ndarray, t: int) -> np.random.Generator:
        """Seeded by the cell's seed and the query itself, so batching does not change a CF."""
        h = hashlib.sha256(np.asarray(q, "<f8").tobytes() + int(t).to_bytes(8, "little", signed=True))
        return np.random.default_rng([self.seed_, int.from_bytes(h.digest()[:8], "little")])

    def search(self, q: np.ndarray, t: int, k: int, deadline: Deadline) -> QueryResult:
        """Growing latent rings around the query's code until ``k`` target-class candidates."""
        # torch is an optional dependency (the `nice` extra), loaded by fit already
        import torch

        space, rng = self.space_, self._rng(q, t)
        x = torch.as_tensor(space.encode_x(q[None, :]))
        c = torch.as_tensor(space.encode_c(q[None, :]))
        with torch.no_grad(), torch_one_thread():
            z0 = self.net_.encode(x, c)[0].numpy().astype(float)
        crep = c.repeat(self.samples, 1)
        pool = np.zeros((0, len(q)))
        lo, hi, rings, stopped = 0.0, self.step, 0, False
        while rings < self.max_iter and len(pool) < k:
            if deadline.passed():
                stopped = True
                break
            rings += 1
            direction = rng.standard_normal((self.samples, z0.shape[1]))
            radius = rng.uniform(lo, hi, self.samples)
            norm = np.linalg.norm(direction, ord=self.p_norm, axis=1)
            Z = z0 + direction * (radius / norm)[:, None]
            with torch.no_grad(), torch_one_thread():
                E = self.net_.decode(torch.as_tensor(Z, dtype=torch.float32), crep).numpy()
            C = np.unique(space.decode_x(E, q), axis=0)
            if self.constraints:
                C = C[self._admissible(q, C)]
            if len(C):
                hits = C[self._predict(C) == t]
                if len(hits):
                    pool = np.unique(np.concatenate([pool, hits]), axis=0)
            lo, hi = hi, hi + self.step
        extra: dict[str, Any] = {"rings": rings, "radius": lo, "candidates": int(len(pool)),
                                 "vae_cached": bool(self.meta_.get("cached"))}
        if not len(pool):
            if stopped:
                return QueryResult("timeout", None, f"no target-class decoding within the budget "
                                   f"({rings} rings, latent radius {lo:g})", extra=extra)
            return QueryResult.not_found(f"no target-class decoding in {rings} rings "
                                         f"(latent radius {lo:g})", extra=extra)
        order = np.argsort(space.distance(pool, q), kind="stable")[:k]
        reason = "budget reached; nearest candidates so far" if stopped else ""
        return QueryResult.ok(pd.DataFrame(pool[order], columns=self.columns_), reason=reason,
                              extra=extra)

    def generate(self, queries: pd.DataFrame, targets: np.ndarray, k: int,
                 budget: float) -> list[QueryResult]:
        """Up to ``k`` CFs per query, each query searched within ``budget`` CPU seconds."""
        Q = queries[self.columns_].to_numpy(float)
        return [self.search(q, int(t), int(k), Deadline(budget))
                for q, t in zip(Q, np.asarray(targets), strict=True)]
