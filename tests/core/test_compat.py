"""The flat module paths of cfbench 0.x still import, with a DeprecationWarning naming the new
home, and hand out the very objects of the new modules (one class, not a copy)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from cfbench._compat import MOVED


def test_every_old_path_names_modules_that_exist():
    import importlib

    for old, targets in MOVED.items():
        for t in targets:
            assert importlib.util.find_spec(t) is not None, (old, t)


def test_old_paths_warn_and_give_the_same_objects():
    # a fresh interpreter: the old modules must not be cached by earlier tests
    code = """
import warnings
warnings.simplefilter("error", DeprecationWarning)
import cfbench.tasks.spec, cfbench.execution.orchestrator, cfbench.execution.config
import cfbench.tasks.ai_readi.loader
caught = []
for stmt in ("from cfbench.task import Task", "from cfbench.runner import RunConfig, execute, method_label",
             "from cfbench.ai_readi.loader import load_ai_readi", "from cfbench import metric_registry"):
    try:
        exec(stmt)
    except DeprecationWarning as w:
        caught.append(str(w))
print(caught)
warnings.simplefilter("ignore", DeprecationWarning)
from cfbench.task import Task
from cfbench.runner import RunConfig, execute, method_label
from cfbench.ai_readi.loader import load_ai_readi
assert Task is cfbench.tasks.spec.Task
assert RunConfig is cfbench.execution.config.RunConfig and execute is cfbench.execution.orchestrator.execute
assert load_ai_readi is cfbench.tasks.ai_readi.loader.load_ai_readi
import sys
assert sys.modules["cfbench.ai_readi.loader"] is cfbench.tasks.ai_readi.loader  # not loaded twice
print("same")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.strip().splitlines()
    warned = ast.literal_eval(first)  # the list of warnings the child printed
    assert [w.split(" moved to ")[0] for w in warned] == [
        "cfbench.task", "cfbench.runner", "cfbench.ai_readi", "cfbench.metric_registry"]
    assert "cfbench.tasks.spec" in warned[0] and "cfbench.api" in warned[0]
    assert second == "same"


def test_an_unknown_old_name_is_still_an_import_error():
    with pytest.raises(ImportError):
        __import__("cfbench.no_such_module")
