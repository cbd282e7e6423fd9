"""AI-READI loader on a tiny release written by hand: exact features, every sentinel counted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cfbench.tasks.ai_readi import features as F
from cfbench.tasks.ai_readi.loader import feature_table, label_and_impute, load_ai_readi

GARMIN = "wearable_activity_monitor"
CGM = "wearable_blood_glucose"
T0 = pd.Timestamp("2024-01-10 08:00", tz="UTC")  # 00:00 PST, local midnight for UW (1001)


def iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def point(key: str, unit: str, values: list, start: pd.Timestamp = T0, step_min: int = 5) -> list[dict]:
    return [{key: {"value": v, "unit": unit},
             "effective_time_frame": {"date_time": iso(start + pd.Timedelta(minutes=step_min * i))}}
            for i, v in enumerate(values)]


def interval(start: pd.Timestamp, minutes: float) -> dict:
    return {"time_interval": {"start_date_time": iso(start),
                              "end_date_time": iso(start + pd.Timedelta(minutes=minutes))}}


def write(root: Path, rel: str, body: object, raw: str | None = None) -> str:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(raw if raw is not None else json.dumps({"header": {"uuid": "x"}, "body": body}))
    return "/" + rel


def garmin_path(pid: int, folder: str, suffix: str) -> str:
    return f"{GARMIN}/{folder}/garmin_vivosmart5/{pid}/{pid}{suffix}"


def hr_day() -> list:
    """288 five-minute readings over local 10 Jan (PST): 50 at 03:00-03:30, 60 to 07:00, else 70."""
    v = [70] * 288
    for i in range(36, 42):
        v[i] = 50
    for i in range(42, 84):
        v[i] = 60
    v[144] = 0  # 12:00 off wrist (sentinel)
    v[145] = 300  # 12:05 impossible value
    return v


@pytest.fixture
def release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(F, "MIN_CGM_READINGS", 3)
    monkeypatch.setattr(F, "MIN_STRESS_READINGS", 3)
    monkeypatch.setenv("CFBENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "rel"
    man_cgm, man_g = [], []

    # ---- 1001 (UW): every modality, with sentinels of every kind
    cgm_vals = [100, 200, "Low", "High", float("nan"), 150, 30, "abc"]
    recs = [{"effective_time_frame": interval(T0 + pd.Timedelta(minutes=5 * i), 0),
             "event_type": "EGV", "blood_glucose": {"unit": "mg/dL", "value": v}}
            for i, v in enumerate(cgm_vals)]
    recs.append(dict(recs[0], blood_glucose={"unit": "mg/dL", "value": 120}))  # duplicate timestamp
    c1 = write(root, f"{CGM}/continuous_glucose_monitoring/dexcom_g6/1001/1001_DEX.json", {"cgm": recs})
    man_cgm.append({"participant_id": 1001, "glucose_filepath": c1})
    hr = write(root, garmin_path(1001, "heart_rate", "_heartrate.json"),
               {"heart_rate": point("heart_rate", "beats/min", hr_day())})
    st = write(root, garmin_path(1001, "stress", "_stress.json"),
               {"stress": point("stress", "stress level", [-1, -1, -2, 101, float("nan"), 20, 40, 60])})
    rr = write(root, garmin_path(1001, "respiratory_rate", "_respiratoryrate.json"),
               {"breathing": point("respiratory_rate", "breaths/min", [-1, -2, 0, 14.0, 16.0])})
    sp = write(root, garmin_path(1001, "oxygen_saturation", "_oxygensaturation.json"),
               {"breathing": point("oxygen_saturation", "%", [0, 101, 45, 95, 97], start=T0 + pd.Timedelta(hours=4))})
    steps = [100, "200", "", None, -5, 300]
    act = [{"activity_name": "walking", "base_movement_quantity": {"value": v, "unit": "steps"},
            "effective_time_frame": interval(T0 + pd.Timedelta(hours=9, minutes=15 * i), 15)}
           for i, v in enumerate(steps)]
    act.append({"activity_name": "walking", "base_movement_quantity": {"value": 5000, "unit": "steps"},
                "effective_time_frame": interval(T0 + pd.Timedelta(days=1, hours=10), 15)})  # 11 Jan: not worn
    ac = write(root, garmin_path(1001, "physical_activity", "_activity.json"), {"activity": act})
    kcal = [10, 50, 120, 30]  # the counter resets after 120: the day's total is 10+40+70+30 = 150
    cal = [{"activity_name": "kcal_burned", "calories_value": {"value": v, "unit": "kcal"},
            "effective_time_frame": {"date_time": iso(T0 + pd.Timedelta(hours=10 + i))}} for i, v in enumerate(kcal)]
    cal.append({"activity_name": "kcal_burned", "calories_value": {"value": 999, "unit": "kcal"},
                "effective_time_frame": {"date_time": iso(T0 + pd.Timedelta(days=1, hours=12))}})
    ca = write(root, garmin_path(1001, "physical_activity_calorie", "_calorie.json"), {"activity": cal})
    bed = T0 + pd.Timedelta(hours=23)  # 23:00 local on 10 Jan
    segs = [("light", 0, 120), ("deep", 120, 60), ("awake", 180, 30), ("rem", 210, 60), ("unknown", 270, 15),
            ("napping", 285, 10)]
    sl = [{"sleep_stage_state": s, "effective_time_frame": interval(bed + pd.Timedelta(minutes=a), d)}
          for s, a, d in segs]
    bad = interval(bed + pd.Timedelta(minutes=400), 30)["time_interval"]
    bad["start_date_time"], bad["end_date_time"] = bad["end_date_time"], bad["start_date_time"]
    sl.append({"sleep_stage_state": "light", "effective_time_frame": {"time_interval": bad}})
    slp = write(root, garmin_path(1001, "sleep", "_sleep.json"), {"sleep": sl})
    man_g.append({"participant_id": 1001, "heartrate_filepath": hr, "stress_level_filepath": st,
                  "respiratory_rate_filepath": rr, "oxygen_saturation_filepath": sp,
                  "physical_activity_filepath": ac, "active_calories_filepath": ca, "sleep_filepath": slp,
                  "physical_activity_num_days": 1})

    # ---- 1002 (UAB): truncated CGM file, heart rate of the wrong type, a malformed activity record
    c2 = write(root, f"{CGM}/continuous_glucose_monitoring/dexcom_g6/1002/1002_DEX.json", None,
               raw='{"header": {}, "body": {"cgm": [{"blood_glucose": {"value": 1')
    man_cgm.append({"participant_id": 1002, "glucose_filepath": c2})
    hr2 = write(root, garmin_path(1002, "heart_rate", "_heartrate.json"), {"heart_rate": "oops"})
    st2 = write(root, garmin_path(1002, "stress", "_stress.json"),
                {"stress": point("stress", "stress level", [70, 80, 90, "x", {"v": 1}])})
    act2 = [{"activity_name": "walking", "base_movement_quantity": {"value": 10, "unit": "steps"},
             "effective_time_frame": interval(T0, 15)},
            {"activity_name": "walking", "effective_time_frame": interval(T0 + pd.Timedelta(minutes=15), 15)}]
    ac2 = write(root, garmin_path(1002, "physical_activity", "_activity.json"), {"activity": act2})
    man_g.append({"participant_id": 1002, "heartrate_filepath": hr2, "stress_level_filepath": st2,
                  "physical_activity_filepath": ac2, "oxygen_saturation_filepath": "None"})

    # ---- 1003 (UCSD): listed with wearable data, but no file exists at all
    # ---- 1004 (UW): no Garmin (manifest "None"), CGM only
    c4 = write(root, f"{CGM}/continuous_glucose_monitoring/dexcom_g6/1004/1004_DEX.json",
               {"cgm": [{"effective_time_frame": interval(T0 + pd.Timedelta(minutes=5 * i), 0),
                         "blood_glucose": {"unit": "mg/dL", "value": v}} for i, v in enumerate([90, 110, 130])]})
    man_cgm.append({"participant_id": 1004, "glucose_filepath": c4})
    man_g.append({"participant_id": 1004, "heartrate_filepath": "None", "stress_level_filepath": "None"})

    # ---- 1005 (UAB): a small but complete participant (CGM and stress only)
    c5 = write(root, f"{CGM}/continuous_glucose_monitoring/dexcom_g6/1005/1005_DEX.json",
               {"cgm": [{"effective_time_frame": interval(T0 + pd.Timedelta(minutes=5 * i), 0),
                         "blood_glucose": {"unit": "mg/dL", "value": v}} for i, v in enumerate([150, 160, 170])]})
    st5 = write(root, garmin_path(1005, "stress", "_stress.json"),
                {"stress": point("stress", "stress level", [70, 80, 90])})
    man_cgm.append({"participant_id": 1005, "glucose_filepath": c5})
    man_g.append({"participant_id": 1005, "stress_level_filepath": st5})

    pd.DataFrame(man_cgm).to_csv(root / CGM / "manifest.tsv", sep="\t", index=False)
    pd.DataFrame(man_g).astype(object).fillna("None").to_csv(root / GARMIN / "manifest.tsv", sep="\t", index=False)
    pd.DataFrame({
        "participant_id": [1001, 1002, 1003, 1004, 1005],
        "clinical_site": ["UW", "UAB", "UCSD", "UW", "UAB"],
        "study_group": ["healthy", "insulin_dependent",
                        "oral_medication_and_or_non_insulin_injectable_medication_controlled",
                        "pre_diabetes_lifestyle_controlled",
                        "oral_medication_and_or_non_insulin_injectable_medication_controlled"],
        "age": [55, 66, 70, 48, 61],
        "wearable_activity_monitor": ["TRUE", "TRUE", "TRUE", "FALSE", "TRUE"],
        "wearable_blood_glucose": ["TRUE", "TRUE", "TRUE", "TRUE", "TRUE"],
    }).to_csv(root / "participants.tsv", sep="\t", index=False)
    clin = root / "clinical_data"
    clin.mkdir()
    pd.DataFrame([
        (1001, 3004410, "2023-12-01", 6.1, "HbA1c (%)"),
        (1001, 3004410, "2023-06-01", 5.9, "HbA1c (%)"),  # older: superseded
        (1001, 2005200184, "2023-12-01", 14.2, "lbscat_a1c, Hemoglobin - g/dL"),  # not HbA1c
        (1001, 4245997, "2023-12-01", 31.5, "bmi_vsorres, BMI"),
        (1002, 0, "2024-01-02", 7.2, "import_hba1c, HbA1c (%)"),  # found by source value
        (1004, 3004410, "2024-01-02", 25.0, "HbA1c (%)"),  # out of range
    ], columns=["person_id", "measurement_concept_id", "measurement_date", "value_as_number",
                "measurement_source_value"]).to_csv(clin / "measurement.csv", index=False)
    pd.DataFrame([
        (1001, "1/2/24", 777, "cestl, CESD-10 Score"),
        (1002, "1/2/24", 12, "cestl, CESD-10 Score"),
        (1004, "1/2/24", 99, "cestl, CESD-10 Score"),
    ], columns=["person_id", "observation_date", "value_as_number",
                "observation_source_value"]).to_csv(clin / "observation.csv", index=False)
    return root


def test_exact_features_and_masked_sentinels(release: Path) -> None:
    table, rep, rel = feature_table(release, use_cache=False)
    assert rel.version == "v2"
    row = table.set_index("participant_id").loc[1001]
    g = np.array([100, 200, 40, 400, 150], float)  # Low -> 40, High -> 400; NaN, 30, "abc", duplicate out
    assert row.cgm_mean == pytest.approx(178.0)
    assert row.cgm_sd == pytest.approx(g.std(ddof=1))
    assert row.cgm_cv == pytest.approx(100 * g.std(ddof=1) / 178.0)
    assert (row.cgm_tir, row.cgm_tar, row.cgm_tbr) == pytest.approx((40.0, 40.0, 20.0))
    assert row.hr_mean == pytest.approx((6 * 50 + 42 * 60 + 238 * 70) / 286)
    assert row.hr_resting == pytest.approx(50.0)
    assert row.wear_days == 1
    assert row.stress_mean == pytest.approx(40.0)
    assert row.rr_mean == pytest.approx(15.0)
    assert row.spo2_mean == pytest.approx(96.0)
    assert row.steps_per_day == pytest.approx(600.0)  # 100 + "200" + 300 on the one worn day
    assert row.active_kcal_per_day == pytest.approx(150.0)
    assert row.sleep_hours == pytest.approx(4.0)  # light 2 h + deep 1 h + rem 1 h
    assert row.deep_sleep_min == pytest.approx(60.0)
    assert (row.hba1c, row.bmi) == (6.1, 31.5)
    assert np.isnan(row.cesd10)  # 777 is a survey code
    assert (row.site, row.study_group, row.age) == (2.0, 0.0, 55.0)

    r = rep.records
    assert r["cgm|read"] == 9 + 3 + 3 and r["cgm|used"] == 5 + 3 + 3  # 1001, 1004, 1005
    assert r["cgm|null or NaN value"] == 1 and r["cgm|out of range (<39 or >401)"] == 1
    assert r["cgm|non-numeric value"] == 1 and r["cgm|duplicate timestamp"] == 1
    assert r["cgm|note:'Low' read as 40 mg/dL"] == 1 and r["cgm|note:'High' read as 400 mg/dL"] == 1
    assert r["heart_rate|0 (off wrist or charging)"] == 1
    assert r["heart_rate|out of range (<25 or >250)"] == 1
    assert r["stress|-1 (not at rest)"] == 2 and r["stress|-2 (unknown/off wrist)"] == 1
    assert r["stress|out of range (not 0-100)"] == 1 and r["stress|null or NaN value"] == 1
    assert r["stress|non-numeric value"] == 2  # 1002's "x" and {"v": 1}
    assert r["respiratory_rate|-1 (invalid)"] == 1 and r["respiratory_rate|-2 (invalid/off wrist)"] == 1
    assert r["respiratory_rate|out of range (<=0 or >60)"] == 1
    assert r["oxygen_saturation|0 (sentinel)"] == 1 and r["oxygen_saturation|above 100 %"] == 1
    assert r["oxygen_saturation|below 50 %"] == 1
    assert r["activity|empty string value"] == 1 and r["activity|null or NaN value"] == 1
    assert r["activity|out of range (<0 or >60000 per interval)"] == 1
    assert r["activity|malformed record"] == 1 and r["activity|note:numeric string value"] == 1
    assert r["calorie|note:counter resets"] == 1
    assert r["sleep|end before start"] == 1 and r["sleep|unrecognised sleep stage"] == 1
    assert r["hba1c|older result superseded"] == 1 and r["hba1c|out of range (<3 or >20)"] == 1
    assert r["cesd10|survey code 777"] == 1 and r["cesd10|survey code 99"] == 1
    assert all(v == 0 for v in rep.check_balance().values()), rep.check_balance()


def test_bad_files_named_and_rest_loaded(release: Path) -> None:
    table, rep, _ = feature_table(release, use_cache=False)
    issues = dict(rep.issues)
    dex = str(release / CGM / "continuous_glucose_monitoring/dexcom_g6/1002/1002_DEX.json")
    assert "not valid JSON" in issues[dex] and "truncated" in issues[dex]
    hr = str(release / garmin_path(1002, "heart_rate", "_heartrate.json"))
    assert "body.heart_rate should be a list" in issues[hr]
    row = table.set_index("participant_id").loc[1002]
    assert np.isnan(row.cgm_mean) and np.isnan(row.hr_mean)
    assert row.stress_mean == pytest.approx(80.0) and row.steps_per_day == pytest.approx(10.0)
    assert row.hba1c == 7.2 and row.cesd10 == 12
    # 1003 has no file at all: dropped, and the report says why
    assert 1003 not in set(table.participant_id)
    assert "no usable sensor data" in rep.dropped["1003"]
    assert any("participant 1003" in msg for msg in issues.values())
    assert rep.files["cgm|unreadable"] == 1 and rep.files["heart_rate|unreadable"] == 1
    assert rep.files["heart_rate|not provided (manifest)"] == 2  # 1004, 1005
    assert rep.files["heart_rate|absent"] == 1  # 1003: participants.tsv says TRUE, no file
    # 1004: CGM only, no Garmin; HbA1c 25 % masked, CES-D 99 masked
    row = table.set_index("participant_id").loc[1004]
    assert row.cgm_mean == pytest.approx(110.0) and np.isnan(row.hr_mean) and np.isnan(row.hba1c)


def test_labels_and_imputation_counted(release: Path) -> None:
    table, rep, _ = feature_table(release, use_cache=False)
    X, y = label_and_impute(table, rep, "stress", 51.0)
    assert list(X.participant_id) == [1001, 1005] and list(y) == [0, 1]
    assert rep.dropped["1002"] == "no usable CGM data"  # its only CGM file is truncated
    assert rep.dropped["1004"].startswith("fewer than the minimum valid stress readings")
    assert rep.participants["dropped: no usable CGM data"] == 1
    assert rep.imputed["hr_mean"] == 1 and rep.imputed["hba1c"] == 1  # 1005 has neither
    assert "cesd10" not in X.columns and any(n.startswith("cesd10: no participant") for n in rep.notes)
    assert X.set_index("participant_id").loc[1005, "hr_mean"] == table.set_index("participant_id").loc[1001, "hr_mean"]
    X, y = label_and_impute(table, rep, "diabetes", 51.0)
    assert list(X.participant_id) == [1001, 1005] and list(y) == [0, 1]
    assert rep.dropped["1004"] == "no usable Garmin data"
    assert not X.isna().any().any()


def test_loader_records_source_and_warns(release: Path) -> None:
    with pytest.warns(UserWarning, match="1002_DEX.json"):
        ds = load_ai_readi(data_dir=str(release), label="diabetes", use_cache=False)
    assert str(release) in ds.source and "release v2" in ds.source
    assert ds.notes["report"]["dropped"]["1003"].startswith("no usable sensor data")
