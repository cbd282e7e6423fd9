"""The ``table`` loader and the load-time data checks: every bad file gets one line naming the
file, the column and the problem; missing cells follow the declared policy."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from cfbench.core.errors import UserError
from cfbench.tasks.spec import Task, load_spec

FEATURES = '''
[[features]]
name = "age"
integer = true
[[features]]
name = "sex"
kind = "categorical"
categories = [0, 1]
labels = ["F", "M"]
[[features]]
name = "chol"
[[features]]
name = "activity"
kind = "ordinal"
categories = [0, 1, 2]
labels = ["low", "medium", "high"]
'''


def cohort(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "pid": [f"P{i}" for i in range(n)],
        "age": rng.integers(30, 80, n),
        "sex": rng.choice(["F", "M"], n),
        "chol": rng.normal(220, 30, n).round(1),
        "activity": rng.choice(["low", "medium", "high"], n),
    })
    risk = 0.05 * (df.age - 55) + 0.04 * (df.chol - 220) + 0.5 * (df.sex == "M")
    df["outcome"] = np.where(risk + rng.normal(0, 1, n) > 0, "sick", "well")
    return df


def spec_for(tmp_path, df: pd.DataFrame | None, options: str = "", extra: str = "",
             data_name: str = "data.csv", features: str = FEATURES):
    data = tmp_path / data_name
    if df is not None:
        if data_name.endswith(".parquet"):
            df.to_parquet(data, index=False)
        else:
            df.to_csv(data, index=False)
    text = (f'name = "own"\n{extra}\n[dataset]\nloader = "table"\n[dataset.options]\n'
            f'path = "{data_name}"\nlabel = "outcome"\npositive = "sick"\nid = "pid"\n{options}\n'
            '[classifier]\nmodel = "logistic-regression"\n' + features)
    p = tmp_path / "own.toml"
    p.write_text(text)
    return load_spec(p)


def load_error(spec) -> str:
    with pytest.raises(UserError) as e:
        Task.load(spec)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_csv_loads_with_text_categories_mapped_to_their_codes(tmp_path):
    df = cohort()
    task = Task.load(spec_for(tmp_path, df))
    X = pd.concat([task.X_train, task.X_test]).sort_index()
    assert X["sex"].tolist() == (df.sex == "M").astype(float).tolist()
    assert X["activity"].tolist() == df.activity.map({"low": 0, "medium": 1, "high": 2}).astype(float).tolist()
    assert task.class_names() == {0: "outcome = well", 1: "outcome = sick"}
    assert (np.r_[task.y_train, task.y_test].sum()) == (df.outcome == "sick").sum()
    prov = task.provenance()
    assert "data.csv" in prov["data_source"] and prov["classifier"] == "logistic-regression"


def test_parquet_and_a_path_relative_to_the_spec_file(tmp_path):
    sub = tmp_path / "specs"
    sub.mkdir()
    cohort().to_parquet(tmp_path / "c.parquet", index=False)
    p = sub / "own.toml"
    p.write_text('name = "own"\n[dataset]\nloader = "table"\n[dataset.options]\n'
                 'path = "../c.parquet"\nlabel = "outcome"\npositive = "sick"\n' + FEATURES)
    task = Task.load(load_spec(p))
    assert task.scores["n_train"] + task.scores["n_test"] == 120


def test_sha256_is_checked(tmp_path):
    df = cohort()
    df.to_csv(tmp_path / "data.csv", index=False)
    good = hashlib.sha256((tmp_path / "data.csv").read_bytes()).hexdigest()
    Task.load(spec_for(tmp_path, None, f'sha256 = "{good}"'))
    msg = load_error(spec_for(tmp_path, None, f'sha256 = "{"0" * 64}"'))
    assert "data.csv" in msg and "does not match dataset.options.sha256" in msg


@pytest.mark.parametrize("mutate, options, fragments", [
    (lambda d: d.drop(columns="outcome"), "", ["data.csv", "no column 'outcome' (the label)"]),
    (lambda d: d.assign(chol=d.chol.astype(object).where(d.index != 2, "abc").where(d.index != 9, "??")),
     "", ["data.csv", "column 'chol' has 2 non-numeric cell(s), e.g. row 3 (id P2): 'abc'"]),
    (lambda d: d.assign(chol=d.chol.where(~d.index.isin([4, 7]))), "",
     ["data.csv", "column 'chol' has 2 missing value(s), e.g. row 5 (id P4)", 'missing = "drop"']),
    (lambda d: d.assign(chol=d.chol.where(d.index != 5, np.inf)), 'missing = "impute-median"',
     ["data.csv", "column 'chol' has 1 infinite value(s), e.g. row 6 (id P5)"]),
    (lambda d: d.assign(outcome="sick"), "", ["data.csv", "column 'outcome' has a single class"]),
    (lambda d: d.assign(outcome="ill"), "", ["column 'outcome' never equals positive = 'sick'"]),
    (lambda d: d.sort_values("outcome").iloc[[0, 1, 2, -1]], "",
     ["data.csv", "class 0 has 1 row; a stratified split needs at least 2"]),
    (lambda d: d.assign(sex=d.sex.where(d.index != 8, "X")), "",
     ["column 'sex' has 1 non-numeric cell(s), e.g. row 9 (id P8): 'X'; valid labels: F, M"]),
    (lambda d: d.assign(outcome=d.outcome.where(d.index != 1)), "",
     ["column 'outcome' (the label) is empty in 1 row(s), e.g. row 2; labels are never imputed"]),
    (lambda d: d, 'missing = "sometimes"', ["dataset.options.missing: got 'sometimes'; valid choices"]),
])
def test_bad_files_get_one_line_naming_file_column_and_problem(tmp_path, mutate, options, fragments):
    msg = load_error(spec_for(tmp_path, mutate(cohort()), options))
    for f in fragments:
        assert f in msg, msg


def test_binary_junk_is_not_a_csv(tmp_path):
    (tmp_path / "data.csv").write_bytes(bytes(range(256)) * 10)
    assert "data.csv: cannot read as CSV" in load_error(spec_for(tmp_path, None))
    (tmp_path / "data.parquet").write_bytes(b"not parquet at all")
    msg = load_error(spec_for(tmp_path, None, data_name="data.parquet"))
    assert "cannot read as Parquet" in msg


def test_missing_cells_dropped_or_imputed_by_the_declared_policy(tmp_path):
    df = cohort()
    df.loc[[4, 7], "chol"] = np.nan
    df.loc[10, "activity"] = np.nan
    dropped = Task.load(spec_for(tmp_path, df, 'missing = "drop"'))
    assert dropped.scores["n_train"] + dropped.scores["n_test"] == 117
    assert dropped.dataset.notes["dropped_missing"] == 3
    imputed = Task.load(spec_for(tmp_path, df, 'missing = "impute-median"'))
    X = pd.concat([imputed.X_train, imputed.X_test]).sort_index()
    assert len(X) == 120 and not X.isna().any().any()
    assert X.loc[4, "chol"] == df.chol.median()
    codes = df.activity.map({"low": 0, "medium": 1, "high": 2})
    assert X.loc[10, "activity"] == codes.mode().iloc[0]  # categorical: most frequent code


def test_categorical_codes_outside_declared_are_an_error_absent_ones_a_warning(tmp_path, capfd):
    df = cohort().assign(sex=lambda d: (d.sex == "M").astype(int))
    df.loc[[3, 5], "sex"] = 2
    feats = FEATURES.replace('labels = ["F", "M"]\n', "")
    msg = load_error(spec_for(tmp_path, df, features=feats))
    assert "feature 'sex': 2 row(s) have value(s) 2 outside its categories [0, 1], e.g. row 4" in msg
    df.loc[[3, 5], "sex"] = 1
    feats = feats.replace("categories = [0, 1]", "categories = [0, 1, 9]")
    Task.load(spec_for(tmp_path, df, features=feats))
    err = capfd.readouterr().err
    assert "warning" in err and "feature 'sex': declared categories 9 do not occur in the data" in err


def test_builtin_loaders_pass_the_same_checks(tmp_path, monkeypatch):
    """NaN or inf from any loader is caught at load time, not at scoring."""
    from cfbench.core.plugins import registry
    from cfbench.tasks import loaders

    bunch = loaders.load_breast_cancer()
    bunch.X.iloc[3, 0] = np.nan
    monkeypatch.setitem(registry().loaders, "sklearn-breast-cancer", lambda: bunch)
    p = tmp_path / "b.toml"
    p.write_text('name = "b"\n[dataset]\nloader = "sklearn-breast-cancer"\n'
                 '[[features]]\nname = "mean radius"\n')
    with pytest.raises(UserError, match="column 'mean radius' has 1 missing value.*row 4"):
        Task.load(load_spec(p))
    bunch.X.iloc[3, 0] = np.inf
    with pytest.raises(UserError, match="column 'mean radius' has 1 infinite value"):
        Task.load(load_spec(p))


def test_cli_bad_file_is_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    df = cohort()
    df["chol"] = df.chol.astype(object)
    df.loc[6, "chol"] = "high"
    spec = spec_for(tmp_path, df)
    r = subprocess.run([sys.executable, "-m", "cfbench", "run", "--task", spec.path, "--methods",
                        "nearest-neighbour", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.csv: column 'chol' has 1 non-numeric cell(s), e.g. row 7 (id P6): 'high'" in lines[0]
