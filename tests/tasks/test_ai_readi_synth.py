"""Synthetic AI-READI releases in the v1, v2 and v3 layouts: written, then read by the real loader."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from cfbench.core.errors import UserError
from cfbench.tasks.ai_readi import loader as L
from cfbench.tasks.ai_readi.layout import ENV_VAR
from cfbench.tasks.ai_readi.synth import SynthParams, write_release

SMALL = dict(participants=16, days=2, garmin_interval_min=15)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("synth")
    return {v: write_release(base / v, SynthParams(release=v, seed=3, **SMALL)) for v in ("v1", "v2", "v3")}


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _one(root: Path, pattern: str) -> dict:
    return json.loads(next(root.rglob(pattern)).read_text())


def test_version_quirks_on_disk(releases: dict[str, Path]) -> None:
    v1, v2, v3 = releases["v1"], releases["v2"], releases["v3"]
    assert (v1 / "participants.tsv").is_file() and (v3 / "dataset" / "participants.tsv").is_file()
    assert (v3 / "file-manifest.tsv").is_file() and not (v3 / "participants.tsv").exists()
    assert pd.read_csv(v1 / "participants.tsv", sep="\t").columns[0] == "participant_id"
    assert pd.read_csv(v3 / "dataset" / "participants.tsv", sep="\t").columns[0] == "person_id"
    assert isinstance(_one(v1, "*_DEX.json")["body"], list)
    assert isinstance(_one(v2, "*_DEX.json")["body"]["cgm"], list)
    assert "duration" in _one(v1, "*_calorie.json")["body"]["activity"][0]
    assert "calories_value" in _one(v2, "*_calorie.json")["body"]["activity"][0]
    assert "sleep_duration" in _one(v1, "*_sleep.json")["body"]["sleep"][0]
    assert "sleep_stage_state" in _one(v3, "*_sleep.json")["body"]["sleep"][0]
    t1 = _one(v1, "*_activity.json")["body"]["activity"][0]["effective_time_frame"]["time_interval"]
    assert "T" not in t1["start_date_time"] and not t1["start_date_time"].endswith("Z")
    assert "timezone" in _one(v3, "*_heartrate.json")["header"]
    assert "timezone" not in _one(v2, "*_heartrate.json")["header"]
    assert "physical_activity_num_records" in (v1 / "wearable_activity_monitor/manifest.tsv").read_text()
    man = pd.read_csv(v2 / "wearable_blood_glucose/manifest.tsv", sep="\t")
    assert man["glucose_filepath"].str.startswith("/").all()
    text = "".join(p.read_text() for p in v2.rglob("*_stress.json"))
    assert '"value": -1,' in text and '"value": -2,' in text  # stress sentinels are written


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_each_version_loads(releases: dict[str, Path], version: str) -> None:
    table, rep, rel = L.feature_table(releases[version], use_cache=False)
    assert rel.version == version
    assert 12 <= len(table) <= 16
    assert table["cgm_mean"].between(60, 350).mean() > 0.9
    assert table["stress_mean"].notna().mean() > 0.7
    assert table["steps_per_day"].dropna().between(100, 40000).all()
    assert table["sleep_hours"].dropna().between(2, 12).all()
    if version == "v1":  # v1 sleep has no stages
        assert table["deep_sleep_min"].isna().all()
    else:
        assert table["deep_sleep_min"].notna().mean() > 0.7
    assert rep.records["heart_rate|0 (off wrist or charging)"] > 0
    assert rep.records["stress|-1 (not at rest)"] > 0 and rep.records["respiratory_rate|-2 (invalid/off wrist)"] > 0
    assert all(v == 0 for v in rep.check_balance().values())
    assert not rep.issues, rep.issues[:3]


def test_v1_deep_sleep_left_out_with_a_note(releases: dict[str, Path]) -> None:
    table, rep, _ = L.feature_table(releases["v1"], use_cache=False)
    X, y = L.label_and_impute(table, rep, "diabetes", 51.0)
    assert "deep_sleep_min" not in X.columns
    assert any(n.startswith("deep_sleep_min") for n in rep.notes)


def test_deterministic_by_seed(tmp_path: Path) -> None:
    a = write_release(tmp_path / "a", SynthParams(release="v2", seed=5, participants=4, days=1, garmin_interval_min=15))
    b = write_release(tmp_path / "b", SynthParams(release="v2", seed=5, participants=4, days=1, garmin_interval_min=15))
    c = write_release(tmp_path / "c", SynthParams(release="v2", seed=6, participants=4, days=1, garmin_interval_min=15))
    assert _tree_digest(a) == _tree_digest(b) != _tree_digest(c)


def test_bad_params_and_nonempty_out(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="release 'v4'"):
        write_release(tmp_path / "x", release="v4")
    with pytest.raises(UserError, match="participants=0"):
        write_release(tmp_path / "x", participants=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        write_release(tmp_path / "full", participants=2)


def test_source_resolution_order(releases: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(ENV_VAR, str(releases["v2"]))
    ds = L.load_ai_readi(label="diabetes")  # the environment variable
    assert f"release v2 at {releases['v2']}" in ds.source
    ds = L.load_ai_readi(data_dir=str(releases["v1"]), label="diabetes")  # the option wins
    assert f"release v1 at {releases['v1']}" in ds.source
    monkeypatch.delenv(ENV_VAR)
    ds = L.load_ai_readi(label="diabetes", participants=12, days=1, seed=2, garmin_interval_min=15)
    assert "synthetic AI-READI release" in ds.source and "seed=2, participants=12" in ds.source
    made = list((tmp_path / "cache" / "ai-readi-synth").iterdir())
    assert len(made) == 1 and (made[0] / ".complete").is_file()
    # named relative to the cache, so a board holding the text is the same on every machine
    assert f"at $CFBENCH_CACHE/ai-readi-synth/{made[0].name}" in ds.source and str(tmp_path) not in ds.source


def test_feature_cache_keyed_by_content(releases: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFBENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "copy"
    import shutil

    shutil.copytree(releases["v2"], root)
    first, _, _ = L.feature_table(root)
    assert len(list((tmp_path / "cache" / "ai-readi-features").glob("*.parquet"))) == 1

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("rebuilt although the release did not change")

    monkeypatch.setattr(L, "build_table", boom)
    again, _, _ = L.feature_table(root)
    pd.testing.assert_frame_equal(first, again)
    f = next(root.rglob("*_stress.json"))
    f.write_text(f.read_text().replace('"value": 3', '"value": 4'))
    with pytest.raises(AssertionError, match="rebuilt"):
        L.feature_table(root)


def test_bad_loader_options() -> None:
    with pytest.raises(UserError, match="label='mood'"):
        L.load_ai_readi(label="mood")
    with pytest.raises(UserError, match="stress_threshold"):
        L.load_ai_readi(stress_threshold=150)


def test_parallel_build_matches_serial(releases: dict[str, Path]) -> None:
    a, ra, _ = L.feature_table(releases["v3"], use_cache=False)
    b, rb, _ = L.feature_table(releases["v3"], use_cache=False, n_jobs=2)
    pd.testing.assert_frame_equal(a, b)
    assert ra.records == rb.records


def test_parallel_release_matches_serial(releases: dict[str, Path], tmp_path: Path) -> None:
    """Participants written by 2 processes give the same release, byte for byte."""
    two = write_release(tmp_path / "v3", SynthParams(release="v3", seed=3, **SMALL), n_jobs=2)
    assert _tree_digest(two) == _tree_digest(releases["v3"])


def test_bad_n_jobs() -> None:
    with pytest.raises(UserError, match=r"n_jobs=-1; expected 0 \(every core\) or a positive integer"):
        L.load_ai_readi(n_jobs=-1)


def test_causal_story_in_cohort() -> None:
    """The documented causal story holds in the generator's participant-level traits."""
    from cfbench.tasks.ai_readi.synth import cohort

    co = cohort(SynthParams(participants=2000, seed=0))
    r = co[["stress", "sleep_h", "steps", "rhr", "cv", "glucose", "hba1c"]].corr(method="spearman")
    assert r.loc["stress", "sleep_h"] < -0.2 and r.loc["stress", "steps"] < -0.2
    assert r.loc["stress", "rhr"] > 0.2 and r.loc["stress", "cv"] > 0.1
    assert r.loc["hba1c", "glucose"] > 0.5 and r.loc["rhr", "steps"] < -0.1
    by_group = co.groupby("group")[["glucose", "hba1c", "cv"]].median()
    assert by_group["glucose"].is_monotonic_increasing and by_group["hba1c"].is_monotonic_increasing
    assert 5.5 <= co["hba1c"].median() <= 6.1
    assert 0.3 <= (co["stress"] >= 51).mean() <= 0.8
