"""Augmentation under label scarcity (SenseCF's second use of CFs): scenarios A, B and C.

Protocol (version 2; docs/leaderboard.md gives the reasons).  Each repetition ``seed`` draws its
own stratified train/test split of the task's data (the variance then includes the test set) and
refits the task's classifier on it (the *full* model).  For each fraction and scenario a share
of that split's training rows is removed (A: positives, B: negatives, C: both, drawn with the
seed) and the classifier is refit on the rest (the *scarce* model).  Every row then adds exactly
as many rows per depleted class as were removed (the *budget*):

* references: none (no augmentation), random oversampling and SMOTE (imbalanced-learn);
* each CF method: CFs toward the depleted class from distinct remaining rows of the other class
  (as many sources as the budget, or all there are), generated through the runner with the
  scarce model as the model to explain.  ``all`` adds every returned CF, ``valid`` only those
  the scarce model assigns to their target class (the filter a user could apply).  When fewer
  CFs than the budget are left (fewer source rows than removed rows, failed queries, the
  filter), the budget is filled by drawing from the method's own CFs with replacement (seeded),
  as random oversampling does with real rows; ``n_distinct`` says how many distinct CFs were used.

The retrained model is scored on the repetition's test split; :mod:`cfbench.score.augment_stats`
turns the per-repetition rows into means, CIs, paired tests and relative recovery.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from cfbench.core.errors import UserError
from cfbench.core.machine import usable_cores
from cfbench.execution.config import RunConfig
from cfbench.execution.orchestrator import execute
from cfbench.records.labels import Choice, canonical_params, method_label
from cfbench.records.store import load_records, write_json_atomic
from cfbench.score import augment_stats
from cfbench.tasks.spec import Task

PROTOCOL = 2
SCENARIOS = {"A": "positive", "B": "negative", "C": "both"}
DEPLETED = {"A": (1,), "B": (0,), "C": (0, 1)}
REFERENCES = ("no-augmentation", "random-oversampling", "smote")
#: the repetitions of a study unless told otherwise (the committed boards use these)
DEFAULT_SEEDS = tuple(range(10))


@dataclass
class AugmentConfig:
    """What ``cfbench augment`` runs.

    ``fraction`` is the table's share of rows removed; ``curve`` adds more fractions for the
    scarcity curve; ``max_per_class`` caps the distinct CFs generated per depleted class (quick
    runs: the budget is still filled, from fewer CFs)."""

    scenarios: tuple[str, ...] = ("A", "B", "C")
    fraction: float = 0.5
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    max_per_class: int | None = None
    references: tuple[str, ...] = REFERENCES
    curve: tuple[float, ...] = ()

    def validate(self) -> None:
        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad:
            raise UserError(f"unknown scenario {bad[0]!r}; valid choices: A, B, C")
        if not self.scenarios:
            raise UserError("--scenarios is empty; valid choices: A, B, C (comma list)")
        for f in (self.fraction, *self.curve):
            if not 0 < f < 1:
                raise UserError(f"scarcity fraction must be in (0, 1), got {f:g}")
        if len(self.seeds) < 2:
            raise UserError(f"augmentation needs at least 2 seeds (repetitions) for its CIs, got "
                            f"{len(self.seeds)}; e.g. --seeds 0-9")

    @property
    def fractions(self) -> tuple[float, ...]:
        return tuple(sorted({float(self.fraction), *map(float, self.curve)}))


def evaluate(model: Any, task: Task) -> dict[str, float]:
    """Scores on the task's test split: positive-class F1, macro F1, accuracy, balanced accuracy."""
    pred = model.predict(task.X_test[task.schema.names])
    y = task.y_test
    return {
        "f1": float(f1_score(y, pred, zero_division=0)),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
    }


def budget(removed_y: pd.Series) -> dict[int, int]:
    """Rows to add per depleted class: as many as were removed."""
    return {int(c): int((removed_y == c).sum()) for c in sorted(set(removed_y))}


def augmentation_queries(scarce: Task, removed_y: pd.Series, seed: int,
                         max_per_class: int | None) -> pd.DataFrame:
    """Source rows for CFs: distinct remaining rows of the other class, as many per depleted
    class as its budget (all there are when fewer; at most ``max_per_class``)."""
    rng = np.random.default_rng([seed, 7])
    parts = []
    for c, n in budget(removed_y).items():
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


