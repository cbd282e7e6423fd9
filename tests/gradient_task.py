"""heart with a gradient classifier, and the checks every gradient CF plugin's tests share."""

from __future__ import annotations

import os
from pathlib import Path

import cfbench
from cfbench.core.plugins import registry
from cfbench.entry import prepare
from cfbench.tasks.spec import Task, resolve_spec

SPEC = (Path(__file__).resolve().parents[1] / "tasks" / "heart.toml").read_text()
PLUGINS = ("wachter", "roar", "revise", "cem")


def heart_spec(folder: Path, model: str) -> Path:
    """heart under a name no registered task has (``heart-mlp`` is one) with ``model`` as its
    classifier at cfbench's default settings (a spec file in ``folder``)."""
    text = SPEC.replace('name = "heart"', f'name = "heart-{model}-test"', 1)
    text = text.replace('model = "random-forest"', f'model = "{model}"', 1)
    path = folder / f"heart-{model}-test.toml"
    path.write_text(text)
    return path


def heart_task(folder: Path, model: str = "mlp") -> Task:
    return Task.load(resolve_spec(str(heart_spec(folder, model))))


def register_plugins(site: Path, monkeypatch) -> None:
    """The gradient plugins as entry points, whether or not the installed cfbench lists them
    (an editable install of another checkout may not): a dist-info on the path."""
    info = site / "cfbench_gradient_plugins-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cfbench-gradient-plugins\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[cfbench]\n" + "".join(f"{p} = cfbench_{p}\n" for p in PLUGINS))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    registry.cache_clear()


def skipped_on_forest(method: str, folder: Path) -> dict[str, str]:
    """What a run plan on the random-forest heart skips (nothing may be written)."""
    plan = prepare(cfbench.RunConfig(task=str(heart_spec(folder, "random-forest")),
                                     methods=f"{method},nearest-neighbour", out=folder / "r"))
    assert [c.method for c in plan.pairs] == ["nearest-neighbour"]
    assert not (folder / "r").exists()
    return plan.skipped


def run_queries(gen, task: Task, per_class: int):
    """``gen`` on the task's first queries: (queries, targets, results, valid per query)."""
    queries = task.queries(per_class)
    X = queries[task.schema.names].reset_index(drop=True)
    targets = queries["target"].to_numpy(int)
    results = gen.generate(X, targets, 1, 30.0)
    valid = [r.status == "ok" and int(task.predict(r.cfs)[0]) == t
             for r, t in zip(results, targets, strict=True)]
    return X, targets, results, valid


def same_cfs(a, b) -> bool:
    """Two result lists with the same statuses and the same CFs."""
    rows = [(r.status, None if r.cfs is None else r.cfs.to_numpy().tolist()) for r in a]
    return rows == [(r.status, None if r.cfs is None else r.cfs.to_numpy().tolist()) for r in b]


def assert_immutables_kept(task: Task, X, results) -> None:
    for i, r in enumerate(results):
        if r.status == "ok":
            for name in task.schema.immutable:
                assert r.cfs[name].iloc[0] == X[name].iloc[i], (name, r.cfs, X.iloc[i])
