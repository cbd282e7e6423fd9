"""Bad AI-READI input: a clear message naming the file, and everything else still loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from cfbench.cli.app import main
from cfbench.core.errors import UserError
from cfbench.tasks.ai_readi.loader import feature_table, load_ai_readi
from cfbench.tasks.ai_readi.synth import SynthParams, write_release


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pristine") / "rel"
    return write_release(out, SynthParams(release="v2", seed=1, participants=10, days=2, garmin_interval_min=15))


@pytest.fixture
def rel(pristine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CFBENCH_CACHE", str(tmp_path / "cache"))
    dst = tmp_path / "rel"
    shutil.copytree(pristine, dst)
    return dst


def _first(rel: Path, pattern: str) -> Path:
    return sorted(rel.rglob(pattern))[0]


def test_not_a_release_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match=r"is not an AI-READI release: expected participants.tsv"):
        load_ai_readi(data_dir=str(tmp_path))
    with pytest.raises(UserError, match="does not exist"):
        load_ai_readi(data_dir=str(tmp_path / "nope"))


def test_not_a_release_cli_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "report", "--source", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path) in err[0] and "participants.tsv" in err[0]


def test_participants_without_id_column(rel: Path) -> None:
    p = rel / "participants.tsv"
    df = pd.read_csv(p, sep="\t").rename(columns={"participant_id": "subject"})
    df.to_csv(p, sep="\t", index=False)
    with pytest.raises(UserError, match=r"participants.tsv: no participant_id \(v1/v2\) or person_id \(v3\)"):
        feature_table(rel, use_cache=False)


def test_truncated_json(rel: Path) -> None:
    clean, _, _ = feature_table(rel, use_cache=False)
    f = _first(rel, "*_stress.json")
    f.write_bytes(f.read_bytes()[:500])
    table, rep, _ = feature_table(rel, use_cache=False)
    msg = dict(rep.issues)[str(f)]
    assert "not valid JSON" in msg and "truncated or corrupt" in msg
    pid = int(f.name.split("_")[0])
    assert pd.isna(table.set_index("participant_id").loc[pid, "stress_mean"])
    assert len(table) == len(clean)  # nothing else lost
    drop = ["stress_mean", "stress_readings"]
    other = table.drop(columns=drop).set_index("participant_id")
    pd.testing.assert_frame_equal(other, clean.drop(columns=drop).set_index("participant_id"),
                                  check_like=True, check_dtype=False, check_exact=False)
    with pytest.warns(UserWarning, match=f.name):
        load_ai_readi(data_dir=str(rel), label="diabetes")


def test_wrong_types(rel: Path) -> None:
    f = _first(rel, "*_heartrate.json")
    f.write_text('{"header": {}, "body": {"heart_rate": {"value": 70}}}')
    g = _first(rel, "*_respiratoryrate.json")
    g.write_text('[1, 2, 3]')
    h = sorted(rel.rglob("*_DEX.json"))[1]
    text = h.read_text()
    h.write_text(text.replace('"unit": "mg/dL", "value": ', '"unit": "mg/dL", "value": {"mg": 1}, "x": ', 3))
    table, rep, _ = feature_table(rel, use_cache=False)
    issues = dict(rep.issues)
    assert "body.heart_rate should be a list of records, got dict" in issues[str(f)]
    assert "expected a JSON object with 'header' and 'body', got list" in issues[str(g)]
    assert rep.records["cgm|non-numeric value"] == 3
    row = table.set_index("participant_id").loc[int(f.name.split("_")[0])]
    assert pd.isna(row.hr_mean) and pd.notna(row.stress_mean)  # the other files still count


def test_missing_modality_and_empty_file(rel: Path) -> None:
    gone = _first(rel, "*_sleep.json")
    gone.unlink()
    empty = _first(rel, "*_calorie.json")
    empty.write_text("")
    table, rep, _ = feature_table(rel, use_cache=False)
    issues = dict(rep.issues)
    assert issues[str(gone)] == "listed in a manifest but not found on disk"
    assert "file is empty" in issues[str(empty)]
    assert rep.files["sleep|listed but not on disk"] == 1
    pid = int(gone.name.split("_")[0])
    row = table.set_index("participant_id").loc[pid]
    assert pd.isna(row.sleep_hours) and pd.notna(row.hr_mean)


def test_whole_modality_folder_missing(rel: Path) -> None:
    shutil.rmtree(rel / "wearable_blood_glucose")
    table, rep, _ = feature_table(rel, use_cache=False)
    assert table["cgm_mean"].isna().all() and table["hr_mean"].notna().any()
    assert any("wearable_blood_glucose/manifest.tsv" in p for p, _ in rep.issues)


def test_missing_clinical_tables(rel: Path) -> None:
    (rel / "clinical_data" / "measurement.csv").unlink()
    table, rep, _ = feature_table(rel, use_cache=False)
    assert table["hba1c"].isna().all()
    assert any(p.endswith("measurement.csv") and "HbA1c and BMI missing" in m for p, m in rep.issues)


def test_duplicate_and_bad_participant_ids(rel: Path) -> None:
    p = rel / "participants.tsv"
    df = pd.read_csv(p, sep="\t", dtype=str)
    extra = df.iloc[[0, 1]].copy()
    extra.iloc[1, 0] = "ABC"
    pd.concat([df, extra]).to_csv(p, sep="\t", index=False)
    table, rep, _ = feature_table(rel, use_cache=False)
    assert len(table) == 10
    msgs = [m for path, m in rep.issues if path == str(p)]
    assert f"participant ID {df.iloc[0, 0]} listed more than once; first row kept" in msgs
    assert "participant ID 'ABC' is not an integer; row skipped" in msgs
