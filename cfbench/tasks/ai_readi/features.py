"""Parse one participant's raw AI-READI files and reduce them to participant-level features.

Every record read is either used or counted under one drop reason in the ``DataReport``
(sentinels, out-of-range values, nulls, wrong types, bad or duplicated timestamps).  A file that
cannot be used at all (corrupt JSON, wrong structure) is reported by name and its features are
left missing; the participant's other files still load.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cfbench.tasks.ai_readi.layout import SITE_TZ
from cfbench.tasks.ai_readi.report import DataReport

MIN_CGM_READINGS = 144  # 12 h of 5-min readings before CGM summaries are computed
MIN_WEAR_HOURS = 10.0  # a "valid day" has >= 10 h with a non-zero heart-rate reading
MIN_NIGHT_SLEEP_H = 2.0  # nights with less recorded sleep are treated as fragments
MIN_STRESS_READINGS = 30  # valid stress readings needed for a participant's mean stress
PERIOD = (pd.Timestamp("2015-01-01", tz="UTC"), pd.Timestamp("2035-01-01", tz="UTC"))
SLEEP_STAGES = ("light", "deep", "rem", "awake", "unknown")
SURVEY_CODES = (555, 777, 888, 999, 99)

SENSOR_FEATURES = [
    "cgm_mean", "cgm_sd", "cgm_cv", "cgm_tir", "cgm_tar", "cgm_tbr",
    "hr_mean", "hr_resting", "rr_mean", "spo2_mean",
    "steps_per_day", "active_kcal_per_day", "sleep_hours", "deep_sleep_min", "stress_mean",
]
CLINICAL_FEATURES = ["hba1c", "bmi", "cesd10"]
COVERAGE = ["cgm_readings", "wear_days", "sleep_nights", "stress_readings"]
UNITS = {
    "age": "years", "cgm_mean": "mg/dL", "cgm_sd": "mg/dL", "cgm_cv": "%", "cgm_tir": "% of readings",
    "cgm_tar": "% of readings", "cgm_tbr": "% of readings", "hr_mean": "beats/min",
    "hr_resting": "beats/min", "rr_mean": "breaths/min", "spo2_mean": "%", "steps_per_day": "steps/day",
    "active_kcal_per_day": "kcal/day", "sleep_hours": "h/night", "deep_sleep_min": "min/night",
    "stress_mean": "Garmin stress score 0-100", "hba1c": "%", "bmi": "kg/m^2", "cesd10": "points 0-30",
}


class FileProblem(Exception):
    """A file that cannot be used at all; the message says why."""


def read_json(path: Path) -> Any:
    """Parse with the standard library, which accepts the bare ``NaN`` tokens of real files."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FileProblem(f"cannot read file ({exc.strerror or exc})") from None
    if not raw.strip():
        raise FileProblem("file is empty (0 bytes of JSON)")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FileProblem(
            f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): truncated or corrupt"
        ) from None
    except UnicodeDecodeError:
        raise FileProblem("not valid JSON (not UTF-8 text)") from None


def body_list(doc: Any, key: str, bare_list_ok: bool = False) -> list:
    """The record list under ``body.<key>``; v1 CGM files may hold a bare list instead."""
    if bare_list_ok and isinstance(doc, list):
        return doc
    if not isinstance(doc, dict):
        raise FileProblem(f"expected a JSON object with 'header' and 'body', got {type(doc).__name__}")
    body = doc.get("body")
    if bare_list_ok and isinstance(body, list):
        return body
    if not isinstance(body, dict):
        raise FileProblem(f"expected 'body' to be an object holding {key!r}, got {type(body).__name__}")
    if key not in body:
        raise FileProblem(f"no body.{key} list (body keys: {', '.join(map(str, body)) or 'none'})")
    recs = body[key]
    if not isinstance(recs, list):
        raise FileProblem(f"body.{key} should be a list of records, got {type(recs).__name__}")
    return recs


