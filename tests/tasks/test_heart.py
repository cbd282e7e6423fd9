"""The packaged UCI Cleveland heart-disease data: checksum, shape, label, UCI coding, missing cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cfbench.core.errors import UserError
from cfbench.tasks.heart import FEATURES, HEART_CSV, load_heart


def test_shape_label_and_no_missing() -> None:
    ds = load_heart()
    assert ds.X.shape == (303, 13) and list(ds.X.columns) == FEATURES
    assert int(ds.y.sum()) == 139 and set(np.unique(ds.y)) == {0, 1}
    assert not ds.X.isna().any().any()
    assert ds.notes["imputed"] == {"ca": 4, "thal": 2}
    assert "CC BY 4.0" in ds.source and "sha256=" in ds.source


def test_uci_codes_and_known_rows() -> None:
    raw = pd.read_csv(HEART_CSV)
    assert set(raw.cp) == {1, 2, 3, 4} and set(raw.restecg) == {0, 1, 2} and set(raw.slope) == {1, 2, 3}
    assert set(raw.thal.dropna()) == {3, 6, 7} and set(raw.ca.dropna()) == {0, 1, 2, 3}
    # UCI processed.cleveland.data, rows 1 and 2
    assert raw.iloc[0].tolist() == [63, 1, 1, 145, 233, 1, 2, 150, 0, 2.3, 3, 0, 6, 0]
    assert raw.iloc[1].tolist() == [67, 1, 4, 160, 286, 0, 2, 108, 1, 1.5, 2, 3, 3, 1]
    # the UCI row absent from the Kaggle/pingouin variant (see cfbench/tasks/data/heart.md)
    row = raw.iloc[184].tolist()
    assert row == [60, 0, 4, 158, 305, 0, 2, 161, 0, 0.0, 1, 0, 3, 1]
    assert not raw.duplicated().any()
    ds = load_heart()
    assert ds.X.loc[87, "thal"] == 3.0 and pd.isna(raw.loc[87, "thal"])  # mode imputation


def test_drop_missing() -> None:
    ds = load_heart(missing="drop")
    assert ds.X.shape == (297, 13) and int(ds.y.sum()) == 137
    with pytest.raises(UserError, match="missing='zero'; valid choices: impute, drop"):
        load_heart(missing="zero")


def test_checksum_verified(tmp_path: Path) -> None:
    bad = tmp_path / "heart.csv"
    bad.write_bytes(HEART_CSV.read_bytes().replace(b"63,1,1,145", b"63,1,1,146", 1))
    with pytest.raises(UserError, match="does not match the recorded"):
        load_heart(path=str(bad))
    crlf = tmp_path / "crlf.csv"  # a checkout with Windows line endings is the same data
    crlf.write_bytes(HEART_CSV.read_bytes().replace(b"\n", b"\r\n"))
    assert load_heart(path=str(crlf)).X.shape == (303, 13)
