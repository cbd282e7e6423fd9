"""The CI-tracked smoke leaderboard: a small deterministic configuration re-run on every CI.

``leaderboard/smoke.suite.toml`` is a suite file (``cfbench.execution.suite``) listing the runs and, in
``[check]``, the tolerances; ``leaderboard/smoke/<task>.json`` holds their committed numbers.  ``check`` re-runs them and fails when a number moves by more than
``atol + rtol * |committed|``.  Wall-clock metrics are not compared.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfbench import entry
from cfbench.core.errors import UserError
from cfbench.core.strict_json import dumps, read_json
from cfbench.execution import augment, config
from cfbench.execution.executor import executor_name
from cfbench.execution.suite import AUGMENT, load_suite

SUITE = "smoke.suite.toml"
IGNORED = ("seconds_median", "seconds_p95")


@dataclass(frozen=True)
class SmokeRun:
    task: str
    methods: str
    n_queries: int
    seeds: tuple[int, ...]
    k: int
    timeout: float
    augment_max_per_class: int | None
    augment_seeds: tuple[int, ...] = ()


def load_config(path: Path) -> tuple[list[SmokeRun], float, float]:
    """The smoke runs of a suite file and its ``[check]`` tolerances (atol, rtol).

    The smoke check runs each task with the suite's settings and, when the run has an
    ``augment`` table, the augmentation with its ``max_per_class`` and ``seeds`` (at least two
    repetitions); other augmentation settings would not be honoured, so they are refused.
    """

    suite = load_suite(Path(path))
    runs = []
    for r in suite.runs:
        s, a = r.settings, r.augment
        if a is not None:
            ignored = [k for k in ("scenarios", "fraction", "timeout")
                       if a[k] != AUGMENT[k][1]]
            ignored += ["methods"] * (a["methods"] != r.methods)
            if ignored:
                raise UserError(f"{path}: run {r.name!r}: the smoke check supports only "
                                f"augment.max_per_class, not augment.{ignored[0]}")
        extra = sorted(set(s) - {"seeds", "n_queries", "k", "timeout"})
        if extra:
            raise UserError(f"{path}: run {r.name!r}: the smoke check does not support {extra[0]!r}")
        if s.get("n_queries") is None:
            raise UserError(f"{path}: run {r.name!r}: n_queries: the smoke check needs a number")
        aug_seeds = tuple(a["seeds"] or s.get("seeds", (0,))) if a else ()
        if a and len(aug_seeds) < 2:
            raise UserError(f"{path}: run {r.name!r}: augment.seeds: the augmentation needs at "
                            f"least 2 repetitions, got {list(aug_seeds)}; e.g. seeds = [0, 1]")
        runs.append(SmokeRun(r.task, r.methods, int(s["n_queries"]), tuple(s.get("seeds", (0,))),
                             int(s.get("k", 1)), float(s.get("timeout", 60)),
                             a["max_per_class"] if a else None, aug_seeds))
    return runs, suite.check["atol"], suite.check["rtol"]


def run_smoke(run: SmokeRun, workdir: Path) -> dict[str, Any]:
    """Run one smoke configuration; returns {"summary": ..., "augmentation": ...}."""

    out = workdir / run.task
    cfg = config.RunConfig(task=run.task, methods=run.methods, seeds=run.seeds,
                           n_queries=run.n_queries, k=run.k, timeout=run.timeout,
                           budget=run.timeout,  # the budget the committed numbers used
                           out=out, executor=executor_name(None))  # $CFBENCH_EXECUTOR, else local
    done = entry.run(cfg)
    summary = done.summary
    result: dict[str, Any] = {"config": run.__dict__, "classifier": summary["classifier"],
                              "methods": summary["methods"], "augmentation": None}
    if run.augment_max_per_class:
        acfg = augment.AugmentConfig(seeds=run.augment_seeds, max_per_class=run.augment_max_per_class)
        res = augment.run_augmentation(done.task, cfg, acfg, done.pairs)
        result["augmentation"] = augment.aggregate(res.rows)
    return result


def flatten(obj: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves by path; augmentation rows keyed by scenario/method/cfs."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in IGNORED or k == "config":
                continue
            out.update(flatten(v, f"{prefix}/{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict) and "scenario" in item:
                names = [k for k in ("fraction", "scenario", "method", "cfs") if k in item]
                key = "|".join(str(item[k]) for k in names)
                out.update(flatten({k: v for k, v in item.items() if k not in names},
                                   f"{prefix}/{key}"))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix] = float(obj)
    elif obj is None and prefix:
        out[prefix] = math.nan  # an undefined number, written as null in strict JSON
    return out


def compare(new: dict[str, Any], old: dict[str, Any], atol: float, rtol: float) -> list[str]:
    """Lines describing every number outside tolerance, and keys that appeared or vanished."""
    a, b = flatten(new), flatten(old)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key not in a:
            diffs.append(f"- {key}: committed {b[key]:.6g}, missing now")
        elif key not in b:
            diffs.append(f"+ {key}: new {a[key]:.6g}, not in the committed results")
        else:
            x, y = a[key], b[key]
            if math.isnan(x) and math.isnan(y):
                continue
            if math.isnan(x) or math.isnan(y) or abs(x - y) > atol + rtol * abs(y):
                diffs.append(f"~ {key}: committed {y:.6g}, now {x:.6g} (Δ {x - y:+.3g})")
    return diffs


def check(config: Path, committed_dir: Path, write: bool = False) -> tuple[bool, list[str]]:
    """Re-run every smoke configuration and compare (or, with ``write``, store the results)."""
    runs, atol, rtol = load_config(config)
    report: list[str] = [f"tolerance: |now - committed| <= {atol} + {rtol} * |committed|"]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            result = run_smoke(run, Path(tmp))
            path = Path(committed_dir) / f"{run.task}.json"
            if write:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(dumps(result, indent=2, sort_keys=True) + "\n")
                report.append(f"{run.task}: wrote {path}")
                continue
            if not path.exists():
                ok = False
                report.append(f"{run.task}: no committed results at {path} (run with --write)")
                continue
            diffs = compare(result, read_json(path), atol, rtol)
            if diffs:
                ok = False
                report.append(f"{run.task}: {len(diffs)} numbers differ from {path}:")
                report.extend("  " + d for d in diffs)
            else:
                report.append(f"{run.task}: {len(flatten(result))} numbers match {path}")
    return ok, report


def validate_boards(board_dir: Path, schema_path: Path) -> list[str]:
    """Schema errors of every ``<task>.json`` board in ``board_dir`` (empty when all valid)."""
    try:
        import jsonschema  # a core dependency that only validating uses: imported on first use
    except ImportError as exc:
        raise UserError(f"--validate needs the jsonschema package, which cannot be imported "
                        f"({exc}); install it: pip install 'jsonschema>=4'") from None

    schema = read_json(schema_path)
    errors = []
    boards = sorted(p for p in Path(board_dir).glob("*.json") if p.name != Path(schema_path).name)
    if not boards:
        errors.append(f"{board_dir}: no leaderboard JSON files found")
    for p in boards:
        try:
            doc = read_json(p)
        except UserError as exc:
            errors.append(str(exc))
            continue
        for err in jsonschema.Draft202012Validator(schema).iter_errors(doc):
            where = "/".join(map(str, err.absolute_path)) or "(root)"
            errors.append(f"{p}: {where}: {err.message}")
        if not isinstance(doc, dict):
            continue  # the schema error above says what it should be
        for extra in (f"{doc.get('task')}.md", f"{doc.get('task')}-metrics.svg",
                      f"{doc.get('task')}-features.svg"):
            if not (p.parent / extra).exists():
                errors.append(f"{p}: companion file {extra} is missing")
    return errors