def _dig(rec: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        if not isinstance(rec, dict) or k not in rec:
            raise KeyError(k)
        rec = rec[k]
    return rec


def extract(recs: list, fields: dict[str, tuple[str, ...]], mod: str, rep: DataReport) -> dict[str, list]:
    """Pull named fields out of every record; records missing a field are counted and skipped."""
    rep.rec(mod, "read", len(recs))
    try:  # fast path: every record well formed
        return {name: _column(recs, p) for name, p in fields.items()}
    except (KeyError, TypeError, IndexError):
        pass
    out: dict[str, list] = {name: [] for name in fields}
    bad = 0
    for r in recs:
        try:
            got = {name: _dig(r, p) for name, p in fields.items()}
        except KeyError:
            bad += 1
            continue
        for name, v in got.items():
            out[name].append(v)
    rep.rec(mod, "malformed record", bad)
    return out


def _column(recs: list, p: tuple[str, ...]) -> list:
    if len(p) == 1:
        a = p[0]
        return [r[a] for r in recs]
    if len(p) == 2:
        a, b = p
        return [r[a][b] for r in recs]
    if len(p) == 3:
        a, b, c = p
        return [r[a][b][c] for r in recs]
    return [_dig(r, p) for r in recs]


def parse_times(ts: list) -> np.ndarray:
    """ISO timestamps (with or without ``T``/``Z``; v1 used ``YYYY-MM-DD hh:mm:ss``) to UTC seconds.

    Unparseable or non-string values become -1 (callers count and drop them).
    """
    fast = _parse_uniform(ts)
    if fast is not None:
        return fast
    s = pd.Series(ts, dtype=object)
    s = s.where(s.map(type).eq(str), None)
    dt = pd.to_datetime(s, format="ISO8601", utc=True, errors="coerce")
    out = np.full(len(s), -1, dtype=np.int64)
    ok = dt.notna().to_numpy()
    out[ok] = dt[ok].dt.as_unit("s").astype("int64").to_numpy()
    return out


def _parse_uniform(ts: list) -> np.ndarray | None:
    """Fast path for the usual case: every value ``YYYY-MM-DDThh:mm:ssZ`` (or v1's space form)."""
    if not ts:
        return np.zeros(0, dtype=np.int64)
    try:
        arr = np.array(ts)
    except (ValueError, TypeError):
        return None
    if arr.dtype.kind != "U" or arr.ndim != 1:
        return None
    width = arr.dtype.itemsize // 4
    chars = arr.view("U1").reshape(len(arr), width)
    if width == 20 and (chars[:, 19] == "Z").all():
        arr = arr.astype("U19")
    elif width != 19 or (chars[:, 18] == "").any():
        return None
    if not ((chars[:, 4] == "-") & (chars[:, 7] == "-") & (chars[:, 13] == ":")).all():
        return None
    try:
        return arr.astype("datetime64[s]").astype(np.int64)
    except ValueError:
        return None


_LO, _HI = (int(PERIOD[0].timestamp()), int(PERIOD[1].timestamp()))


def numeric(vals: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(values, is_null, is_empty_string, is_non_numeric); numeric strings are accepted."""
    s = pd.Series(vals)
    if s.dtype.kind in "iuf":  # all numbers (bare NaN tokens arrive as float NaN)
        num = s.to_numpy(dtype=float, copy=True)
        none = np.zeros(len(num), bool)
        return num, np.isnan(num), none, none
    s = s.astype(object)
    null = s.isna().to_numpy()
    try:
        num = np.array(pd.to_numeric(s, errors="coerce"), dtype=float)
    except (TypeError, ValueError):
        num = np.array([_num(v) for v in vals], dtype=float)
    is_bool = np.fromiter((isinstance(v, bool) for v in vals), bool, len(vals))
    num[is_bool] = np.nan
    empty = np.fromiter((isinstance(v, str) and not v.strip() for v in vals), bool, len(vals))
    nonnum = np.isnan(num) & ~null & ~empty
    return num, null, empty, nonnum


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return np.nan


class Cleaner:
    """Applies drop rules in order, counting each dropped record under exactly one reason."""

    def __init__(self, mod: str, rep: DataReport, n: int):
        self.mod, self.rep = mod, rep
        self.keep = np.ones(n, dtype=bool)

    def drop(self, mask: np.ndarray, reason: str) -> None:
        mask = np.asarray(mask, dtype=bool)
        hit = mask & self.keep
        self.rep.rec(self.mod, reason, int(hit.sum()))
        self.keep &= ~mask

    def times(self, t: np.ndarray) -> None:
        self.drop(t < 0, "bad timestamp")
        self.drop((t >= 0) & ((t < _LO) | (t >= _HI)), "timestamp outside 2015-2035")

    def dedupe(self, t: np.ndarray) -> None:
        idx = np.flatnonzero(self.keep)
        _, first = np.unique(t[idx], return_index=True)
        dup = np.ones(len(idx), bool)
        dup[first] = False
        mask = np.zeros(len(self.keep), bool)
        mask[idx[dup]] = True
        self.drop(mask, "duplicate timestamp")

    def finish(self) -> np.ndarray:
        self.rep.rec(self.mod, "used", int(self.keep.sum()))
        return self.keep


def point_series(
    recs: list, mod: str, vkey: tuple[str, ...], rep: DataReport,
    rules: list[tuple[Callable[[np.ndarray], np.ndarray], str]],
) -> tuple[np.ndarray, np.ndarray]:
    """(UTC seconds, values) of a ``date_time`` modality after nulls, sentinels and duplicates."""
    f = extract(recs, {"v": vkey, "t": ("effective_time_frame", "date_time")}, mod, rep)
    t = parse_times(f["t"])
    v, null, empty, nonnum = numeric(f["v"])
    c = Cleaner(mod, rep, len(t))
    c.times(t)
    c.drop(null, "null or NaN value")
    c.drop(empty | nonnum, "non-numeric value")
    for rule, reason in rules:
        with np.errstate(invalid="ignore"):
            c.drop(rule(v), reason)
    c.dedupe(t)
    keep = c.finish()
    return t[keep], v[keep]


def local_seconds(t: np.ndarray, tz: str) -> np.ndarray:
    """UTC seconds to local wall-clock seconds (DST-aware) for day and night boundaries."""
    if not len(t):
        return t
    idx = pd.DatetimeIndex(t.astype("datetime64[s]")).tz_localize("UTC").tz_convert(tz)
    return idx.tz_localize(None).as_unit("s").asi8


# --------------------------------------------------------------------------- modalities


def cgm_features(doc: Any, rep: DataReport) -> dict[str, float]:
    """Mean, SD, CV and time in/above/below range from Dexcom readings ("Low" = 40, "High" = 400)."""
    recs = body_list(doc, "cgm", bare_list_ok=True)
    f = extract(recs, {"v": ("blood_glucose", "value"),
                       "t": ("effective_time_frame", "time_interval", "start_date_time")}, "cgm", rep)
    t = parse_times(f["t"])
    raw = f["v"]
    low = np.fromiter((isinstance(x, str) and x.strip().lower() == "low" for x in raw), bool, len(raw))
    high = np.fromiter((isinstance(x, str) and x.strip().lower() == "high" for x in raw), bool, len(raw))
    v, null, empty, nonnum = numeric(raw)
    c = Cleaner("cgm", rep, len(t))
    c.times(t)
    c.drop(null, "null or NaN value")
    c.drop((empty | nonnum) & ~low & ~high, "non-numeric value")
    with np.errstate(invalid="ignore"):
        c.drop(~low & ~high & ((v < 39) | (v > 401)), "out of range (<39 or >401)")
    c.dedupe(t)
    keep = c.finish()
    rep.rec("cgm", "note:'Low' read as 40 mg/dL", int((low & keep).sum()))
    rep.rec("cgm", "note:'High' read as 400 mg/dL", int((high & keep).sum()))
    g = np.where(low, 40.0, np.where(high, 400.0, v))[keep]
    out = {"cgm_readings": float(len(g))}
    if len(g) < MIN_CGM_READINGS:
        return out
    mean, sd = float(g.mean()), float(g.std(ddof=1))
    out.update(cgm_mean=mean, cgm_sd=sd, cgm_cv=100 * sd / mean,
               cgm_tir=100 * float(((g >= 70) & (g <= 180)).mean()),
               cgm_tar=100 * float((g > 180).mean()), cgm_tbr=100 * float((g < 70).mean()))
    return out


def heart_rate(doc: Any, rep: DataReport, tz: str) -> tuple[dict[str, float], np.ndarray | None]:
    """Mean HR, resting HR (lowest 30-min mean 03:00-07:00 local, median over nights), wear days.

    A 30-min slot counts when it holds at least half the readings the file's sampling rate gives.
    """
    t, v = point_series(body_list(doc, "heart_rate"), "heart_rate", ("heart_rate", "value"), rep, [
        (lambda v: v == 0, "0 (off wrist or charging)"),
        (lambda v: (v < 25) | (v > 250), "out of range (<25 or >250)"),
    ])
    out: dict[str, float] = {}
    if not len(v):
        return out, None
    out["hr_mean"] = float(v.mean())
    loc = local_seconds(t, tz)
    hour = (loc % 86400) / 3600
    night = (hour >= 3) & (hour < 7)
    if night.any():
        df = pd.DataFrame({"slot": loc[night] // 1800, "day": loc[night] // 86400, "v": v[night]})
        slots = df.groupby(["day", "slot"])["v"].agg(["mean", "size"])
        step = float(np.median(np.diff(t))) if len(t) > 1 else 60.0
        need = max(1.0, 0.5 * 1800 / max(step, 1.0))  # half the readings a 30-min slot should hold
        slots = slots[slots["size"] >= need]
        if len(slots):
            out["hr_resting"] = float(slots.groupby(level="day")["mean"].min().median())
    # wear: distinct 15-min slots with a valid reading, per local day
    slot15 = np.unique(loc // 900)
    days, counts = np.unique(slot15 // 96, return_counts=True)
    valid_days = days[counts * 0.25 >= MIN_WEAR_HOURS]
    out["wear_days"] = float(len(valid_days))
    return out, valid_days


def simple_mean(doc: Any, rep: DataReport, mod: str, body: str, vkey: tuple[str, ...],
                rules: list, name: str, min_n: int = 1) -> dict[str, float]:
    t, v = point_series(body_list(doc, body), mod, vkey, rep, rules)
    out: dict[str, float] = {}
    if len(v) >= min_n:
        out[name] = float(v.mean())
    return out


STRESS_RULES = [
    (lambda v: v == -1, "-1 (not at rest)"),
    (lambda v: v == -2, "-2 (unknown/off wrist)"),
    (lambda v: (v < 0) | (v > 100), "out of range (not 0-100)"),
]
RESP_RULES = [
    (lambda v: v == -1, "-1 (invalid)"),
    (lambda v: v == -2, "-2 (invalid/off wrist)"),
    (lambda v: (v <= 0) | (v > 60), "out of range (<=0 or >60)"),
]
SPO2_RULES = [
    (lambda v: v == 0, "0 (sentinel)"),
    (lambda v: v > 100, "above 100 %"),
    (lambda v: v < 50, "below 50 %"),
]


def stress(doc: Any, rep: DataReport) -> dict[str, float]:
    t, v = point_series(body_list(doc, "stress"), "stress", ("stress", "value"), rep, STRESS_RULES)
    out = {"stress_readings": float(len(v))}
    if len(v) >= MIN_STRESS_READINGS:
        out["stress_mean"] = float(v.mean())
    return out


def _day_mean(day_of_value: np.ndarray, values: np.ndarray, valid_days: np.ndarray | None) -> float:
    """Mean daily total over valid wear days (days without records count as 0)."""
    if valid_days is None:  # no heart-rate file: days with any recorded movement or energy
        valid_days = np.unique(day_of_value[values > 0])
    if not len(valid_days):
        return np.nan
    s = pd.Series(values).groupby(day_of_value).sum()
    return float(s.reindex(valid_days, fill_value=0).mean())


def steps(doc: Any, rep: DataReport, tz: str, valid_days: np.ndarray | None) -> dict[str, float]:
    """Steps per valid day; each interval's steps count on the local day it starts."""
    f = extract(body_list(doc, "activity"), {
        "v": ("base_movement_quantity", "value"),
        "t": ("effective_time_frame", "time_interval", "start_date_time")}, "activity", rep)
    t = parse_times(f["t"])
    v, null, empty, nonnum = numeric(f["v"])
    c = Cleaner("activity", rep, len(t))
    c.times(t)
    c.drop(null, "null or NaN value")
    c.drop(empty, "empty string value")
    c.drop(nonnum, "non-numeric value")
    with np.errstate(invalid="ignore"):
        c.drop((v < 0) | (v > 60000), "out of range (<0 or >60000 per interval)")
    c.dedupe(t)
    keep = c.finish()
    strings = np.fromiter((isinstance(x, str) for x in f["v"]), bool, len(f["v"]))
    rep.rec("activity", "note:numeric string value", int((strings & keep).sum()))
    day = local_seconds(t[keep], tz) // 86400
    val = _day_mean(day, v[keep], valid_days)
    return {} if np.isnan(val) else {"steps_per_day": val}


def calories(doc: Any, rep: DataReport, tz: str, valid_days: np.ndarray | None) -> dict[str, float]:
    """Active kcal per valid day from the resetting counter (v2+ ``calories_value``, v1 ``duration``)."""
    recs = body_list(doc, "activity")
    key = "calories_value"
    for r in recs[:50]:
        if isinstance(r, dict) and ("calories_value" in r or "duration" in r):
            key = "calories_value" if "calories_value" in r else "duration"
            break
    f = extract(recs, {"v": (key, "value"), "t": ("effective_time_frame", "date_time")}, "calorie", rep)
    t = parse_times(f["t"])
    v, null, empty, nonnum = numeric(f["v"])
    c = Cleaner("calorie", rep, len(t))
    c.times(t)
    c.drop(null, "null or NaN value")
    c.drop(empty | nonnum, "non-numeric value")
    with np.errstate(invalid="ignore"):
        c.drop((v < 0) | (v > 10000), "out of range (<0 or >10000)")
    c.dedupe(t)
    keep = c.finish()
    t, v = t[keep], v[keep]
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    # increments of the counter; after a reset (a drop) the counter restarted from 0
    inc = np.diff(v, prepend=0.0)
    reset = inc < 0
    inc[reset] = v[reset]
    rep.rec("calorie", "note:counter resets", int(reset.sum()))
    day = local_seconds(t, tz) // 86400
    val = _day_mean(day, inc, valid_days)
    return {} if np.isnan(val) else {"active_kcal_per_day": val}


def sleep(doc: Any, rep: DataReport, tz: str) -> dict[str, float]:
    """Hours asleep (light+deep+rem) and deep minutes per night; v1 files carry hours, no stages."""
    recs = body_list(doc, "sleep")
    staged = True
    for r in recs[:50]:
        if isinstance(r, dict) and ("sleep_stage_state" in r or "sleep_duration" in r):
            staged = "sleep_stage_state" in r
            break
    interval = ("effective_time_frame", "time_interval")
    fields = {"s": interval + ("start_date_time",), "e": interval + ("end_date_time",)}
    fields["v"] = ("sleep_stage_state",) if staged else ("sleep_duration", "value")
    f = extract(recs, fields, "sleep", rep)
    ts, te = parse_times(f["s"]), parse_times(f["e"])
    c = Cleaner("sleep", rep, len(ts))
    c.times(ts)
    c.times(te)
    dur = (te - ts) / 3600.0
    c.drop(te < ts, "end before start")
    c.drop(dur > 24, "segment longer than 24 h")
    if staged:
        stage = np.array([x.strip().lower() if isinstance(x, str) else "" for x in f["v"]], dtype=object)
        c.drop(~np.isin(stage, SLEEP_STAGES), "unrecognised sleep stage")
        asleep_h = np.where(np.isin(stage, ("light", "deep", "rem")), dur, 0.0)
        deep_h = np.where(stage == "deep", dur, 0.0)
    else:
        v, null, empty, nonnum = numeric(f["v"])
        c.drop(null, "null or NaN value")
        c.drop(empty | nonnum, "non-numeric value")
        with np.errstate(invalid="ignore"):
            c.drop((v < 0) | (v > 24), "out of range (<0 or >24 h)")
        asleep_h, deep_h = v, np.full(len(v), np.nan)
    c.dedupe(ts)
    keep = c.finish()
    if not keep.any():
        return {}
    night = (local_seconds(ts[keep], tz) + 12 * 3600) // 86400  # noon-to-noon nights
    per = pd.DataFrame({"n": night, "h": asleep_h[keep], "d": deep_h[keep]}).groupby("n").sum(min_count=1)
    short = per["h"] < MIN_NIGHT_SLEEP_H
    rep.rec("sleep", "note:nights under 2 h not averaged", int(short.sum()))
    per = per[~short]
    out = {"sleep_nights": float(len(per))}
    if len(per):
        out["sleep_hours"] = float(per["h"].mean())
        if staged:
            out["deep_sleep_min"] = float(per["d"].mean() * 60)
    return out


# --------------------------------------------------------------------------- participant


def participant_features(pid: int, site: str, files: dict[str, Path], rep: DataReport) -> dict[str, float]:
    """All sensor features of one participant; unusable files are reported and skipped."""
    tz = SITE_TZ.get(site, "UTC")
    out: dict[str, float] = {}
    docs: dict[str, Any] = {}

    def run(mod: str, fn: Callable[[Any], dict[str, float]]) -> None:
        path = files.get(mod)
        if path is None:
            return
        try:
            doc = docs[mod] if mod in docs else read_json(path)
            res = fn(doc)
        except FileProblem as exc:
            rep.file(mod, "unreadable")
            rep.issue(str(path), str(exc))
            return
        rep.file(mod, "read")
        out.update(res)

    run("cgm", lambda d: cgm_features(d, rep))
    valid_days: list[np.ndarray | None] = [None]

    def hr(doc: Any) -> dict[str, float]:
        res, valid_days[0] = heart_rate(doc, rep, tz)
        return res

    run("heart_rate", hr)
    run("stress", lambda d: stress(d, rep))
    run("respiratory_rate", lambda d: simple_mean(
        d, rep, "respiratory_rate", "breathing", ("respiratory_rate", "value"), RESP_RULES, "rr_mean"))
    run("oxygen_saturation", lambda d: simple_mean(
        d, rep, "oxygen_saturation", "breathing", ("oxygen_saturation", "value"), SPO2_RULES, "spo2_mean"))
    run("activity", lambda d: steps(d, rep, tz, valid_days[0]))
    run("calorie", lambda d: calories(d, rep, tz, valid_days[0]))
    run("sleep", lambda d: sleep(d, rep, tz))
    return out


# --------------------------------------------------------------------------- clinical


def _latest(df: pd.DataFrame, mod: str, rep: DataReport, lo: float, hi: float,
            codes: tuple[int, ...] = ()) -> pd.Series:
    """Most recent valid value per person, counting every row dropped on the way."""
    rep.rec(mod, "read", len(df))
    v = pd.to_numeric(df["value"], errors="coerce")
    pid = pd.to_numeric(df["person_id"], errors="coerce")
    c = Cleaner(mod, rep, len(df))
    c.drop(pid.isna().to_numpy(), "no valid person_id")
    c.drop(df["value"].isna().to_numpy() | (df["value"].astype(str).str.strip() == ""), "null value")
    c.drop(v.isna().to_numpy(), "non-numeric value")
    for code in codes:
        c.drop((v == code).to_numpy(), f"survey code {code}")
    c.drop(((v < lo) | (v > hi)).to_numpy(), f"out of range (<{lo:g} or >{hi:g})")
    dates = pd.to_datetime(df["date"], errors="coerce", format="mixed").to_numpy()
    d = pd.DataFrame({"pid": pid.to_numpy(), "v": v.to_numpy(), "date": dates, "pos": np.arange(len(df))})
    d = d[c.keep].sort_values(["pid", "date", "pos"], na_position="first")
    latest = d.groupby("pid").tail(1)
    older = np.zeros(len(df), bool)
    older[d.loc[~d.index.isin(latest.index), "pos"].to_numpy()] = True
    c.drop(older, "older result superseded")
    c.finish()
    return latest.set_index(latest["pid"].astype(int))["v"]


def clinical_features(root: Path, rep: DataReport) -> pd.DataFrame:
    """HbA1c (concept 3004410, latest) and BMI from measurement.csv; CES-D-10 from observation.csv."""
    out = pd.DataFrame(columns=CLINICAL_FEATURES, dtype=float)
    meas = root / "clinical_data" / "measurement.csv"
    cols = {}
    if meas.is_file():
        try:
            m = pd.read_csv(meas, dtype=str, keep_default_na=False, na_values=[""],
                            usecols=lambda c: c in {"person_id", "measurement_concept_id", "measurement_date",
                                                    "value_as_number", "measurement_source_value"})
            need = {"person_id", "measurement_concept_id", "value_as_number"}
            if not need <= set(m.columns):
                raise ValueError(f"missing columns {sorted(need - set(m.columns))}")
            src = m.get("measurement_source_value", pd.Series("", index=m.index)).fillna("")
            concept = m["measurement_concept_id"].fillna("").str.strip()
            is_a1c = (concept == "3004410") | (
                ~concept.isin(["2005200184"]) & src.str.match(r"^\s*(HbA1c|import_hba1c)", case=False))
            is_bmi = (concept == "4245997") | src.str.match(r"^\s*bmi_vsorres", case=False)
            frame = pd.DataFrame({"person_id": m["person_id"], "value": m["value_as_number"],
                                  "date": m.get("measurement_date")})
            cols["hba1c"] = _latest(frame[is_a1c.to_numpy()], "hba1c", rep, 3.0, 20.0)
            cols["bmi"] = _latest(frame[is_bmi.to_numpy()], "bmi", rep, 10.0, 100.0)
            rep.file("clinical", "read")
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            rep.file("clinical", "unreadable")
            rep.issue(str(meas), f"cannot use measurement table ({exc}); HbA1c and BMI missing")
    else:
        rep.file("clinical", "missing")
        rep.issue(str(meas), "not found; HbA1c and BMI missing for every participant")
    obs = root / "clinical_data" / "observation.csv"
    if obs.is_file():
        try:
            o = pd.read_csv(obs, dtype=str, keep_default_na=False, na_values=[""],
                            usecols=lambda c: c in {"person_id", "observation_date", "value_as_number",
                                                    "observation_source_value"})
            src = o["observation_source_value"].fillna("")
            sel = src.str.match(r"^\s*cestl", case=False).to_numpy()
            frame = pd.DataFrame({"person_id": o["person_id"], "value": o["value_as_number"],
                                  "date": o.get("observation_date")})[sel]
            cols["cesd10"] = _latest(frame, "cesd10", rep, 0.0, 30.0, SURVEY_CODES)
            rep.file("clinical", "read")
        except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
            rep.file("clinical", "unreadable")
            rep.issue(str(obs), f"cannot use observation table ({exc}); CES-D-10 missing")
    else:
        rep.file("clinical", "missing")
        rep.issue(str(obs), "not found; CES-D-10 missing for every participant")
    if cols:
        out = pd.DataFrame(cols).reindex(columns=CLINICAL_FEATURES)
    return out
