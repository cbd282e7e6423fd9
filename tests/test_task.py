"""Task specs: validated on load, with errors naming the file, the key and what was expected."""

from __future__ import annotations

import pytest

from cfbench.errors import UserError
from cfbench.task import Task, load_spec, resolve_spec

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
    ("name = 'x'\n[dataset\n", "not valid TOML"),
])
def test_bad_specs_name_file_and_key(tmp_path, bad, fragment):
    p = write(tmp_path, bad)
    with pytest.raises(UserError) as e:
        load_spec(p)
    assert str(p) in str(e.value) and fragment in str(e.value)


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
