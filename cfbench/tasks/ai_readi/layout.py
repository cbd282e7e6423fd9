"""The on-disk layout of an AI-READI release: where the root is, which files hold what.

Shared by the loader (which must find files in a real v1, v2 or v3 release) and the synthetic
writer (which writes the same tree).  Layout facts come from the AI-READI documentation and the
consortium's pipeline, as collected in the project's format reference.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cfbench.core.errors import UserError

ENV_VAR = "CFBENCH_AI_READI_DIR"

GROUPS = (
    "healthy",
    "pre_diabetes_lifestyle_controlled",
    "oral_medication_and_or_non_insulin_injectable_medication_controlled",
    "insulin_dependent",
)
GROUP_LABELS = ("healthy", "pre-diabetes (lifestyle)", "oral/non-insulin medication", "insulin")
SITES = ("UAB", "UCSD", "UW")  # site codes 0, 1, 2 in the feature table
SITE_TZ = {"UW": "America/Los_Angeles", "UCSD": "America/Los_Angeles", "UAB": "America/Chicago"}
SITE_DIGIT = {"UW": 1, "UCSD": 4, "UAB": 7}

CGM_DIR = "wearable_blood_glucose"
GARMIN_DIR = "wearable_activity_monitor"


@dataclass(frozen=True)
class Modality:
    """One per-participant JSON file kind: its folder, manifest column and file-name suffix."""

    key: str
    datatype: str
    folder: str  # modality/device under the datatype folder
    manifest_column: str
    suffix: str


MODALITIES = (
    Modality("cgm", CGM_DIR, "continuous_glucose_monitoring/dexcom_g6", "glucose_filepath", "_DEX.json"),
    Modality("heart_rate", GARMIN_DIR, "heart_rate/garmin_vivosmart5", "heartrate_filepath", "_heartrate.json"),
    Modality("stress", GARMIN_DIR, "stress/garmin_vivosmart5", "stress_level_filepath", "_stress.json"),
    Modality("respiratory_rate", GARMIN_DIR, "respiratory_rate/garmin_vivosmart5", "respiratory_rate_filepath", "_respiratoryrate.json"),
    Modality("oxygen_saturation", GARMIN_DIR, "oxygen_saturation/garmin_vivosmart5", "oxygen_saturation_filepath", "_oxygensaturation.json"),
    Modality("activity", GARMIN_DIR, "physical_activity/garmin_vivosmart5", "physical_activity_filepath", "_activity.json"),
    Modality("calorie", GARMIN_DIR, "physical_activity_calorie/garmin_vivosmart5", "active_calories_filepath", "_calorie.json"),
    Modality("sleep", GARMIN_DIR, "sleep/garmin_vivosmart5", "sleep_filepath", "_sleep.json"),
)
MODALITY = {m.key: m for m in MODALITIES}
SUFFIX_RE = re.compile(r"^(\d+)(" + "|".join(re.escape(m.suffix) for m in MODALITIES) + r")$")
SUFFIX_TO_KEY = {m.suffix: m.key for m in MODALITIES}


@dataclass
class Release:
    """A release folder resolved: its data root, version and participants table."""

    root: Path  # folder holding participants.tsv (``<container>/dataset`` in v3 downloads)
    container: Path  # the folder the user named
    version: str  # "v1", "v2" or "v3" (inferred, see ``detect_version``)
    participants: pd.DataFrame  # one row per participant, ID column normalised to ``participant_id``
    files: dict[tuple[int, str], Path] = field(default_factory=dict)  # (pid, modality) -> file
    listed_missing: dict[tuple[int, str], str] = field(default_factory=dict)  # listed, not on disk
    not_provided: set[tuple[int, str]] = field(default_factory=set)  # manifest says "None"
    issues: list[tuple[str, str]] = field(default_factory=list)  # (file, message)

    def stat_key(self) -> list[tuple[str, int, int]]:
        """(relative path, size, mtime_ns) of every input file: the feature cache's key."""
        paths = [self.root / "participants.tsv"]
        for name in ("measurement.csv", "observation.csv"):
            paths.append(self.root / "clinical_data" / name)
        for dt in (CGM_DIR, GARMIN_DIR):
            paths.append(self.root / dt / "manifest.tsv")
        paths.extend(sorted(self.files.values()))
        out = []
        for p in paths:
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((str(p.relative_to(self.root)), st.st_size, st.st_mtime_ns))
        return out


def find_root(path: str | Path) -> tuple[Path, Path]:
    """(container, data root): ``participants.tsv`` in ``path`` or in ``path/dataset``."""
    container = Path(path).expanduser()
    if not container.is_dir():
        raise UserError(f"AI-READI data folder {str(container)!r} does not exist or is not a folder")
    for root in (container, container / "dataset"):
        if (root / "participants.tsv").is_file():
            return container, root
    raise UserError(
        f"{container} is not an AI-READI release: expected participants.tsv in it or in its "
        "dataset/ subfolder (with wearable_blood_glucose/, wearable_activity_monitor/ and "
        "clinical_data/ next to it)"
    )


