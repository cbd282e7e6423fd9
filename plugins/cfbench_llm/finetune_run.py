"""What ``cfbench finetune`` runs: the adapter for a task (fine-tuned, or found in the cache),
measured by ``llm-finetuned`` on held-out training rows.

Kept apart from ``finetune`` because the measurement runs the generator (``generator.LocalLLM``),
which itself loads adapters through ``finetune``: this module sits above both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cfbench.api import FitContext, Task, UserError, changed, phase, resolve_spec
from cfbench_llm import models
from cfbench_llm.finetune import ensure_adapter, heldout_rows, teacher_pairs
from cfbench_llm.generator import LocalLLM
from cfbench_llm.prompts import PromptBuilder, load_templates, value_formats
from cfbench_llm.settings import Settings


def heldout_validity(context: FitContext, params: dict[str, Any], info: dict[str, Any], n: int) -> dict[str, Any]:
    """What the adapter learnt, on ``n`` training rows that were not teacher pairs.

    ``llm-finetuned`` (with the cached adapter for ``params``) writes one counterfactual per row
    towards the class the task's classifier does not predict; returned are the share of rows
    whose CF the classifier puts in that class (a row without a CF counts as invalid) and the
    mean number of features changed (``cfbench.score.metrics.changed``, as the benchmark counts them)
    over all CFs and over the valid ones.
    """
    names = context.schema.names
    rows = info.get("heldout_rows")
    if rows is None:  # an adapter trained before held-out rows were recorded
        rows = heldout_rows(context, teacher_pairs(context, Settings.from_params(params))[0])
    rows = np.asarray(rows, dtype=int)[:n]
    if not len(rows):
        raise UserError("no training row is left over for the held-out check (every row was a teacher pair)")
    Q = context.X_train[names].iloc[rows].reset_index(drop=True)
    target = 1 - np.asarray(context.predict(Q), dtype=int)
    t0 = time.perf_counter()
    gen = LocalLLM("finetuned", **{k: v for k, v in params.items() if k != "force_finetune"}).fit(context)
    res = gen.generate(Q, target, 1, 1e9)
    found = [j for j, r in enumerate(res) if r.status == "ok" and r.cfs is not None and len(r.cfs)]
    X = Q.to_numpy(float)
    C = np.stack([res[j].cfs[names].to_numpy(float)[0] for j in found]) if found else np.empty((0, len(names)))
    valid = np.asarray(context.predict(pd.DataFrame(C, columns=names))) == target[found] if found else np.zeros(0, bool)
    span = np.ptp(context.X_train[names].to_numpy(float), axis=0)
    n_changed = changed(X[found], C, span).sum(axis=1)
    return {
        "asked": n,
        "rows": len(rows),
        "found": len(found),
        "valid": int(valid.sum()),
        "validity": float(valid.sum() / len(rows)),
        "changed_mean": float(n_changed.mean()) if len(found) else None,
        "changed_mean_valid": float(n_changed[valid].mean()) if valid.any() else None,
        "seconds": time.perf_counter() - t0,
    }


def run_finetune(task_name: str, params: dict[str, Any], seed: int = 0, data_dir: str | None = None,
                 log: Any = print, heldout: int = 0) -> tuple[Path, dict[str, Any]]:
    """What ``cfbench finetune`` does: load the task, then fine-tune (or find the cached adapter);
    with ``heldout`` > 0, also measure it on that many held-out training rows (stored in its
    ``meta.json`` under ``"heldout"``, and reused while ``heldout`` is the same)."""
    settings = Settings.from_params(params)
    spec = resolve_spec(task_name)
    task = Task.load(spec, dataset_options={"data_dir": data_dir} if data_dir else None)
    ctx = task.fit_context(seed)
    formats = value_formats(ctx.schema, ctx.X_train, settings.digits)
    builder = PromptBuilder(ctx.schema, formats, ctx.class_names, ctx.task_name, ctx.task_description,
                            load_templates(settings.prompt_dir), settings.row_style, settings.sep)
    path, info = ensure_adapter(ctx, settings, builder, log=log)
    if heldout > 0 and (info.get("heldout") or {}).get("asked") != heldout:
        phase.say(f"measuring the adapter on {heldout} held-out training rows")
        info["heldout"] = heldout_validity(ctx, params, info, heldout)
        with models.file_lock(path.with_name(path.name + ".lock")):
            (path / "meta.json").write_text(json.dumps(info, indent=1))
    return path, info
