"""Augmentation under label scarcity (SenseCF's second use of CFs): scenarios A, B and C.

For each seed and scenario a share of the training rows is removed (A: positives, B: negatives,
C: both), every method writes CFs from the remaining rows of the other class toward the depleted
class (one per removed row, as far as there are source rows), and the task's classifier is
retrained on scarce data + CFs labelled with their target class.  Reference rows: no
augmentation, random oversampling and SMOTE, each adding as many rows as were removed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from cfbench.errors import UserError
from cfbench.runner import Choice, RunConfig, canonical_params, execute, method_label
from cfbench.store import load_records, write_json_atomic
from cfbench.task import Task

SCENARIOS = {"A": "positive", "B": "negative", "C": "both"}
DEPLETED = {"A": (1,), "B": (0,), "C": (0, 1)}
REFERENCES = ("no-augmentation", "random-oversampling", "smote")


@dataclass
class AugmentConfig:
    """What ``cfbench augment`` runs; ``max_per_class`` caps CFs per depleted class (smoke runs)."""

    scenarios: tuple[str, ...] = ("A", "B", "C")
    fraction: float = 0.5
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    max_per_class: int | None = None
    references: tuple[str, ...] = REFERENCES

    def validate(self) -> None:
        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad:
            raise UserError(f"unknown scenario {bad[0]!r}; valid choices: A, B, C")
        if not 0 < self.fraction < 1:
            raise UserError(f"--fraction must be in (0, 1), got {self.fraction}")


def evaluate(model: Any, task: Task) -> dict[str, float]:
    """Scores on the fixed test split: positive-class F1, macro F1, accuracy, balanced accuracy."""
    pred = model.predict(task.X_test[task.schema.names])
    y = task.y_test
    return {
        "f1": float(f1_score(y, pred, zero_division=0)),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
    }


def augmentation_queries(scarce: Task, removed_y: pd.Series, seed: int,
                         max_per_class: int | None) -> pd.DataFrame:
    """Source rows for CFs: remaining rows of the other class, one per removed row of each class."""
    rng = np.random.default_rng([seed, 7])
    parts = []
    for c in sorted(set(removed_y)):
        n = int((removed_y == c).sum())
        if max_per_class is not None:
            n = min(n, max_per_class)
        pool = np.flatnonzero(scarce.y_train != c)
        take = np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False))
        part = scarce.X_train.iloc[take].copy()
        part.insert(0, "target", c)
        part.insert(0, "source", 1 - c)
        part.insert(0, "query_id", scarce.X_train.index[take].astype(int))
        parts.append(part)
    return pd.concat(parts).reset_index(drop=True)


def _recovery(row: dict[str, float], full: dict[str, float], scarce: dict[str, float]) -> None:
    for m in ("f1", "macro_f1"):
        gain = row[m] - scarce[m]
        gap = full[m] - scarce[m]
        row[f"{m}_recovered"] = gain
        row[f"{m}_recovered_rel"] = gain / gap if abs(gap) > 1e-9 else float("nan")


def _reference_rows(task: Task, scarce: Task, removed_y: pd.Series, seed: int,
                    refs: Sequence[str]) -> list[tuple[str, pd.DataFrame, np.ndarray]]:
    """(name, extra X, extra y) for each reference row; extra rows equal the removed counts."""
    out: list[tuple[str, pd.DataFrame, np.ndarray]] = []
    empty = scarce.X_train.iloc[:0]
    counts = {int(c): int((scarce.y_train == c).sum()) for c in (0, 1)}
    want = {c: counts[c] + int((removed_y == c).sum()) for c in counts}
    for ref in refs:
        if ref == "no-augmentation":
            out.append((ref, empty, np.zeros(0, int)))
            continue
        if ref == "random-oversampling":
            from imblearn.over_sampling import RandomOverSampler as Sampler
        else:
            from imblearn.over_sampling import SMOTE as Sampler
        sampler = Sampler(sampling_strategy=want, random_state=seed)
        Xr, yr = sampler.fit_resample(scarce.X_train, scarce.y_train)
        n = len(scarce.y_train)  # imblearn appends the new rows after the originals
        out.append((ref, Xr.iloc[n:], np.asarray(yr)[n:]))
    return out


@dataclass
class AugmentResult:
    rows: list[dict[str, Any]] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def run_augmentation(task: Task, run_cfg: RunConfig, aug: AugmentConfig,
                     pairs: Sequence[Choice],
                     on_stage: Callable[[str], None] | None = None,
                     on_plan: Callable | None = None, on_progress: Callable | None = None,
                     observer: Any = None) -> AugmentResult:
    """Every seed × scenario: generate CFs through the runner, retrain, score on the test split."""
    aug.validate()
    result = AugmentResult()
    full_scores = evaluate(task.model, task)
    names = task.schema.names
    for seed in aug.seeds:
        for scenario in aug.scenarios:
            if on_stage:
                on_stage(f"scenario {scenario}, seed {seed}")
            scarce, _, removed_y = task.scarce(scenario, aug.fraction, seed)
            scarce_scores = evaluate(scarce.model, scarce)
            base = {"scenario": scenario, "seed": seed, "n_removed": int(len(removed_y)),
                    "f1_full": full_scores["f1"], "f1_scarce": scarce_scores["f1"],
                    "macro_f1_full": full_scores["macro_f1"], "macro_f1_scarce": scarce_scores["macro_f1"]}
            for ref, Xa, ya in _reference_rows(task, scarce, removed_y, seed, aug.references):
                model = scarce.model if ref == "no-augmentation" else task.retrain(
                    pd.concat([scarce.X_train, Xa]), np.concatenate([scarce.y_train, ya]),
                    f"aug:{scenario}:{aug.fraction}:{seed}:{ref}")
                row = {**base, "method": ref, "cfs": "reference", "n_added": int(len(ya)),
                       **evaluate(model, task)}
                _recovery(row, full_scores, scarce_scores)
                result.rows.append(row)
            if not pairs:
                continue
            queries = augmentation_queries(scarce, removed_y, seed, aug.max_per_class)
            cfg = replace(run_cfg, out=run_cfg.out / "augment" / f"{scenario}-seed{seed}",
                          seeds=(seed,), k=1, scarcity=(scenario, aug.fraction, seed))
            execute(cfg, scarce, pairs, on_plan=on_plan, on_progress=on_progress, queries=queries,
                    observer=observer)
            records = load_records(cfg.out)
            for method, variant, params in pairs:
                recs = [r for r in records if r["method"] == method and r["variant"] == variant
                        and canonical_params(method, variant, r.get("params")) == params and r["seed"] == seed and r["cfs"]]
                label = method_label(method, variant, params)
                C = pd.DataFrame([r["cfs"][0] for r in recs], columns=names, dtype=float)
                tgt = np.asarray([r["target"] for r in recs], int)
                valid = scarce.predict(C) == tgt if len(C) else np.zeros(0, bool)
                for which, keep in (("valid", valid), ("all", np.ones(len(C), bool))):
                    Xa, ya = C[keep], tgt[keep]
                    model = task.retrain(
                        pd.concat([scarce.X_train, Xa], ignore_index=True),
                        np.concatenate([scarce.y_train, ya]),
                        f"aug:{scenario}:{aug.fraction}:{seed}:{method}:{variant}:{which}"
                        + (f":{label}" if params else ""),
                    ) if len(ya) else scarce.model
                    row = {**base, "method": label, "cfs": which,
                           "n_queries": int(len(queries)), "n_added": int(len(ya)),
                           **evaluate(model, task)}
                    _recovery(row, full_scores, scarce_scores)
                    result.rows.append(row)
    return result


METRICS = ("f1", "macro_f1", "accuracy", "balanced_accuracy", "f1_recovered", "f1_recovered_rel",
           "macro_f1_recovered", "macro_f1_recovered_rel", "n_added")


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per (scenario, method, cfs)."""
    df = pd.DataFrame(rows)
    if df.empty:
        return []
    out = []
    for (scenario, method, cfs), g in df.groupby(["scenario", "method", "cfs"], sort=True):
        row: dict[str, Any] = {"scenario": scenario, "method": method, "cfs": cfs, "n_seeds": len(g)}
        for m in METRICS:
            vals = g[m].astype(float)
            row[m] = float(vals.mean())
            row[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        out.append(row)
    return out


def to_markdown(agg: list[dict[str, Any]]) -> str:
    """Augmentation table: F1 points (×100) as mean ± std over seeds ("± –" from one seed)."""
    head = ("| scenario | method | CFs | added | F1 | macro F1 | bal. acc. | F1 recovered (pts) "
            "| rel. recovery | macro F1 recovered (pts) |")
    lines = [head, "|" + "---|" * 10]
    def missing(v: Any) -> bool:  # NaN in memory, null once read back from strict JSON
        return v is None or np.isnan(v)

    def pm(r: dict[str, Any], m: str) -> str:
        v, s = r[m], r[f"{m}_std"]
        if missing(v):
            return "–"
        if r.get("n_seeds", 2) < 2 or missing(s):  # no spread from one seed
            return f"{v * 100:.1f} ± –"
        return f"{v * 100:.1f} ± {s * 100:.1f}"

    for r in agg:
        rel = "–" if missing(r["f1_recovered_rel"]) else f"{r['f1_recovered_rel']:.2f}"
        lines.append(
            f"| {r['scenario']} ({SCENARIOS[r['scenario']]}) | {r['method']} | {r['cfs']} | "
            f"{r['n_added']:.0f} | {pm(r, 'f1')} | {pm(r, 'macro_f1')} | {pm(r, 'balanced_accuracy')} | "
            f"{pm(r, 'f1_recovered')} | {rel} | {pm(r, 'macro_f1_recovered')} |"
        )
    return "\n".join(lines)


def save(result: AugmentResult, out: Path, extra: dict[str, Any]) -> dict[str, Any]:
    doc = {**extra, "rows": result.rows, "aggregate": aggregate(result.rows)}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "augment.json", doc)
    return doc


def load(out: Path) -> dict[str, Any]:
    path = Path(out) / "augment.json"
    if not path.exists():
        raise UserError(f"{out}: no augment.json (expected the --out folder of `cfbench augment`)")
    return json.loads(path.read_text())
