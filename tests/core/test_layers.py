"""The house by stages: no import cycle, no import from a lower layer up to a higher one, and
imports at the top of modules.

Every import counts, those inside functions too (they are how cycles used to hide).  ``from
package import name`` counts as an import of ``package.name`` when that is a module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: lowest first; a module may import its own layer and the layers below it, never one above.
#: ``=name`` is that module alone: the package root, whose ``__version__`` every layer may read
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("cfbench.core", "cfbench._compat", "=cfbench")),
    ("generators", ("cfbench.generators",)),
    ("tasks", ("cfbench.tasks",)),
    ("records", ("cfbench.records",)),
    ("score", ("cfbench.score",)),
    ("execution", ("cfbench.execution",)),
    ("report", ("cfbench.report",)),
    ("library", ("cfbench.entry", "cfbench.api", "cfbench.testing", "cfbench.builtin",
                 "cfbench.smoke")),
    ("cli", ("cfbench.cli", "cfbench.__main__")),
]

#: modules whose imports inside functions are the design, not a dodge: with the reason
LAZY_BY_DESIGN = {
    "cfbench": "``import cfbench`` stays light; ``cfbench.run`` loads the library on first use",
    "cfbench.api": "a plugin's ``from cfbench.api import hookimpl`` must not load the whole core",
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_in(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    return {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}


def import_edges(modules: Mapping[str, Path]) -> dict[str, dict[str, list[tuple[int, bool]]]]:
    """module -> imported module -> [(line, inside a function)], for imports among ``modules``."""
    edges: dict[str, dict[str, list[tuple[int, bool]]]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f) if n is not f}
        out: dict[str, list[tuple[int, bool]]] = {}
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                           else node.module for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t in modules and t != name:
                    out.setdefault(t, []).append((node.lineno, id(node) in inner))
        edges[name] = out
    return edges


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int:
    """Index in ``LAYERS`` of the longest prefix naming ``module``; -1 when none does."""
    best, where = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if p.startswith("="):
                if module == p[1:]:
                    return i
            elif (module == p or module.startswith(p + ".")) and len(p) > best:
                best, where = len(p), i
    return where


def upward(edges: Mapping[str, Mapping[str, object]]) -> list[str]:
    return [f"{src} ({LAYERS[layer_of(src)][0]}) imports {dst} ({LAYERS[layer_of(dst)][0]})"
            for src, targets in edges.items() for dst in targets
            if layer_of(dst) > layer_of(src)]


CORE = modules_in(ROOT, ["cfbench"])
EDGES = import_edges(CORE)


def test_every_module_has_a_layer():
    assert [m for m in CORE if layer_of(m) < 0] == []


def test_no_import_cycle_in_the_core():
    assert cycles(EDGES) == []


def test_no_import_from_a_lower_layer_up_to_a_higher_one():
    assert upward(EDGES) == []


def test_no_import_cycle_in_the_in_tree_plugins():
    plugins = modules_in(ROOT / "plugins", [p.name for p in (ROOT / "plugins").iterdir()
                                            if (p / "__init__.py").exists()])
    assert cycles(import_edges(plugins)) == []


def hidden_imports(path: Path) -> list[int]:
    """Lines of imports inside functions (of any module) that no comment explains: none on the
    line, none just above it or above the run of imports it belongs to."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    inner = sorted({node.lineno: node for fn in ast.walk(ast.parse(text))
                    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))
                    }.values(), key=lambda n: n.lineno)
    explained: set[int] = set()  # last lines of explained imports
    found = []
    for node in inner:
        above = lines[node.lineno - 2].strip()
        prev = node.lineno - 1  # the last non-blank line before it
        while prev > 1 and not lines[prev - 1].strip():
            prev -= 1
        if "#" in lines[node.lineno - 1] or above.startswith("#") or prev in explained:
            explained.add(node.end_lineno)
        else:
            found.append(node.lineno)
    return found


def test_imports_inside_functions_say_why():
    """Imports sit at the top of modules; one inside a function (a heavy optional dependency,
    say) needs a comment, on its line or the one above, naming the reason, unless its module is
    lazy by design (``LAZY_BY_DESIGN``)."""
    silent = [f"{name}:{line}" for name, path in CORE.items() if name not in LAZY_BY_DESIGN
              for line in hidden_imports(path)]
    assert silent == []


def test_in_tree_plugins_imports_inside_functions_say_why():
    silent = [f"{path.relative_to(ROOT)}:{line}" for path in sorted((ROOT / "plugins").rglob("*.py"))
              for line in hidden_imports(path)]
    assert silent == []


def test_the_checks_see_a_cycle_an_upward_import_and_a_hidden_import(tmp_path):
    """The checks above can fail: a planted cycle through a function-level import, and a core
    module importing the command line, are both reported."""
    pkg = tmp_path / "cfbench"
    (pkg / "core").mkdir(parents=True)
    (pkg / "cli").mkdir()
    for f in ("__init__.py", "core/__init__.py", "cli/__init__.py"):
        (pkg / f).write_text("")
    (pkg / "core" / "a.py").write_text("from cfbench.core import b\n")
    (pkg / "core" / "b.py").write_text("def f():\n    from cfbench.core.a import x\n")
    (pkg / "core" / "c.py").write_text("from cfbench.cli import app\n")
    (pkg / "cli" / "app.py").write_text("")
    edges = import_edges(modules_in(tmp_path, ["cfbench"]))
    assert cycles(edges) == [["cfbench.core.a", "cfbench.core.b"]]
    assert edges["cfbench.core.b"] == {"cfbench.core.a": [(2, True)]}
    assert upward(edges) == ["cfbench.core.c (core) imports cfbench.cli.app (cli)"]
    assert hidden_imports(pkg / "core" / "b.py") == [2]
    (pkg / "core" / "b.py").write_text("def f():\n    # why: a reason\n    from cfbench.core.a import x\n")
    assert hidden_imports(pkg / "core" / "b.py") == []