def read_participants(root: Path) -> tuple[pd.DataFrame, str]:
    """participants.tsv with the ID column renamed to ``participant_id``; also the original name."""
    path = root / "participants.tsv"
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"{path}: cannot read participants table ({exc})") from None
    id_col = next((c for c in ("participant_id", "person_id") if c in df.columns), None)
    if id_col is None:
        raise UserError(
            f"{path}: no participant_id (v1/v2) or person_id (v3) column; columns: "
            f"{', '.join(df.columns)}"
        )
    df = df.rename(columns={id_col: "participant_id"})
    ids = pd.to_numeric(df["participant_id"], errors="coerce")
    bad = df.loc[ids.isna(), "participant_id"].tolist()
    df = df[ids.notna()].copy()
    df["participant_id"] = ids[ids.notna()].astype(int)
    dup = df["participant_id"].duplicated()
    dups = sorted(set(df.loc[dup, "participant_id"]))
    df = df[~dup].reset_index(drop=True)
    df.attrs["bad_ids"] = bad
    df.attrs["duplicate_ids"] = dups
    return df, id_col


def detect_version(root: Path, id_col: str) -> str:
    """v3 uses ``person_id``; v1's activity manifest says ``physical_activity_num_records``.

    A ``dataset_description.json`` with a ``Version``/``version`` field overrides the guess.
    """
    desc = root / "dataset_description.json"
    if desc.is_file():
        try:
            meta = json.loads(desc.read_text(encoding="utf-8"))
            ver = str(meta.get("Version") or meta.get("version") or "")
            m = re.match(r"v?(\d+)", ver)
            if m and m.group(1) in ("1", "2", "3"):
                return f"v{m.group(1)}"
        except (OSError, ValueError, AttributeError):
            pass
    if id_col == "person_id":
        return "v3"
    man = root / GARMIN_DIR / "manifest.tsv"
    try:
        header = man.read_text(encoding="utf-8").split("\n", 1)[0]
    except OSError:
        return "v2"
    return "v1" if "physical_activity_num_records" in header else "v2"


def _scan(root: Path) -> dict[tuple[int, str], Path]:
    """Every ``<pid>_<suffix>.json`` under the two wearable datatype folders."""
    found: dict[tuple[int, str], Path] = {}
    for dt in (CGM_DIR, GARMIN_DIR):
        base = root / dt
        if not base.is_dir():
            continue
        for dirpath, _dirs, names in os.walk(base):
            for name in names:
                m = SUFFIX_RE.match(name)
                if m:
                    found.setdefault((int(m.group(1)), SUFFIX_TO_KEY[m.group(2)]), Path(dirpath) / name)
    return found


def _manifest_paths(root: Path, release: Release) -> None:
    """Read each datatype manifest: ``None`` = not provided; a listed file not on disk = missing."""
    for dt in (CGM_DIR, GARMIN_DIR):
        path = root / dt / "manifest.tsv"
        if not path.is_file():
            release.issues.append((str(path), "manifest.tsv not found; files located by scanning the folder"))
            continue
        try:
            man = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            release.issues.append((str(path), f"unreadable manifest ({exc}); files located by scanning"))
            continue
        id_col = next((c for c in ("participant_id", "person_id") if c in man.columns), None)
        if id_col is None:
            release.issues.append((str(path), "no participant_id/person_id column; manifest ignored"))
            continue
        for mod in MODALITIES:
            if mod.datatype != dt or mod.manifest_column not in man.columns:
                continue
            for pid_s, rel in zip(man[id_col], man[mod.manifest_column], strict=True):
                try:
                    pid = int(pid_s)
                except ValueError:
                    continue
                rel = rel.strip()
                if rel in ("", "None", "none", "nan", "NaN"):
                    release.not_provided.add((pid, mod.key))
                    continue
                p = root / rel.lstrip("/")
                if (pid, mod.key) in release.files:
                    continue
                if p.is_file():
                    release.files[(pid, mod.key)] = p
                else:
                    release.listed_missing[(pid, mod.key)] = str(p)


def _file_manifest(container: Path, root: Path, release: Release) -> None:
    """v3 downloads carry ``file-manifest.tsv`` (column ``file_path``): flag listed files not on disk."""
    path = container / "file-manifest.tsv"
    if not path.is_file():
        return
    try:
        fm = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, usecols=["file_path"])
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        release.issues.append((str(path), f"unreadable file manifest ({exc}); ignored"))
        return
    for rel in fm["file_path"]:
        name = rel.rsplit("/", 1)[-1]
        m = SUFFIX_RE.match(name)
        if not m:
            continue
        key = (int(m.group(1)), SUFFIX_TO_KEY[m.group(2)])
        if key not in release.files:
            rel = rel.lstrip("/")
            rel = rel[len("dataset/"):] if rel.startswith("dataset/") else rel
            release.listed_missing.setdefault(key, str(root / rel))


def open_release(path: str | Path) -> Release:
    """Resolve a release folder and index its per-participant files (nothing parsed yet)."""
    container, root = find_root(path)
    participants, id_col = read_participants(root)
    version = detect_version(root, id_col)
    rel = Release(root=root, container=container, version=version, participants=participants)
    for dup in participants.attrs.get("duplicate_ids", []):
        rel.issues.append((str(root / "participants.tsv"), f"participant ID {dup} listed more than once; first row kept"))
    for bad in participants.attrs.get("bad_ids", []):
        rel.issues.append((str(root / "participants.tsv"), f"participant ID {bad!r} is not an integer; row skipped"))
    if not any((root / d).is_dir() for d in (CGM_DIR, GARMIN_DIR)):
        rel.issues.append((str(root), f"neither {CGM_DIR}/ nor {GARMIN_DIR}/ exists: no sensor data"))
    rel.files = _scan(root)
    _manifest_paths(root, rel)
    _file_manifest(container, root, rel)
    for key in list(rel.listed_missing):
        if key in rel.files:
            del rel.listed_missing[key]
    return rel
