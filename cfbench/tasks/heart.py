"""UCI Cleveland heart disease, shipped with cfbench as ``cfbench/tasks/data/heart.csv``.

The file's provenance, licence (CC BY 4.0) and the checks made on it are in ``cfbench/tasks/data/heart.md``.
Its SHA-256 (of the file with LF line endings) is verified on every load, so an edited or
truncated copy is never used silently.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from cfbench.core.errors import UserError
from cfbench.tasks.datasets import Dataset

HEART_CSV = Path(__file__).parent / "data" / "heart.csv"
HEART_SHA256 = "d4472c50075929a9b56fdc74a56279920f3e9198b9c0dad61c9adb1f190adb36"
FEATURES = ["age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang",
            "oldpeak", "slope", "ca", "thal"]
MISSING = ("impute", "drop")


def load_heart(missing: str = "impute", path: str | None = None) -> Dataset:
    """303 Cleveland patients, 13 features; label 1 = disease (UCI ``num`` > 0, 139 rows).

    ``missing="impute"`` fills UCI's 6 missing cells (4 ``ca``, 2 ``thal``) with the column mode
    (``ca`` 0, ``thal`` 3 = normal); ``"drop"`` drops those rows.  ``path`` is for tests only.
    """
    if missing not in MISSING:
        raise UserError(f"uci-heart: missing={missing!r}; valid choices: {', '.join(MISSING)}")
    csv = Path(path) if path else HEART_CSV
    try:
        blob = csv.read_bytes()
    except OSError as exc:
        raise UserError(f"{csv}: cannot read the packaged heart data ({exc.strerror or exc})") from None
    digest = hashlib.sha256(blob.replace(b"\r\n", b"\n")).hexdigest()  # LF-normalised
    if digest != HEART_SHA256:
        raise UserError(
            f"{csv}: SHA-256 {digest} does not match the recorded {HEART_SHA256}; "
            "the packaged file was changed or damaged (reinstall cfbench-harness)"
        )
    df = pd.read_csv(csv)
    X = df[FEATURES].astype(float)
    y = df["disease"].to_numpy(dtype=int)
    na = X.isna()
    imputed = {c: int(n) for c, n in na.sum().items() if n}
    if missing == "drop":
        keep = ~na.any(axis=1).to_numpy()
        X, y = X[keep].reset_index(drop=True), y[keep]
        note = f"dropped {int((~keep).sum())} rows with missing ca/thal"
    else:
        X = X.fillna({c: float(X[c].mode().iloc[0]) for c in imputed})
        note = "missing ca/thal imputed with the column mode"
    return Dataset(
        X=X,
        y=np.asarray(y),
        class_names={0: "no heart disease", 1: "heart disease"},
        source=f"UCI Cleveland heart disease (CC BY 4.0), {csv.name} sha256={digest[:16]}, {note}",
        notes={"imputed" if missing == "impute" else "dropped": imputed, "sha256": digest},
    )
