"""The ``ai-readi`` dataset loader: a release folder (real or synthetic) to a labelled table.

Which data is used, in order: the ``data_dir`` option (``cfbench run --data-dir``), the
``CFBENCH_AI_READI_DIR`` environment variable, else a synthetic release generated on first use
under ``<cache>/ai-readi-synth/<hash of its parameters>``.  All three go through the same code.

The participant-level feature table is cached as Parquet under ``<cache>/ai-readi-features``,
keyed by the loader version and the size and mtime of every input file, together with the
data report (``cfbench data report`` prints it).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cfbench.core import phase
from cfbench.core.errors import UserError
from cfbench.core.machine import usable_cores
from cfbench.tasks.ai_readi.features import (
    CLINICAL_FEATURES,
    COVERAGE,
    SENSOR_FEATURES,
    clinical_features,
    participant_features,
)
from cfbench.tasks.ai_readi.layout import (
    CGM_DIR,
    ENV_VAR,
    GARMIN_DIR,
    GROUP_LABELS,
    GROUPS,
    MODALITIES,
    SITES,
    Release,
    open_release,
)
from cfbench.tasks.ai_readi.report import DataReport
from cfbench.tasks.ai_readi.synth import GENERATOR_VERSION, SynthParams, ensure_release
from cfbench.tasks.classifier import cache_dir
from cfbench.tasks.datasets import Dataset

LOADER_VERSION = "1"
LABELS = ("stress", "diabetes")
STRESS_THRESHOLD = 51.0  # Garmin: 0-25 rest, 26-50 low, 51-75 medium, 76-100 high
FEATURES = ["site", "study_group", "age"] + SENSOR_FEATURES + CLINICAL_FEATURES
CGM_FEATURES = [f for f in SENSOR_FEATURES if f.startswith("cgm_")]
GARMIN_FEATURES = [f for f in SENSOR_FEATURES if not f.startswith("cgm_")]
CLASS_NAMES = {
    "stress": {0: "low stress (rest/low band)", 1: "high stress (medium/high band)"},
    "diabetes": {0: "no diabetes (healthy or pre-diabetes)", 1: "type 2 diabetes (oral medication or insulin)"},
}


# --------------------------------------------------------------------------- source


def resolve_source(data_dir: str | os.PathLike | None, synth: SynthParams,
                   n_jobs: int = 1) -> tuple[Path, str]:
    """(release folder, provenance text): ``data_dir``, then $CFBENCH_AI_READI_DIR, then synthetic
    (written by ``n_jobs`` processes on first use)."""
    chosen = data_dir if data_dir not in (None, "") else os.environ.get(ENV_VAR) or None
    if chosen is not None:
        return Path(chosen).expanduser().resolve(), ""

    synth = synth.validate()
    blob = json.dumps({**synth.__dict__, "generator": GENERATOR_VERSION}, sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    dest = ensure_release(cache_dir() / "ai-readi-synth" / key, synth, n_jobs=n_jobs)
    # named relative to the cache, so the text (and a board holding it) is the same on every machine
    return dest, f"{synth.describe()} at $CFBENCH_CACHE/ai-readi-synth/{key}"


# --------------------------------------------------------------------------- table


def _participant_rows(items: list[tuple[int, str, dict[str, Path]]]) -> tuple[list[dict], DataReport]:
    rep = DataReport()
    rows = []
    for pid, site, files in items:
        feats = participant_features(pid, site, files, rep)
        rows.append({"participant_id": pid, **feats})
    return rows, rep


def _truthy(x: Any) -> bool | None:
    s = str(x).strip().lower()
    return True if s in ("true", "1", "yes") else False if s in ("false", "0", "no") else None


def build_table(release: Release, rep: DataReport, n_jobs: int = 1) -> pd.DataFrame:
    """One row per participant with every feature (NaN where the data do not allow it)."""
    parts = release.participants.sort_values("participant_id", kind="stable")
    rep.participants["listed in participants.tsv"] = len(parts) + len(parts.attrs.get("bad_ids", []))
    rep.issues.extend(release.issues)
    items = []
    flag_col = {CGM_DIR: "wearable_blood_glucose", GARMIN_DIR: "wearable_activity_monitor"}
    for row in parts.itertuples(index=False):
        pid = int(row.participant_id)
        files = {}
        for mod in MODALITIES:
            key = (pid, mod.key)
            if key in release.files:
                files[mod.key] = release.files[key]
            elif key in release.listed_missing:
                rep.file(mod.key, "listed but not on disk")
                rep.issue(release.listed_missing[key], "listed in a manifest but not found on disk")
            elif key in release.not_provided:
                rep.file(mod.key, "not provided (manifest)")
            else:
                flag = _truthy(getattr(row, flag_col[mod.datatype], ""))
                if flag is False:
                    rep.file(mod.key, "not provided (participants)")
                else:
                    rep.file(mod.key, "absent")
        items.append((pid, str(getattr(row, "clinical_site", "")), files))
    if n_jobs > 1 and len(items) > 1:
        chunks = [items[i::n_jobs * 4] for i in range(n_jobs * 4)]
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            results = list(pool.map(_participant_rows, chunks))
        rows = [r for res, _ in results for r in res]
        for _, sub in results:
            rep.merge(sub)
    else:
        rows, sub = _participant_rows(items)
        rep.merge(sub)
    table = pd.DataFrame(rows, columns=["participant_id"] + SENSOR_FEATURES + COVERAGE)
    table = table.sort_values("participant_id").reset_index(drop=True)

    meta = parts.set_index("participant_id")
    site_name = meta.get("clinical_site", pd.Series(dtype=str)).reindex(table.participant_id)
    group_name = meta.get("study_group", pd.Series(dtype=str)).reindex(table.participant_id)
    table.insert(1, "clinical_site", site_name.to_numpy())
    table.insert(2, "site", site_name.map({s: i for i, s in enumerate(SITES)}).to_numpy(dtype=float))
    table.insert(3, "study_group", group_name.map({g: i for i, g in enumerate(GROUPS)}).to_numpy(dtype=float))
    table.insert(4, "age", pd.to_numeric(meta.get("age", pd.Series(dtype=str)).reindex(table.participant_id),
                                         errors="coerce").to_numpy(dtype=float))
    tsv = str(release.root / "participants.tsv")
    for col, names, valid in (("site", site_name, SITES), ("study_group", group_name, GROUPS)):
        bad = table[col].isna()
        if bad.any():
            vals = sorted(set(map(str, names[bad.to_numpy()])))
            rep.issue(tsv, f"{int(bad.sum())} participants with unknown {col} {vals[:3]}; valid: {', '.join(valid)}")
    bad_age = table["age"].isna() | (table["age"] < 18) | (table["age"] > 110)
    if bad_age.any():
        rep.issue(tsv, f"{int(bad_age.sum())} participants with missing or implausible age (set missing)")
        table.loc[bad_age, "age"] = np.nan

    clin = clinical_features(release.root, rep)
    for c in CLINICAL_FEATURES:
        table[c] = clin[c].reindex(table.participant_id).to_numpy(dtype=float) if c in clin else np.nan
    no_data = table[SENSOR_FEATURES].isna().all(axis=1)
    for pid in table.loc[no_data, "participant_id"]:
        why = "no usable sensor data (no readable CGM or Garmin file with valid values)"
        rep.dropped[str(pid)] = why
        mine = [str(p) for (q, _), p in release.files.items() if q == pid]
        rep.issue(mine[0] if mine else tsv, f"participant {pid}: {why}; dropped")
    rep.participants["dropped: no usable sensor data"] = int(no_data.sum())
    table = table[~no_data].reset_index(drop=True)
    rep.participants["in feature table"] = len(table)
    return table


def _cache_paths(release: Release) -> tuple[Path, Path]:
    blob = json.dumps([LOADER_VERSION, release.version, release.stat_key()]).encode()
    key = hashlib.sha256(blob).hexdigest()[:24]
    base = cache_dir() / "ai-readi-features"
    return base / f"{key}.parquet", base / f"{key}.report.json"


def feature_table(path: str | os.PathLike, use_cache: bool = True, n_jobs: int = 1,
                  source: str = "") -> tuple[pd.DataFrame, DataReport, Release]:
    """The participant feature table of the release at ``path`` and its data report (cached)."""
    release = open_release(path)
    source = source or f"AI-READI release {release.version} at {release.container}"
    pq, rj = _cache_paths(release)
    if use_cache and pq.is_file() and rj.is_file():
        try:
            table = pd.read_parquet(pq)
            rep = DataReport.from_dict(json.loads(rj.read_text()))
            rep.source = source
            return table, rep, release
        except Exception:  # a torn write from a killed run: rebuild
            pass
    rep = DataReport(source=source, version=release.version)
    phase.say(f"computing the AI-READI feature table from {len(release.participants)} participants "
              "(first use only)")
    table = build_table(release, rep, n_jobs=n_jobs)
    if use_cache:
        pq.parent.mkdir(parents=True, exist_ok=True)
        tmp = pq.with_suffix(f".tmp{os.getpid()}")
        table.to_parquet(tmp, index=False)
        os.replace(tmp, pq)
        tmp = rj.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(rep.to_json())
        os.replace(tmp, rj)
    return table, rep, release


# --------------------------------------------------------------------------- dataset


def label_and_impute(table: pd.DataFrame, rep: DataReport, label: str,
                     stress_threshold: float) -> tuple[pd.DataFrame, np.ndarray]:
    """Drop unlabelled participants and those without CGM or without Garmin data, fill the
    remaining gaps with the cohort median (counted per feature), drop all-missing columns."""
    if label == "stress":
        y = table["stress_mean"] >= stress_threshold
        unlabelled = table["stress_mean"].isna()
        why = f"fewer than the minimum valid stress readings (label {label!r} undefined)"
    else:
        y = table["study_group"] >= 2
        unlabelled = table["study_group"].isna()
        why = f"unknown study_group (label {label!r} undefined)"
    for pid in table.loc[unlabelled, "participant_id"]:
        rep.dropped[str(pid)] = why
    rep.participants[f"dropped: unlabelled for {label!r}"] = int(unlabelled.sum())
    # a row needs both devices: imputing a whole device's features would invent the participant
    no_cgm = table[CGM_FEATURES].isna().all(axis=1) & ~unlabelled
    no_garmin = table[GARMIN_FEATURES].isna().all(axis=1) & ~unlabelled & ~no_cgm
    for mask, why in ((no_cgm, "no usable CGM data"), (no_garmin, "no usable Garmin data")):
        for pid in table.loc[mask, "participant_id"]:
            rep.dropped[str(pid)] = why
        rep.participants[f"dropped: {why}"] = int(mask.sum())
    keep = ~(unlabelled | no_cgm | no_garmin)
    X = table.loc[keep, ["participant_id"] + FEATURES].reset_index(drop=True)
    y = y[keep].to_numpy(dtype=int)
    rep.imputed = {}
    for col in FEATURES:
        n = int(X[col].isna().sum())
        if n == len(X):
            X = X.drop(columns=col)
            rep.notes.append(f"{col}: no participant has a value in this release; column left out")
        elif n:
            X[col] = X[col].fillna(float(X[col].median()))
            rep.imputed[col] = n
    rep.participants[f"rows for label {label!r}"] = len(X)
    return X, y


def _check_options(label: str, stress_threshold: float, n_jobs: int) -> None:
    if label not in LABELS:
        raise UserError(f"ai-readi: label={label!r}; valid choices: {', '.join(LABELS)}")
    if isinstance(stress_threshold, bool) or not isinstance(stress_threshold, (int, float)) \
            or not 0 < stress_threshold <= 100:
        raise UserError(f"ai-readi: stress_threshold={stress_threshold!r}; expected a number in (0, 100]")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 0:
        raise UserError(f"ai-readi: n_jobs={n_jobs!r}; expected 0 (every core) or a positive integer")


def _warn(rep: DataReport, folder: Path) -> None:
    if not rep.issues:
        return
    for path, msg in rep.issues[:5]:
        warnings.warn(f"AI-READI: {path}: {msg}", stacklevel=3)
    warnings.warn(
        f"AI-READI: {len(rep.issues)} problem(s) in {folder}; the rest loaded. "
        f"See 'cfbench data report --source {folder}'.", stacklevel=3)


def load_ai_readi(
    data_dir: str | None = None,
    label: str = "stress",
    stress_threshold: float = STRESS_THRESHOLD,
    participants: int = SynthParams.participants,
    days: int = SynthParams.days,
    release: str = SynthParams.release,
    seed: int = SynthParams.seed,
    garmin_interval_min: int = SynthParams.garmin_interval_min,
    n_jobs: int = 0,
    use_cache: bool = True,
) -> Dataset:
    """AI-READI participants labelled by stress (Garmin band) or diabetes (study group).

    ``participants``/``days``/``release``/``seed``/``garmin_interval_min`` only shape the synthetic
    release used when neither ``data_dir`` nor $CFBENCH_AI_READI_DIR names a folder.  ``n_jobs``
    processes (0: every usable core) write that release and extract the features on first use;
    the result is the same for any count.
    """
    _check_options(label, stress_threshold, n_jobs)
    if n_jobs == 0:

        n_jobs = usable_cores()
    synth = SynthParams(participants, days, release, seed, garmin_interval_min)
    folder, synth_text = resolve_source(data_dir, synth, n_jobs)
    table, rep, rel = feature_table(folder, use_cache=use_cache, n_jobs=n_jobs, source=synth_text)
    X, y = label_and_impute(table, rep, label, float(stress_threshold))
    _warn(rep, folder)
    if len(np.unique(y)) < 2:
        raise UserError(
            f"ai-readi: label {label!r} has a single class in {folder} ({len(y)} participants); "
            "cannot train a classifier"
        )
    source = rep.source
    if not synth_text:
        source = f"AI-READI release {rel.version} at {rel.container} ({len(X)} participants used)"
    if label == "stress":
        source += f"; label: mean valid Garmin stress >= {stress_threshold:g}"
    else:
        source += "; label: study_group oral-medication or insulin"
    return Dataset(
        X=X,
        y=y,
        class_names=dict(CLASS_NAMES[label]),
        source=source,
        notes={"report": rep.to_dict(), "release_version": rel.version, "folder": str(folder),
               "synthetic": bool(synth_text)},
    )


def describe_levels() -> dict[str, Iterable[str]]:
    """Code -> label lists of the categorical columns (for docs and task specs)."""
    return {"site": SITES, "study_group": GROUP_LABELS}