def fill_budget(C: pd.DataFrame, tgt: np.ndarray, want: dict[int, int],
                rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Exactly ``want[c]`` rows per class from the CFs ``C`` (labelled ``tgt``): all of them,
    then draws with replacement from them to fill the rest.  A class with no CF adds nothing.
    Returns (rows, labels, distinct CFs used)."""
    take: list[int] = []
    distinct = 0
    for c, n in want.items():
        idx = np.flatnonzero(tgt == c)[:n]
        distinct += len(idx)
        take.extend(idx)
        if 0 < len(idx) < n:
            take.extend(rng.choice(idx, size=n - len(idx), replace=True))
    take_a = np.asarray(take, dtype=int)
    return C.iloc[take_a].reset_index(drop=True), tgt[take_a], distinct


def _gains(row: dict[str, Any], full: dict[str, float], scarce: dict[str, float]) -> None:
    for m in ("f1", "macro_f1"):
        row[f"{m}_full"], row[f"{m}_scarce"] = full[m], scarce[m]
        row[f"{m}_gain"] = row[m] - scarce[m]


def _reference_rows(scarce: Task, removed_y: pd.Series, seed: int,
                    refs: Sequence[str]) -> list[tuple[str, pd.DataFrame, np.ndarray]]:
    """(name, extra X, extra y) for each reference row; extra rows equal the removed counts."""
    out: list[tuple[str, pd.DataFrame, np.ndarray]] = []
    empty = scarce.X_train.iloc[:0]
    counts = {int(c): int((scarce.y_train == c).sum()) for c in (0, 1)}
    want = {c: counts[c] + n for c, n in budget(removed_y).items()}
    for ref in refs:
        if ref == "no-augmentation":
            out.append((ref, empty, np.zeros(0, int)))
            continue
        if ref == "random-oversampling":
            # optional extra `augment`: imported when a reference model is trained
            from imblearn.over_sampling import RandomOverSampler

            sampler: Any = RandomOverSampler(sampling_strategy=want, random_state=seed)
        else:
            # optional extra `augment`: imported when a reference model is trained
            from imblearn.over_sampling import SMOTE

            smallest = min(counts[c] for c in want)  # SMOTE needs k + 1 rows of the class
            sampler = SMOTE(sampling_strategy=want, random_state=seed,
                            k_neighbors=max(1, min(5, smallest - 1)))
        Xr, yr = sampler.fit_resample(scarce.X_train, scarce.y_train)
        n = len(scarce.y_train)  # imblearn appends the new rows after the originals
        out.append((ref, Xr.iloc[n:], np.asarray(yr)[n:]))
    return out


@dataclass
class AugmentResult:
    rows: list[dict[str, Any]] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def stage_dir(out: Path, fraction: float, scenario: str, seed: int) -> Path:
    """Where one stage's CF records go (``--resume`` continues a study stage by stage)."""
    return out / "augment" / f"f{fraction:g}-{scenario}-split{seed}"


def lanes(run_cfg: RunConfig, aug: AugmentConfig, pairs: Sequence[Choice]) -> int:
    """How many repetitions run side by side: with local workers, ``jobs`` of them (each stage's
    cells then one at a time), so no core idles while a stage's longest cell finishes; one lane
    on Ray (the cluster spreads the cells) or without CF methods."""
    if run_cfg.executor != "local" or not pairs:
        return 1
    return max(1, min(int(run_cfg.jobs), len(aug.seeds)))


class _Lanes:
    """The runners of repetitions running side by side, so an interrupt stops them all."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._runners: list[Any] = []

    def register(self, runner: Any) -> None:
        with self._lock:
            self._runners.append(runner)
            stopped = self.stop.is_set()
        if stopped:
            runner.abort()

    def abort(self) -> None:
        with self._lock:
            self.stop.set()
            runners = list(self._runners)
        for r in runners:
            r.abort()


def run_augmentation(task: Task, run_cfg: RunConfig, aug: AugmentConfig,
                     pairs: Sequence[Choice],
                     on_stage: Callable[[str], None] | None = None,
                     on_plan: Callable | None = None, on_progress: Callable | None = None,
                     observer: Any = None) -> AugmentResult:
    """Every repetition × fraction × scenario: split, deplete, generate CFs through the runner,
    fill the budget, retrain, score on the repetition's test split.

    With ``jobs`` > 1 on local workers the repetitions run in that many lanes side by side, each
    stage's cells one at a time with the cores shared out (:func:`lanes`); the rows are the same
    as one lane's, in the same order."""
    aug.validate()
    n = lanes(run_cfg, aug, pairs)
    seeds = list(aug.seeds)
    if n == 1:
        rows = [r for seed in seeds
                for r in _repetition(task, run_cfg, aug, pairs, seed, on_stage, on_plan,
                                     on_progress, observer)]
        return AugmentResult(rows)


    stage_cfg = replace(run_cfg, jobs=1)
    threads = max(1, usable_cores() // n)
    ctl = _Lanes()

    def lane(mine: list[int]) -> dict[int, list[dict[str, Any]]]:
        return {seed: _repetition(task, stage_cfg, aug, pairs, seed, on_stage, on_plan,
                                  on_progress, observer, threads=threads, lanes=ctl)
                for seed in mine if not ctl.stop.is_set()}

    pool = ThreadPoolExecutor(max_workers=n)
    futures = [pool.submit(lane, seeds[i::n]) for i in range(n)]
    done: dict[int, list[dict[str, Any]]] = {}
    try:
        wait(futures, return_when=FIRST_EXCEPTION)  # a lane's error stops the others at once
        for f in futures:
            done.update(f.result())
    except BaseException:  # Ctrl-C, SIGTERM, a failing lane: no lane or worker lives on
        ctl.abort()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return AugmentResult([r for seed in seeds for r in done[seed]])


def _repetition(task: Task, run_cfg: RunConfig, aug: AugmentConfig, pairs: Sequence[Choice],
                seed: int, on_stage: Callable[[str], None] | None, on_plan: Callable | None,
                on_progress: Callable | None, observer: Any, threads: int | None = None,
                lanes: _Lanes | None = None) -> list[dict[str, Any]]:
    """The rows of one repetition: its split, then every fraction × scenario."""
    rows: list[dict[str, Any]] = []
    names = task.schema.names
    split = task.resplit(seed)
    full_scores = evaluate(split.model, split)
    for fraction in aug.fractions:
        for scenario in aug.scenarios:
            if lanes is not None and lanes.stop.is_set():
                return rows
            if on_stage:
                on_stage(f"split {seed}, {fraction:.0%} removed, scenario {scenario}")
            scarce, _, removed_y = split.scarce(scenario, fraction, seed)
            scarce_scores = evaluate(scarce.model, scarce)
            want = budget(removed_y)
            tag = f"aug2:{scenario}:{fraction}:{seed}"
            base = {"fraction": fraction, "scenario": scenario, "seed": seed,
                    "n_removed": int(len(removed_y)), "n_budget": int(sum(want.values())),
                    "n_train": int(len(split.y_train)), "n_test": int(len(split.y_test))}
            for ref, Xa, ya in _reference_rows(scarce, removed_y, seed, aug.references):
                model = scarce.model if ref == "no-augmentation" else task.retrain(
                    pd.concat([scarce.X_train, Xa]), np.concatenate([scarce.y_train, ya]),
                    f"{tag}:{ref}")
                row = {**base, "method": ref, "cfs": "reference", "n_added": int(len(ya)),
                       "n_distinct": int(len(ya)), **evaluate(model, split)}
                _gains(row, full_scores, scarce_scores)
                rows.append(row)
            if not pairs:
                continue
            queries = augmentation_queries(scarce, removed_y, seed, aug.max_per_class)
            cfg = replace(run_cfg, out=stage_dir(run_cfg.out, fraction, scenario, seed),
                          seeds=(seed,), k=1, scarcity=(scenario, fraction, seed))
            execute(cfg, scarce, pairs, on_plan=on_plan, on_progress=on_progress,
                    queries=queries, observer=observer, threads=threads,
                    on_runner=lanes.register if lanes is not None else None)
            if lanes is not None and lanes.stop.is_set():
                return rows  # stopped mid-stage: its records are kept for --resume, not scored
            records = load_records(cfg.out)
            for method, variant, params in pairs:
                label = method_label(method, variant, params)
                recs = [r for r in records if r["method"] == method and r["variant"] == variant
                        and canonical_params(method, variant, r.get("params")) == params
                        and r["seed"] == seed and r["cfs"]]
                recs.sort(key=lambda r: (r["target"], str(r["query_id"])))
                C = pd.DataFrame([r["cfs"][0] for r in recs], columns=names, dtype=float)
                tgt = np.asarray([r["target"] for r in recs], int)
                valid = scarce.predict(C) == tgt if len(C) else np.zeros(0, bool)
                for which, keep in (("valid", valid), ("all", np.ones(len(C), bool))):
                    rng = np.random.default_rng([seed, int(round(fraction * 1000)),
                                                 ord(scenario), len(which)])
                    Xa, ya, distinct = fill_budget(C[keep].reset_index(drop=True),
                                                   tgt[keep], want, rng)
                    model = task.retrain(
                        pd.concat([scarce.X_train, Xa], ignore_index=True),
                        np.concatenate([scarce.y_train, ya]),
                        f"{tag}:{method}:{variant}:{which}" + (f":{label}" if params else ""),
                    ) if len(ya) else scarce.model
                    row = {**base, "method": label, "cfs": which,
                           "n_queries": int(len(queries)), "n_returned": int(len(C)),
                           "n_valid": int(valid.sum()), "n_added": int(len(ya)),
                           "n_distinct": int(distinct), **evaluate(model, split)}
                    _gains(row, full_scores, scarce_scores)
                    rows.append(row)
    return rows


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Deficits and per-method statistics (:func:`cfbench.score.augment_stats.aggregate`)."""
    return augment_stats.aggregate(rows)


def save(result: AugmentResult, out: Path, extra: dict[str, Any]) -> dict[str, Any]:
    doc = {**extra, "protocol": PROTOCOL, "rows": result.rows, "aggregate": aggregate(result.rows)}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "augment.json", doc)
    return doc


