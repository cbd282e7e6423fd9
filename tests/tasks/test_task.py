"""Task specs: validated on load, with errors naming the file, the key and what was expected."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cfbench.core.errors import UserError
from cfbench.tasks.spec import Task, load_spec, resolve_spec

GOOD = '''
name = "tiny"
[dataset]
loader = "sklearn-breast-cancer"
[[features]]
name = "mean radius"
unit = "px"
lower = 0
upper = 40
[[features]]
name = "mean texture"
mutable = false
'''


def write(tmp_path, text):
    p = tmp_path / "t.toml"
    p.write_text(text)
    return p


def test_good_spec_loads_and_runs(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.schema.names == ["mean radius", "mean texture"]
    assert spec.schema.immutable == ["mean texture"]
    assert spec.n_per_class == 50 and spec.target == "opposite" and spec.model == "random-forest"
    task = Task.load(spec)
    q = task.queries(n_per_class=3)
    assert sorted(q["source"].tolist()) == [0, 0, 0, 1, 1, 1]
    assert (q["target"] == 1 - q["source"]).all()
    assert set(task.scores) == {"accuracy", "f1", "n_train", "n_test"}
    # bounds left open are filled from the training data
    assert task.schema["mean texture"].lower == task.X_train["mean texture"].min()


@pytest.mark.parametrize("bad, fragment", [
    (GOOD.replace('unit = "px"', 'unit = "px"\nkind = "blob"'), "features[0].kind: got 'blob'; expected one of numeric"),
    (GOOD.replace("upper = 40", "upper = -1"), "lower bound 0 is above upper bound -1"),
    (GOOD.replace("mutable = false", "mutable = 3"), "features[1].mutable: expected true or false"),
    (GOOD.replace('[dataset]', 'colour = 1\n[dataset]'), "unknown key 'colour'"),
    (GOOD + '[classifier]\nmodel = "svm"\n', "classifier.model: unknown model 'svm'; valid choices: random-forest"),
    (GOOD + '[target]\nclass = 7\n', "target.class: expected"),
    (GOOD + '[split]\ntest_size = 2\n', "split.test_size: expected a fraction"),
    (GOOD.replace('name = "mean texture"', 'name = "mean radius"'), "duplicate feature 'mean radius'"),
    ("name = 'x'\n[dataset\n", "not a valid TOML task file"),
])
def test_bad_specs_name_file_and_key(tmp_path, bad, fragment):
    p = write(tmp_path, bad)
    with pytest.raises(UserError) as e:
        load_spec(p)
    assert str(p) in str(e.value) and fragment in str(e.value)


SEED_TABLES = {"split": "[split]\nseed = {}\n", "queries": "[queries]\nseed = {}\n",
               "classifier": "[classifier]\nseed = {}\n",
               "dataset.options": None}


def _with_seed(table: str, value: int) -> str:
    if table == "dataset.options":
        return GOOD.replace('loader = "sklearn-breast-cancer"',
                            f'loader = "sklearn-breast-cancer"\noptions = {{ seed = {value} }}')
    return GOOD + SEED_TABLES[table].format(value)


@pytest.mark.slow
@pytest.mark.parametrize("table", list(SEED_TABLES))
@pytest.mark.parametrize("value", [-1, 2**32])
def test_out_of_range_seed_is_one_line_exit_2(tmp_path, table, value):
    """A seed numpy would refuse is a user error at parse time, for every seed key."""
    p = write(tmp_path, _with_seed(table, value))
    r = subprocess.run([sys.executable, "-m", "cfbench", "run", "--task", str(p), "--methods",
                        "nearest-neighbour", "--n-queries", "1", "--quiet",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == [f"cfbench: error: {p}: {table}.seed: expected an integer in "
                     f"0..4294967295, got {value}"], r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("table", ["split", "queries", "classifier"])
def test_seed_range_edges_are_accepted(tmp_path, table):
    for value in (0, 2**32 - 1):
        assert load_spec(write(tmp_path, _with_seed(table, value))) is not None


def test_unknown_loader_and_column(tmp_path):
    with pytest.raises(UserError, match="unknown dataset loader 'nope'; valid choices: .*sklearn-breast-cancer"):
        Task.load(load_spec(write(tmp_path, GOOD.replace("sklearn-breast-cancer", "nope"))))
    p = write(tmp_path, GOOD.replace('name = "mean texture"', 'name = "shoe size"'))
    with pytest.raises(UserError, match="feature 'shoe size' is not a column of dataset"):
        Task.load(load_spec(p))


def test_resolve_by_name_or_path(tmp_path):
    assert resolve_spec("breast-cancer").name == "breast-cancer"
    assert resolve_spec(str(write(tmp_path, GOOD))).name == "tiny"
    with pytest.raises(UserError, match="unknown task 'nope'; valid choices: .*breast-cancer"):
        resolve_spec("nope")
    with pytest.raises(UserError, match="cannot read task file"):
        resolve_spec(str(tmp_path / "missing.toml"))


def test_classifier_is_cached(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    first = Task.load(spec)
    second = Task.load(spec)
    assert second.model_from_cache and second.scores == first.scores


# --------------------------------------------------------------------------- hostile spec files

BAD_SPEC_CASES = [
    ("binary", None, "not a valid TOML task file (not UTF-8 text"),
    ("nul", "name = 'x'\0\n", "not a valid TOML task file"),
    ("name", GOOD.replace('name = "tiny"', 'name = "../../x"'),
     "name '../../x' is not a valid task name; expected letters, digits"),
    ("nan-bound", GOOD.replace("lower = 0", "lower = nan"), "features[0].lower: expected a finite number, got nan"),
    ("inf-bound", GOOD.replace("upper = 40", "upper = inf"), "features[0].upper: expected a finite number"),
    ("unknown-param", GOOD + "[classifier]\nparams = { n_trees = 5 }\n",
     "classifier.params: unknown parameter 'n_trees' for random-forest (RandomForestClassifier); valid: "),
    ("ill-typed-param", GOOD + "[classifier]\nparams = { n_estimators = \"many\" }\n",
     "classifier.params: The 'n_estimators' parameter of RandomForestClassifier must be an int"),
    ("range-param", GOOD + "[classifier]\nmodel = \"logistic-regression\"\nparams = { C = -1 }\n",
     "classifier.params: The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]"),
    ("random-state", GOOD + "[classifier]\nparams = { random_state = 3 }\n",
     "classifier.params.random_state: set classifier.seed instead"),
    ("hgb-param", GOOD + "[classifier]\nmodel = \"hist-gradient-boosting\"\nparams = { n_estimators = 5 }\n",
     "unknown parameter 'n_estimators' for hist-gradient-boosting (HistGradientBoostingClassifier); valid: "),
    ("dataset-key", GOOD.replace('[dataset]', '[dataset]\npath = "x.csv"'),
     "dataset: unknown key 'path'; valid keys: loader, options"),
    ("skops-no-path", GOOD + '[classifier]\nmodel = "skops"\n', "classifier.path: model = \"skops\" needs"),
    ("path-not-skops", GOOD + '[classifier]\npath = "m.skops"\n', "classifier.path: only for model = \"skops\""),
]


@pytest.mark.parametrize("case, text, fragment", BAD_SPEC_CASES, ids=[c[0] for c in BAD_SPEC_CASES])
def test_hostile_spec_files_get_one_line(tmp_path, case, text, fragment):
    p = tmp_path / "t.toml"
    if text is None:
        p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    else:
        p.write_text(text)
    with pytest.raises(UserError) as e:
        load_spec(p)
    assert fragment in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_too_small_test_size_is_one_line_at_load(tmp_path):
    spec = load_spec(write(tmp_path, GOOD + "[split]\ntest_size = 0.001\n"))
    with pytest.raises(UserError, match=r"split.test_size = 0.001 leaves 1 test row\(s\) of 569; each "
                                        r"split needs a row of each class \(for 569 rows use test_size "
                                        r"between 0.00351 and 0.996\)"):
        Task.load(spec)


def test_incompatible_params_fail_to_fit_in_one_line(tmp_path):
    spec = load_spec(write(tmp_path, GOOD + '[classifier]\nmodel = "hist-gradient-boosting"\n'
                                            'params = { categorical_features = [99] }\n'))
    with pytest.raises(UserError, match="classifier 'hist-gradient-boosting' failed to fit"):
        Task.load(spec, use_cache=False)


@pytest.mark.parametrize("model", ["logistic-regression", "hist-gradient-boosting"])
def test_new_builtin_models_take_the_task_params(tmp_path, model):
    params = "{ C = 0.5 }" if model == "logistic-regression" else "{ max_iter = 30 }"
    spec = load_spec(write(tmp_path, GOOD + f'[classifier]\nmodel = "{model}"\nparams = {params}\n'))
    task = Task.load(spec, use_cache=False)
    est = task.model.named_steps["model"]
    assert (est.C == 0.5) if model == "logistic-regression" else (est.max_iter == 30)
    assert task.scores["accuracy"] > 0.8 and task.provenance()["classifier"] == model


@pytest.mark.slow
def test_cli_reports_spec_file_cases_in_one_line(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bin.toml"
    bad.write_bytes(bytes(range(256)))
    small = write(tmp_path, GOOD + "[split]\ntest_size = 0.001\n")
    for path, fragment in ((bad, "not a valid TOML task file"), (small, "split.test_size = 0.001")):
        r = subprocess.run([sys.executable, "-m", "cfbench", "run", "--task", str(path), "--methods",
                            "nearest-neighbour", "--out", str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and fragment in r.stderr, r.stderr
