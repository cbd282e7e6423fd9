"""``cfbench task init``: a commented spec from a table that loads as written, and the whole
own-data path (init -> run) with each classifier choice, including a user's skops pipeline."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mixed_task import wearable

from cfbench.cli.app import main
from cfbench.tasks.init_spec import infer_column
from cfbench.tasks.spec import Task, load_spec


def test_infer_column_kinds():
    s = pd.Series
    assert infer_column("smoker", s([0, 1, 1, 0])).note == "binary"
    c = infer_column("gender", s(["m", "f", "f"]))
    assert (c.kind, c.categories, c.labels) == ("categorical", [0, 1], ["f", "m"])
    c = infer_column("activity", s(["high", "low", "medium", "low"]))
    assert (c.kind, c.labels) == ("ordinal", ["low", "medium", "high"])
    c = infer_column("fitness_level", s([1, 2, 3, 5, 4]))
    assert (c.kind, c.categories) == ("ordinal", [1, 2, 3, 4, 5])
    c = infer_column("clinic_site", s([3, 1, 2, 1]))
    assert (c.kind, c.categories) == ("categorical", [1, 2, 3])
    c = infer_column("steps", s([1000, 2500, 8000, 3]))
    assert (c.kind, c.integer, c.lower, c.upper) == ("numeric", True, 3, 8000)
    c = infer_column("hrv", s([40.5, np.nan, 51.25]))
    assert (c.kind, c.integer, c.lower, c.upper) == ("numeric", False, 40.5, 51.25)
    assert infer_column("notes", s([f"t{i}" for i in range(50)])).skipped.startswith("text with 50")
    assert "non-numeric" in infer_column("chol", s(["200", "210", "abc"] + ["190"] * 30)).note


def test_init_writes_a_commented_spec_that_loads(tmp_path, capsys):
    data = tmp_path / "data" / "cohort.csv"
    data.parent.mkdir()
    df = wearable()
    df.loc[[5, 9], "hrv_ms"] = np.nan
    df.to_csv(data, index=False)
    out = tmp_path / "tasks" / "cohort.toml"
    assert main(["task", "init", str(data), "--label", "diabetic", "--out", str(out)]) == 0
    text = out.read_text()
    printed = capsys.readouterr().out
    assert "wrote" in printed and "loaded it:" in printed and "impute-median" in printed
    assert "# Likely immutable (by name), decide and set `mutable = false`: age, gender, clinic_site" in text
    assert 'path = "../data/cohort.csv"' in text and 'id = "subject_id"' in text
    assert "# column 'notes' left out: text with 200 distinct values" in text
    spec = load_spec(out)
    assert spec.name == "cohort" and spec.loader_options["positive"] == 1
    kinds = {f.name: f.kind for f in spec.schema}
    assert kinds == {"age": "numeric", "gender": "categorical", "clinic_site": "categorical",
                     "steps": "numeric", "hrv_ms": "numeric", "smoker": "categorical",
                     "activity": "ordinal", "fitness_level": "ordinal"}
    assert all(f.mutable for f in spec.schema)
    assert spec.schema["age"].lower == df.age.min() and spec.schema["age"].integer
    task = Task.load(spec)
    assert task.scores["n_train"] + task.scores["n_test"] == 200


@pytest.mark.parametrize("args, fragment", [
    (["--label", "nope"], "no column 'nope' (the label); columns: subject_id, age"),
    (["--label", "gender"], "column 'gender' has values 'female', 'male'; say which is class 1 with --positive"),
    (["--label", "gender", "--positive", "other"], "--positive 'other' is not a value of column 'gender'"),
    (["--label", "diabetic", "--name", "../x"], "--name '../x' is not a valid task name; expected letters, digits"),
    (["--label", "diabetic", "--model", "svm"], "--model 'svm': unknown model; valid choices: random-forest"),
    (["--label", "diabetic", "--model-file", "m.pkl"], "is a pickle (.pkl); cfbench never loads pickles"),
])
def test_init_mistakes_are_one_line(tmp_path, capsys, args, fragment):
    data = tmp_path / "c.csv"
    wearable().to_csv(data, index=False)
    (tmp_path / "m.pkl").write_bytes(b"\x80\x04junk")
    out = tmp_path / "t.toml"
    argv = ["task", "init", str(data), "--out", str(out), *[a.replace("m.pkl", str(tmp_path / "m.pkl"))
                                                            for a in args]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err


def test_init_refuses_to_overwrite(tmp_path, capsys):
    data = tmp_path / "c.csv"
    wearable().to_csv(data, index=False)
    out = tmp_path / "t.toml"
    out.write_text("keep me")
    assert main(["task", "init", str(data), "--label", "diabetic", "--out", str(out)]) == 2
    assert out.read_text() == "keep me" and "pass --force" in capsys.readouterr().err


def fit_user_pipeline(spec_path: Path, data: Path, out: Path, string_labels: bool) -> None:
    """The user's own pipeline, fit outside cfbench on the spec's encoding and saved with skops."""
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    spec = load_spec(spec_path)
    df = pd.read_csv(data)
    X = pd.DataFrame({
        f.name: (df[f.name].map(dict(zip(f.labels, f.categories, strict=True))) if f.labels
                 else df[f.name]).astype(float) for f in spec.schema})
    y = np.where(df["diabetic"] == 1, "yes", "no") if string_labels else df["diabetic"]
    pipe = Pipeline([("prep", ColumnTransformer([("imp", SimpleImputer(), spec.schema.names)])),
                     ("model", ExtraTreesClassifier(n_estimators=30, random_state=0))]).fit(X, y)
    sio.dump(pipe, out)


def test_user_skops_pipeline_is_checked_against_the_spec(tmp_path, capsys):
    data = tmp_path / "c.csv"
    df = wearable()
    df.to_csv(data, index=False)
    out = tmp_path / "t.toml"
    assert main(["task", "init", str(data), "--label", "diabetic", "--out", str(out)]) == 0
    fit_user_pipeline(out, data, tmp_path / "m.skops", string_labels=True)
    text = out.read_text().replace('model = "random-forest"', 'model = "skops"\npath = "m.skops"')
    own = tmp_path / "own.toml"
    own.write_text(text)
    # the model's classes are "no"/"yes" and the task's positive is 1: refused, with the fix
    with pytest.raises(Exception, match=r"the model's classes are \['no', 'yes'\]; none is the task's "
                                        r"positive value 1"):
        Task.load(load_spec(own))
    fit_user_pipeline(out, data, tmp_path / "m.skops", string_labels=False)
    task = Task.load(load_spec(own))
    assert task.predict_proba(task.X_test).shape == (len(task.X_test), 2)
    assert task.provenance()["model_sha256"] == hashlib.sha256(
        (tmp_path / "m.skops").read_bytes()).hexdigest()
    # the spec lists the features in another order than the model was fit on
    feats = text[text.index("[[features]]"):].split("\n\n")
    swapped = text[:text.index("[[features]]")] + "\n\n".join([feats[1], feats[0], *feats[2:]])
    own.write_text(swapped)
    with pytest.raises(Exception, match="same columns in another order: list the"):
        Task.load(load_spec(own))
    (tmp_path / "m.skops").write_bytes((tmp_path / "m.skops").read_bytes()[:-50])
    own.write_text(text)
    with pytest.raises(Exception, match="cannot use model file|cannot load model file"):
        Task.load(load_spec(own))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cfbench", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("choice", ["random-forest", "logistic-regression", "hist-gradient-boosting",
                                    "skops"])
def test_own_csv_init_then_run(tmp_path, choice):
    """A CSV no test has seen -> task init -> run: the fast methods produce scored CFs."""
    data = tmp_path / "cohort.csv"
    df = wearable(n=240, seed=11)
    df.loc[[3, 17], "steps"] = np.nan
    df.to_csv(data, index=False)
    spec = tmp_path / "tasks" / "cohort.toml"
    r = cli("task", "init", str(data), "--label", "diabetic", "--out", str(spec))
    assert r.returncode == 0, r.stderr
    if choice == "skops":
        fit_user_pipeline(spec, data, tmp_path / "own.skops", string_labels=False)
        r = cli("task", "init", str(data), "--label", "diabetic", "--out", str(spec), "--force",
                "--model-file", str(tmp_path / "own.skops"))
    elif choice != "random-forest":
        r = cli("task", "init", str(data), "--label", "diabetic", "--out", str(spec), "--force",
                "--model", choice)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    r = cli("run", "--task", str(spec), "--methods", "nearest-neighbour,nice:sparsity",
            "--n-queries", "3", "--timeout", "30", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classifier"]["model"] == choice
    for method in ("nearest-neighbour", "nice:sparsity"):
        stats = summary["methods"][method]["all"]
        assert stats["n_queries"] == 6 and stats["n_cfs"] >= 5, (method, stats)
        assert stats["all"]["validity"] > 0.5
    recs = pd.read_parquet(out / "records.parquet")
    assert len(recs["provenance"].map(lambda p: json.loads(p)["model_sha256"]
                                      if isinstance(p, str) else p["model_sha256"]).unique()) == 1
