"""A synthetic AI-READI release: the real layout and file formats, invented participants.

``write_release`` writes participants.tsv, the datatype manifests, one OMH-style JSON file per
participant and Garmin/Dexcom modality, and OMOP ``measurement.csv``/``observation.csv``, with
the version quirks of v1, v2 or v3 and the sentinel codes of the real data.  It exists so that
the default ``ai-readi`` task runs through the same loader as the controlled-access release.

Causal story (all participant-level, see docs/tasks.md):
    study group -> glucose level and variability;  age -> steps;  steps -> resting HR, BMI;
    short sleep, few steps, high resting HR, glucose variability (+ noise) -> stress;
    glucose level, study group, steps -> HbA1c;  stress -> CES-D score.
Everything is drawn from ``numpy.random.default_rng`` seeded by ``seed`` (and the participant's
index), so a release is a pure function of its parameters.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cfbench.core import phase
from cfbench.core.errors import UserError
from cfbench.tasks.ai_readi.layout import CGM_DIR, GARMIN_DIR, GROUPS, MODALITY, SITE_DIGIT, SITE_TZ

GENERATOR_VERSION = "1"
RELEASES = ("v1", "v2", "v3")
GROUP_P = np.array([0.340, 0.246, 0.301, 0.113])  # v3 cohort shares (H, P, O, I)
# v2 site x group counts (reference §3.1), columns UAB, UCSD, UW; gives P(site | group)
SITE_BY_GROUP = np.array([[127, 85, 160], [71, 74, 97], [131, 100, 92], [63, 33, 34]], float)
SITE_ORDER = ("UAB", "UCSD", "UW")
GLUCOSE_MEDIAN = np.array([118.0, 124.0, 140.0, 167.0])  # mg/dL, per group
GLUCOSE_LOGSD = np.array([0.15, 0.20, 0.25, 0.30])
CV_MEAN = np.array([0.165, 0.19, 0.22, 0.26])  # within-person glucose CV per group (typical)
HBA1C_GROUP = np.array([0.0, 0.35, 0.9, 1.3])  # % added per group on top of the glucose link
STAGES = np.array(["light", "awake", "deep", "rem", "unknown"])
STAGE_P = np.array([0.48, 0.19, 0.18, 0.14, 0.01])
DAY = 86400
CGM_RECORD = (
    '{"effective_time_frame": {"time_interval": {"start_date_time": "%s", "end_date_time": "%s"}}, '
    '"event_type": "EGV", "source_device_id": "%s", "blood_glucose": {"unit": "mg/dL", "value": %s}, '
    '"transmitter_time": {"unit": "long integer", "value": %s}, "transmitter_id": "%s"}'
)
CALORIE_RECORD = (
    '{"activity_name": "kcal_burned", "%s": {"value": %s, "unit": "kcal"}, '
    '"effective_time_frame": {"date_time": "%s"}}'
)


@dataclass(frozen=True)
class SynthParams:
    """What a synthetic release is a function of."""

    participants: int = 500
    days: int = 5
    release: str = "v3"
    seed: int = 0
    garmin_interval_min: int = 5

    def validate(self) -> SynthParams:
        if self.release not in RELEASES:
            raise UserError(f"release {self.release!r}: valid choices: {', '.join(RELEASES)}")
        if not 1 <= self.participants <= 2000:  # IDs are 4 digits: at most 999 per site
            raise UserError(f"participants={self.participants}: expected an integer in 1..2000")
        if not 0 <= self.seed <= 2**32 - 1:
            raise UserError(f"seed={self.seed}: expected an integer in 0..{2**32 - 1}")
        if not 1 <= self.days <= 30:
            raise UserError(f"days={self.days}: expected an integer in 1..30")
        if self.garmin_interval_min not in (1, 2, 5, 10, 15):
            raise UserError(
                f"garmin_interval_min={self.garmin_interval_min}: valid choices: 1, 2, 5, 10, 15"
            )
        return self

    def describe(self) -> str:
        return (
            f"synthetic AI-READI release (cfbench generator v{GENERATOR_VERSION}, seed={self.seed}, "
            f"participants={self.participants}, days={self.days}, release={self.release}, "
            f"garmin interval={self.garmin_interval_min} min)"
        )


# --------------------------------------------------------------------------- cohort


def _z(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / (sd if sd > 0 else 1.0)


def cohort(params: SynthParams) -> pd.DataFrame:
    """Participant-level latent traits (the causal story's variables), one row per participant."""
    n = params.participants
    rng = np.random.default_rng([params.seed, 0])
    g = rng.choice(4, size=n, p=GROUP_P / GROUP_P.sum())
    site_p = SITE_BY_GROUP / SITE_BY_GROUP.sum(axis=1, keepdims=True)
    site = np.array([SITE_ORDER[rng.choice(3, p=site_p[k])] for k in g])
    age = np.clip(np.round(rng.normal(61, 11, n)), 40, 94).astype(int)
    glucose = np.clip(np.exp(np.log(GLUCOSE_MEDIAN[g]) + GLUCOSE_LOGSD[g] * rng.normal(size=n)), 95, 320)
    cv = np.clip(CV_MEAN[g] + rng.normal(0, 0.04, n), 0.10, 0.45)
    steps = np.clip(np.exp(np.log(6000) + 0.5 * rng.normal(size=n) - 0.012 * (age - 61)), 800, 30000)
    sleep_h = np.clip(rng.normal(6.3, 0.9, n), 3.5, 9.5)
    rhr = np.clip(60 + 1.5 * g - 3.0 * np.log(steps / 6000) + rng.normal(0, 5, n), 42, 95)
    bmi = np.clip(27 + 1.5 * g - 1.2 * np.log(steps / 6000) + rng.normal(0, 4.5, n), 17, 60)
    # stress: a participant's typical Garmin stress score (0-100) before minute-level noise
    drivers = 5.5 * _z(-sleep_h) + 4.5 * _z(-np.log(steps)) + 4.5 * _z(rhr) + 3.5 * _z(cv)
    stress = np.clip(55.5 + drivers + rng.normal(0, 6.5, n), 10, 90)
    hba1c = 5.2 + 0.025 * (glucose - 118) + HBA1C_GROUP[g] - 0.1 * _z(np.log(steps))
    hba1c = np.clip(hba1c + rng.normal(0, 0.35, n), 4.2, 13.0)
    cesd = np.clip(np.round(6 + 0.15 * (stress - 50) + rng.normal(0, 3.5, n)), 0, 30)
    # identifiers: site digit + 3 digits, unique per site
    pid = np.zeros(n, int)
    for s in SITE_ORDER:
        idx = np.flatnonzero(site == s)
        pid[idx] = SITE_DIGIT[s] * 1000 + 1 + rng.permutation(999)[: len(idx)]
    start = pd.Timestamp("2023-07-01") + pd.to_timedelta(rng.integers(0, 330, n), unit="D")
    split = rng.choice(["train", "val", "test"], size=n, p=[0.7, 0.15, 0.15])
    has_garmin = rng.random(n) < 0.93
    return pd.DataFrame(
        {
            "participant_id": pid, "group": g, "clinical_site": site, "age": age,
            "visit_date": start, "recommended_split": split,
            "glucose": glucose, "cv": cv, "steps": steps, "sleep_h": sleep_h, "rhr": rhr,
            "bmi": bmi, "stress": stress, "hba1c": hba1c, "cesd": cesd,
            "has_garmin": has_garmin,
            "has_cgm": rng.random(n) < 0.985,
            "has_spo2": has_garmin & (rng.random(n) < 0.77),
            "has_calorie": has_garmin & (rng.random(n) < 0.95),
            "has_hba1c": rng.random(n) < 0.97,
        }
    )


# --------------------------------------------------------------------------- time series


def _local_offsets(secs: np.ndarray, tz: str) -> np.ndarray:
    """UTC offset in seconds at each UTC epoch second, for ``tz`` (DST-aware)."""
    idx = pd.DatetimeIndex(secs.astype("datetime64[s]")).tz_localize("UTC").tz_convert(tz)
    local = idx.tz_localize(None).as_unit("s").asi8
    return (local - secs).astype(np.int64) if len(secs) else secs


def _iso(secs: np.ndarray, v1_style: bool = False) -> np.ndarray:
    s = np.datetime_as_string(secs.astype("datetime64[s]"), unit="s")
    return np.char.replace(s, "T", " ") if v1_style else np.char.add(s, "Z")


def participant_series(row: pd.Series, params: SynthParams, i: int) -> dict[str, object]:
    """All raw records of one participant as numpy arrays (values may hold sentinels)."""
    rng = np.random.default_rng([params.seed, 1, i])
    tz = SITE_TZ[row.clinical_site]
    D = params.days
    step = params.garmin_interval_min * 60
    start_local = (row.visit_date + pd.Timedelta(days=1, hours=9) - pd.Timestamp(0)) // pd.Timedelta(seconds=1)
    t0 = start_local - int(_local_offsets(np.array([start_local]), tz)[0])  # approx UTC start
    span = (D + 1) * DAY  # watch keeps logging for a day after it is taken off
    t = t0 + np.arange(0, span, step, dtype=np.int64)
    loc = t + _local_offsets(t, tz)
    hour = (loc % DAY) / 3600.0
    (t - t0) // DAY
    out: dict[str, object] = {"t0": t0, "tz": tz}

    # nights: bedtime ~23:00 local, time in bed from the participant's sleep need
    first_day_local = (start_local // DAY) * DAY
    nights = []
    for n in range(D):
        bed_local = first_day_local + n * DAY + int((23.0 + rng.normal(0, 0.7)) * 3600)
        sleep_n = float(np.clip(row.sleep_h + rng.normal(0, 0.6), 2.5, 11))
        tib = sleep_n / (1 - STAGE_P[1]) * 3600
        bed = bed_local - int(_local_offsets(np.array([bed_local]), tz)[0])
        if bed + tib < t0 + D * DAY:
            nights.append((bed, bed + int(tib)))
    asleep = np.zeros(len(t), bool)
    for b, e in nights:
        asleep |= (t >= b) & (t < e)
    worn = (t < t0 + D * DAY) & row.has_garmin
    # charging gaps: every 2-3 days, 1-2 h in the afternoon
    d = float(rng.uniform(1.5, 3))
    while d < D:
        gs = t0 + int(d * DAY) + int(rng.uniform(3, 8) * 3600)
        worn &= ~((t >= gs) & (t < gs + int(rng.uniform(1, 2) * 3600)))
        d += rng.uniform(2, 3)

    # activity: 15-min intervals over the whole span, steps only while awake and worn by day
    a_t = t0 + np.arange(0, span, 900, dtype=np.int64)
    a_hour = ((a_t + _local_offsets(a_t, tz)) % DAY) / 3600.0
    a_day = (a_t - t0) // DAY
    mid = a_t + 450
    a_worn = (mid < t0 + D * DAY) & row.has_garmin
    a_asleep = np.zeros(len(a_t), bool)
    for b, e in nights:
        a_asleep |= (mid >= b) & (mid < e)
    active_ok = a_worn & ~a_asleep & (a_hour >= 6.5) & (a_hour < 22.5)
    w = rng.gamma(0.35, 1.0, len(a_t)) * active_ok
    steps = np.zeros(len(a_t))
    for dd in range(D + 1):
        sel = a_day == dd
        tot = w[sel].sum()
        if tot > 0:
            steps[sel] = w[sel] / tot * row.steps * float(np.clip(rng.normal(1, 0.25), 0.3, 2))
    steps = np.round(steps).astype(int)
    out["activity"] = (a_t, steps)

    # heart rate, stress, respiratory rate on the Garmin grid
    steps_at = steps[np.minimum((t - t0) // 900, len(steps) - 1)]
    hr = np.where(asleep, row.rhr + rng.normal(2, 2, len(t)),
                  row.rhr + 14 + 0.012 * steps_at + rng.normal(0, 6, len(t)))
    hr = np.clip(np.round(hr), 35, 200)
    hr[~worn] = 0
    hr[rng.random(len(t)) < 0.004] = 0  # brief off-wrist readings
    out["heart_rate"] = (t, hr)

    day_part = np.where((hour > 9) & (hour < 18), 6.0, 0.0)
    st = np.where(asleep, row.stress - 12 + rng.normal(0, 8, len(t)),
                  row.stress + day_part + rng.normal(0, 16, len(t)))
    st = np.clip(np.round(st), 0, 100)
    u = rng.random(len(t))
    p_minus1 = np.where(asleep, 0.15, 0.50 + 0.35 * (steps_at > 150))
    st = np.where(u < p_minus1, -1, st)
    st = np.where((u >= p_minus1) & (u < p_minus1 + 0.10), -2, st)
    st[~worn] = -2
    st[rng.random(len(t)) < 0.0002] = 101  # the odd out-of-range row
    out["stress"] = (t, st)

    rr_person = rng.normal(0, 1.5)
    rr = rr_person + np.where(asleep, 14 + rng.normal(0, 1.2, len(t)), 16 + rng.normal(0, 2.2, len(t)))
    rr = np.round(np.clip(rr, 6, 35), 2)
    u = rng.random(len(t))
    rr = np.where(u < np.where(asleep, 0.15, 0.45), -1, rr)
    rr = np.where((u > 0.93), -2, rr)
    rr[~worn] = -2
    out["respiratory_rate"] = (t, rr)

    # SpO2: first ~4 h of each night, for participants whose watch recorded it
    if row.has_spo2:
        first = np.zeros(len(t), bool)
        for b, e in nights:
            first |= (t >= b) & (t < min(e, b + 4 * 3600))
        sel = first & worn
        sp = np.clip(np.round(93 + rng.normal(0, 1.5) + rng.normal(0, 1.6, sel.sum())), 69, 100)
        u = rng.random(sel.sum())
        sp[u < 0.003] = 101
        sp[(u >= 0.003) & (u < 0.005)] = 0
        out["oxygen_saturation"] = (t[sel], sp)
    else:
        out["oxygen_saturation"] = (t[:0], np.zeros(0))

    # active-calorie counter: cumulative since local midnight, logged hourly while worn
    if row.has_calorie:
        kcal = 0.04 * steps + rng.gamma(2.0, 0.5, len(a_t)) * a_worn
        a_loc_day = (a_t + _local_offsets(a_t, tz)) // DAY
        cum = pd.Series(kcal).groupby(a_loc_day).cumsum().to_numpy()
        hourly = (np.arange(len(a_t)) % 4 == 3) & a_worn  # end of each hour
        c_t = a_t[hourly] + 900 - rng.integers(0, 60, hourly.sum())
        out["calorie"] = (c_t, np.round(cum[hourly]).astype(int))
    else:
        out["calorie"] = (t[:0], np.zeros(0, int))

    # sleep-stage segments
    seg_s, seg_e, seg_stage = [], [], []
    if row.has_garmin:
        for b, e in nights:
            cur = b
            while cur < e:
                dur = int(60 * (5 + rng.exponential(20)))
                stage = STAGES[rng.choice(5, p=STAGE_P)]
                end = min(cur + dur, e)
                seg_s.append(cur)
                seg_e.append(end)
                seg_stage.append(stage)
                cur = end
    seg_s, seg_e = np.array(seg_s, np.int64), np.array(seg_e, np.int64)
    if len(seg_s) and rng.random() < 0.05:  # a segment whose end precedes its start
        k = rng.integers(len(seg_s))
        seg_s[k], seg_e[k] = seg_e[k], seg_s[k]
    out["sleep"] = (seg_s, seg_e, np.array(seg_stage, dtype=object))

    # CGM: 5-min readings for D days, meals + dawn rise + AR(1) noise, scaled to the target CV
    c_t = t0 + np.arange(0, D * DAY, 300, dtype=np.int64) + int(rng.integers(0, 300))
    c_h = ((c_t + _local_offsets(c_t, tz)) % DAY) / 3600.0
    ar = np.zeros(len(c_t))
    eps = rng.normal(0, 1, len(c_t))
    for k in range(1, len(c_t)):
        ar[k] = 0.985 * ar[k - 1] + eps[k]
    ar /= ar.std() or 1.0
    meals = np.zeros(len(c_t))
    for mh in (7.5, 12.5, 18.5):
        dt = (c_h - mh - rng.normal(0, 0.5)) % 24
        meals += np.where(dt < 4, dt * np.exp(-dt / 0.7) * 2.0, 0)
    dawn = np.where((c_h > 4) & (c_h < 8), 0.4, 0.0)
    z = _z(0.6 * ar + meals + dawn)
    g = row.glucose * np.exp(row.cv * z - row.cv**2 / 2)
    for _ in range(int(rng.poisson(0.5 + 0.5 * row.group))):  # occasional low-glucose dips
        k = int(rng.integers(len(g)))
        g[k : k + 12] = np.minimum(g[k : k + 12], rng.uniform(35, 68))
    g = np.round(g)
    keep = np.ones(len(c_t), bool)
    for _ in range(int(rng.integers(1, 4))):  # sensor gaps, ~3 % of readings
        k = int(rng.integers(len(c_t)))
        keep[k : k + int(len(c_t) * 0.01)] = False
    out["cgm"] = (c_t[keep], g[keep]) if row.has_cgm else (c_t[:0], g[:0])
    return out


# --------------------------------------------------------------------------- writers


def _fmt_values(v: np.ndarray, rng: np.random.Generator, nan_rate: float, decimals: int = 0) -> list[str]:
    """Numbers as JSON tokens, with a few bare ``NaN`` tokens as in the real files."""
    s = v.astype(int).astype(str) if decimals == 0 else np.char.mod(f"%.{decimals}f", v)
    s = s.astype(object)
    if len(s) and nan_rate:
        s[rng.random(len(s)) < nan_rate] = "NaN"
    return list(s)


def _header(pid: int, schema: tuple[str, str, object], params: SynthParams, tz: str, cgm: bool = False) -> str:
    h: dict[str, object] = {
        "uuid": f"AIREADI-{pid}",
        "creation_date_time": "2024-06-01T00:00:00Z",
    }
    if cgm:
        h["patient_id"] = f"AIREADI-{pid}"
    else:
        h["user_id"] = f"AIREADI-{pid}"
    h["schema_id"] = {"namespace": schema[0], "name": schema[1], "version": schema[2]}
    if cgm:
        h["modality"] = "sensed"
        h["acquistion_rate"] = {"number_of_times": 1, "time_window": {"value": 5, "unit": "min"}}
        h["external_datasheets"] = {"datasheet_type": "source_device", "datasheet_reference": "iri-of-cgm-device"}
        h["timezone"] = "pst" if "Los_Angeles" in tz else "cst"
    elif params.release == "v3":
        h["timezone"] = "pst" if "Los_Angeles" in tz else "cst"
    return json.dumps(h)


def _write(path: Path, header: str, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"header": ')
        f.write(header)
        f.write(', "body": ')
        f.write(body)
        f.write("}")


def _list(key: str | None, items: list[str]) -> str:
    inner = "[" + ", ".join(items) + "]"
    return inner if key is None else '{"' + key + '": ' + inner + "}"


def write_participant(root: Path, row: pd.Series, s: dict, params: SynthParams, i: int) -> dict[str, object]:
    """Write the eight JSON files of one participant; returns manifest fields."""
    rng = np.random.default_rng([params.seed, 2, i])
    pid = int(row.participant_id)
    tz = s["tz"]
    v1 = params.release == "v1"
    man: dict[str, object] = {}

    def path(key: str) -> Path:
        m = MODALITY[key]
        return root / m.datatype / m.folder / str(pid) / f"{pid}{m.suffix}"

    def rel(p: Path) -> str:
        return "/" + p.relative_to(root).as_posix()

    # CGM
    ct, cg = s["cgm"]
    if row.has_cgm:
        tok = np.where(cg < 40, '"Low"', np.where(cg > 400, '"High"', cg.astype(int).astype(str))).astype(object)
        tok[rng.random(len(tok)) < 0.0005] = "NaN"
        ts = _iso(ct)
        if rng.random() < 0.05 and len(ts) > 10:  # a couple of duplicated readings
            dup = rng.integers(0, len(ts), 2)
            ts = np.concatenate([ts, ts[dup]])
            tok = np.concatenate([tok, tok[dup]])
        sensor = f"SN{rng.integers(10**7, 10**8)}"
        tx = f"{rng.integers(10**5, 10**6)}"
        tt = (np.arange(len(ts)) * 300 + 100000).astype(str)
        recs = [
            CGM_RECORD % (a, a, sensor, v, tti, tx)
            for a, v, tti in zip(ts, tok, tt, strict=True)
        ]
        p = path("cgm")
        _write(p, _header(pid, ("omh", "blood-glucose", 3.0), params, tz, cgm=True),
               _list(None if v1 else "cgm", recs))
        num = np.where(cg < 40, 70, np.where(cg > 400, 200, cg))  # the pipeline's Low/High mapping
        man.update(glucose_filepath=rel(p), glucose_level_record_count=len(recs),
                   average_glucose_level_mg_dl=round(float(num.mean()), 2) if len(num) else "",
                   glucose_sensor_sampling_duration_days=round(len(ct) * 300 / DAY, 2),
                   glucose_sensor_id=sensor)
    else:
        man.update(glucose_filepath="None", glucose_level_record_count=0,
                   average_glucose_level_mg_dl="", glucose_sensor_sampling_duration_days=0,
                   glucose_sensor_id="")
    if not row.has_garmin:
        return man

    def point_file(key: str, body_key: str, vkey: str, unit: str, schema: tuple, t: np.ndarray,
                   v: np.ndarray, decimals: int = 0, extra: str = "") -> tuple[str, int, float]:
        vals = _fmt_values(v, rng, 0.0005, decimals)
        ts = _iso(t)
        recs = [
            f'{{"{vkey}": {{"value": {val}, "unit": "{unit}"}}, "effective_time_frame": {{"date_time": "{a}"}}{extra}}}'
            for val, a in zip(vals, ts, strict=True)
        ]
        if key == "respiratory_rate" and len(recs) and rng.random() < 0.05:
            recs[0] = recs[0].replace(ts[0], "1991-01-01T00:00:00Z")  # the stray 1991 timestamp
        p = path(key)
        _write(p, _header(pid, schema, params, tz), _list(body_key, recs))
        return rel(p), len(recs), round(float(v.mean()), 2) if len(v) else 0.0

    t, hr = s["heart_rate"]
    man["heartrate_filepath"], man["heartrate_record_count"], man["average_heartrate_bpm"] = point_file(
        "heart_rate", "heart_rate", "heart_rate", "beats/min", ("omh", "heart-rate", 2.0), t, hr)
    t, sp = s["oxygen_saturation"]
    man["oxygen_saturation_filepath"], man["oxygen_saturation_record_count"], man["average_oxygen_saturation_pct"] = point_file(
        "oxygen_saturation", "breathing", "oxygen_saturation", "%", ("omh", "oxygen-saturation", 2.0), t, sp,
        extra=', "measurement_method": "pulse oximetry"')
    t, st = s["stress"]
    man["stress_level_filepath"], man["stress_level_record_count"], man["average_stress_level"] = point_file(
        "stress", "stress", "stress", "stress level", ("", "", ""), t, st)
    t, rr = s["respiratory_rate"]
    man["respiratory_rate_filepath"], man["respiratory_rate_record_count"], man["average_respiratory_rate_bpm"] = point_file(
        "respiratory_rate", "breathing", "respiratory_rate", "breaths/min", ("omh", "respiratory-rate", 2.0), t, rr, 2)

    # activity: contiguous 15-min intervals; values int, numeric string or ""
    at, steps = s["activity"]
    ts0, ts1 = _iso(at, v1), _iso(at + 900, v1)
    u = rng.random(len(steps))
    vals = np.where(u < 0.03, np.char.add(np.char.add('"', steps.astype(str)), '"'), steps.astype(str)).astype(object)
    vals[u > 0.995] = '""'
    names = np.where(steps == 0, "sedentary", np.where(steps > 1800, "running", "walking")).astype(object)
    names[(steps > 0) & (rng.random(len(steps)) < 0.06)] = "generic"
    recs = [
        f'{{"activity_name": "{nm}", "base_movement_quantity": {{"value": {v}, "unit": "steps"}}, '
        f'"effective_time_frame": {{"time_interval": {{"start_date_time": "{a}", "end_date_time": "{b}"}}}}}}'
        for nm, v, a, b in zip(names, vals, ts0, ts1, strict=True)
    ]
    p = path("activity")
    _write(p, _header(pid, ("", "", ""), params, tz), _list("activity", recs))
    man["physical_activity_filepath"] = rel(p)
    man["physical_activity_num_records" if v1 else "physical_activity_num_days"] = (
        len(recs) if v1 else params.days + 1)
    man["average_daily_activity"] = round(float(steps.sum()) / (params.days + 1), 2)

    # active calories: v1 stores the value under "duration"
    ct, kc = s["calorie"]
    if row.has_calorie:
        vkey = "duration" if v1 else "calories_value"
        ts = _iso(ct)
        recs = [
            CALORIE_RECORD % (vkey, v, a)
            for v, a in zip(kc.astype(int).astype(str), ts, strict=True)
        ]
        p = path("calorie")
        _write(p, _header(pid, ("ieee", "physical-activity", 1.0), params, tz), _list("activity", recs))
        man.update(active_calories_filepath=rel(p), active_calories_record_count=len(recs),
                   average_active_calories_kcal=round(float(kc.mean()), 2) if len(kc) else 0.0)
    else:
        man.update(active_calories_filepath="None", active_calories_record_count=0,
                   average_active_calories_kcal="")

    # sleep: v2+ stage segments; v1 sleep_duration records for the asleep segments only
    ss, se, stage = s["sleep"]
    ts0, ts1 = _iso(ss), _iso(se)
    if v1:
        keep = (stage != "awake") & (stage != "unknown")
        recs = [
            f'{{"sleep_duration": {{"value": {(e - b) / 3600:.4f}, "unit": "h"}}, "effective_time_frame": {{"time_interval": '
            f'{{"start_date_time": "{a}", "end_date_time": "{c}"}}}}}}'
            for b, e, a, c in zip(ss[keep], se[keep], ts0[keep], ts1[keep], strict=True)
        ]
        schema = ("omh", "sleep-duration", 2.0)
    else:
        recs = [
            f'{{"sleep_stage_state": "{sg}", "effective_time_frame": {{"time_interval": '
            f'{{"start_date_time": "{a}", "end_date_time": "{c}"}}}}}}'
            for sg, a, c in zip(stage, ts0, ts1, strict=True)
        ]
        schema = ("omh", "sleep-stages", 2.0)
    p = path("sleep")
    _write(p, _header(pid, schema, params, tz), _list("sleep", recs))
    seg_h = (se - ss) / 3600
    man.update(sleep_filepath=rel(p), sleep_record_count=len(recs),
               average_sleep_hours=round(float(seg_h.mean()), 3) if len(seg_h) else 0.0)
    man["sensor_sampling_duration_days"] = params.days + 1
    return man


GARMIN_MANIFEST = [
    "wrist_worn_on", "dominant_hand", "heartrate_filepath", "heartrate_record_count",
    "average_heartrate_bpm", "oxygen_saturation_filepath", "oxygen_saturation_record_count",
    "average_oxygen_saturation_pct", "stress_level_filepath", "stress_level_record_count",
    "average_stress_level", "sleep_filepath", "sleep_record_count", "average_sleep_hours",
    "respiratory_rate_filepath", "respiratory_rate_record_count", "average_respiratory_rate_bpm",
    "physical_activity_filepath", "physical_activity_num_days", "average_daily_activity",
    "active_calories_filepath", "active_calories_record_count", "average_active_calories_kcal",
    "sensor_sampling_duration_days", "manufacturer", "manufacturer_model_name",
]
CGM_MANIFEST = [
    "glucose_filepath", "glucose_level_record_count", "average_glucose_level_mg_dl",
    "glucose_sensor_sampling_duration_days", "glucose_sensor_id", "manufacturer",
    "manufacturer_model_name",
]
MEASUREMENT_COLUMNS = [
    "measurement_id", "person_id", "measurement_concept_id", "measurement_date",
    "measurement_datetime", "measurement_time", "measurement_type_concept_id",
    "operator_concept_id", "value_as_number", "value_as_concept_id", "unit_concept_id",
    "range_low", "range_high", "provider_id", "visit_occurrence_id", "visit_detail_id",
    "measurement_source_value", "measurement_source_concept_id", "unit_source_value",
    "unit_source_concept_id", "value_source_value", "measurement_event_id",
    "meas_event_field_concept_id", "qualifier_concept_id", "qualifier_source_value",
]
OBSERVATION_COLUMNS = [
    "observation_id", "person_id", "observation_concept_id", "observation_date",
    "observation_datetime", "observation_type_concept_id", "value_as_number", "value_as_string",
    "value_as_concept_id", "qualifier_concept_id", "unit_concept_id", "provider_id",
    "visit_occurrence_id", "visit_detail_id", "observation_source_value",
    "observation_source_concept_id", "unit_source_value", "qualifier_source_value",
    "value_source_value", "observation_event_id", "obs_event_field_concept_id",
]


def _clinical(root: Path, co: pd.DataFrame, params: SynthParams) -> None:
    rng = np.random.default_rng([params.seed, 3])
    v3 = params.release == "v3"
    rows = []
    mid = 1

    def meas(pid: int, concept: int, date: str, value: float, source: str, unit: str, lo="", hi="") -> None:
        nonlocal mid
        rec = dict.fromkeys(MEASUREMENT_COLUMNS, 0)
        rec.update(measurement_id=mid, person_id=pid, measurement_concept_id=concept,
                   measurement_date=date, measurement_datetime=f"{date} 00:00:00",
                   measurement_time="00:00:00", measurement_type_concept_id=32856,
                   operator_concept_id=4172703, value_as_number=value, range_low=lo,
                   range_high=hi, measurement_source_value=source, unit_source_value=unit,
                   value_source_value=value, qualifier_source_value="")
        rows.append(rec)
        mid += 1

    for r in co.itertuples():
        date = r.visit_date.strftime("%Y-%m-%d")
        pid = int(r.participant_id)
        if r.has_hba1c:
            src = "import_hba1c, HbA1c (%)" if v3 else "HbA1c (%)"
            meas(pid, 3004410, date, round(float(r.hba1c), 1), src, "%", 4.0, 6.0)
            if rng.random() < 0.05:  # an older, superseded HbA1c result
                old = (r.visit_date - pd.Timedelta(days=200)).strftime("%Y-%m-%d")
                meas(pid, 3004410, old, round(float(r.hba1c + rng.normal(0, 0.3)), 1), src, "%", 4.0, 6.0)
        # the trap: CBC haemoglobin under an "a1c"-looking source value
        meas(pid, 2005200184, date, round(float(rng.normal(14, 1.2)), 1),
             "import_hemoglobin, Hemoglobin - g/dL" if v3 else "lbscat_a1c, Hemoglobin - g/dL", "g/dL")
        meas(pid, 3004501, date, round(float(r.glucose * rng.uniform(0.8, 1.1))),
             "import_glucose, Glucose (mg/dL)" if v3 else "Glucose (mg/dL)", "mg/dL", 62, 125)
        meas(pid, 4245997, date, round(float(r.bmi), 1), "bmi_vsorres, BMI", "kg/m2")
    clin = root / "clinical_data"
    clin.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=MEASUREMENT_COLUMNS).to_csv(clin / "measurement.csv", index=False)

    obs = []
    for k, r in enumerate(co.itertuples()):
        rec = dict.fromkeys(OBSERVATION_COLUMNS, 0)
        value = float(r.cesd)
        u = rng.random()
        if u < 0.04:  # survey non-answers: 555/777/888/999/99
            value = float(rng.choice([555, 777, 888, 999, 99]))
        d = r.visit_date
        rec.update(observation_id=k + 1, person_id=int(r.participant_id), observation_concept_id=2000000101,
                   observation_date=f"{d.month}/{d.day}/{d.year % 100:02d}" if v3 else d.strftime("%Y-%m-%d"),
                   observation_datetime=d.strftime("%Y-%m-%d 00:00:00"), observation_type_concept_id=32862,
                   value_as_number=value, value_as_string="",
                   observation_source_value="cestl, CESD-10 Score", unit_source_value="",
                   qualifier_source_value="", value_source_value=value)
        obs.append(rec)
    pd.DataFrame(obs, columns=OBSERVATION_COLUMNS).to_csv(clin / "observation.csv", index=False)
    person = pd.DataFrame({
        "person_id": co.participant_id, "gender_concept_id": 0,
        "year_of_birth": co.visit_date.dt.year - co.age, "race_concept_id": 0, "ethnicity_concept_id": 0,
    })
    person.to_csv(clin / "person.csv", index=False)


def _write_participants(root: Path, params: SynthParams, indices: list[int]) -> list[tuple[int, dict]]:
    """Write the files of the participants at ``indices`` of the cohort; their manifest entries.
    Each participant draws from its own seeded generators, so any split gives the same files."""
    co = cohort(params)
    out = []
    for i in indices:
        row = next(co.iloc[i:i + 1].itertuples(index=False))
        out.append((i, write_participant(root, row, participant_series(row, params, i), params, i)))
    return out


def _all_participants(root: Path, params: SynthParams, co: pd.DataFrame, n_jobs: int) -> list[dict]:
    """Every participant's manifest entries, in cohort order; ``n_jobs`` processes write them."""
    label = "generating the synthetic AI-READI release (first use only): participant"
    n = len(co)
    if n_jobs <= 1 or n < 2:
        mans = []
        for i, row in enumerate(co.itertuples(index=False)):
            phase.step(label, i, n)
            mans.append(write_participant(root, row, participant_series(row, params, i), params, i))
        return mans
    chunks = [list(range(i, n, n_jobs * 8)) for i in range(min(n, n_jobs * 8))]
    found: dict[int, dict] = {}
    with ProcessPoolExecutor(max_workers=n_jobs) as pool:
        for f in as_completed([pool.submit(_write_participants, root, params, c) for c in chunks]):
            found.update(f.result())
            phase.step(label, len(found), n)
    return [found[i] for i in range(n)]


def write_release(out: str | Path, params: SynthParams | None = None, n_jobs: int = 1, **kw: object) -> Path:
    """Write a synthetic release into ``out`` (must not exist or be empty); returns ``out``.
    ``n_jobs`` processes write the participants' files (the release is the same for any count)."""
    params = (params or SynthParams(**kw)).validate()  # type: ignore[arg-type]
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} already exists and is not empty; choose a new folder for the release")
    out.mkdir(parents=True, exist_ok=True)
    root = out / "dataset" if params.release == "v3" else out
    root.mkdir(parents=True, exist_ok=True)
    co = cohort(params)
    id_col = "person_id" if params.release == "v3" else "participant_id"
    cgm_rows, garmin_rows = [], []
    mans = _all_participants(root, params, co, n_jobs)
    for row, man in zip(co.itertuples(index=False), mans, strict=True):
        pid = int(row.participant_id)
        cgm_rows.append({id_col: pid, **{c: man.get(c, "") for c in CGM_MANIFEST[:5]},
                         "manufacturer": "Dexcom", "manufacturer_model_name": "G6"})
        if row.has_garmin:
            cols = list(GARMIN_MANIFEST)
            if params.release == "v1":
                cols[cols.index("physical_activity_num_days")] = "physical_activity_num_records"
            g = {id_col: pid, "wrist_worn_on": "Left", "dominant_hand": "Right",
                 **{c: man.get(c, "") for c in cols[2:-2]}, "manufacturer": "Garmin",
                 "manufacturer_model_name": "Vivosmart 5"}
            garmin_rows.append(g)
    pd.DataFrame(cgm_rows).to_csv(root / CGM_DIR / "manifest.tsv", sep="\t", index=False)
    (root / GARMIN_DIR).mkdir(parents=True, exist_ok=True)
    gcols = [id_col] + [("physical_activity_num_records" if params.release == "v1" and c == "physical_activity_num_days" else c)
                        for c in GARMIN_MANIFEST]
    pd.DataFrame(garmin_rows, columns=gcols).to_csv(root / GARMIN_DIR / "manifest.tsv", sep="\t", index=False)
    _clinical(root, co, params)
    part = pd.DataFrame({
        id_col: co.participant_id, "clinical_site": co.clinical_site,
        "study_group": [GROUPS[k] for k in co.group], "age": co.age,
        "study_visit_date": co.visit_date.dt.strftime("%Y-%m-%d"),
        "recommended_split": co.recommended_split,
        "cardiac_ecg": "FALSE", "clinical_data": "TRUE", "environment": "FALSE", "retinal_flio": "FALSE",
        "retinal_oct": "FALSE", "retinal_octa": "FALSE", "retinal_photography": "FALSE",
        "wearable_activity_monitor": np.where(co.has_garmin, "TRUE", "FALSE"),
        "wearable_blood_glucose": np.where(co.has_cgm, "TRUE", "FALSE"),
    }).sort_values(id_col)
    part.to_csv(root / "participants.tsv", sep="\t", index=False)
    (root / "participants.json").write_text(json.dumps({
        id_col: {"Description": "participant identifier; first digit = site (1 UW, 4 UCSD, 7 UAB)"},
        "clinical_site": {"Description": "recruitment site", "Levels": {"UW": "Seattle", "UAB": "Birmingham", "UCSD": "San Diego"}},
        "study_group": {"Description": "diabetes severity group", "Levels": {g: g for g in GROUPS}},
        "age": {"Description": "age at visit", "Units": "years"},
    }, indent=2))
    (root / "dataset_description.json").write_text(json.dumps({
        "Name": "cfbench synthetic AI-READI stand-in (NOT real participant data)",
        "Version": {"v1": "1.0.0", "v2": "2.0.0", "v3": "3.0.0"}[params.release],
        "Generator": params.describe(),
    }, indent=2))
    (root / "README.md").write_text(
        "# Synthetic AI-READI stand-in\n\nGenerated by cfbench; every value is invented.\n"
        f"{params.describe()}\n\nLayout and formats follow AI-READI {params.release}; see cfbench docs/tasks.md.\n"
    )
    if params.release == "v3":
        files = sorted(p for p in root.rglob("*") if p.is_file())
        pd.DataFrame({"file_path": ["dataset/" + p.relative_to(root).as_posix() for p in files]}).to_csv(
            out / "file-manifest.tsv", sep="\t", index=False)
    return out


def ensure_release(dest: Path, params: SynthParams, n_jobs: int = 1) -> Path:
    """``dest`` holding the release for ``params``; written (atomically, by ``n_jobs``
    processes) if it is not there yet."""
    marker = dest / ".complete"
    if marker.is_file():
        return dest
    tmp = dest.parent / f".{dest.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    write_release(tmp, params, n_jobs=n_jobs)
    (tmp / ".complete").write_text(params.describe() + "\n")
    try:
        os.replace(tmp, dest)
    except OSError:  # another process finished first, or dest is a stale partial folder
        if not marker.is_file():
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
