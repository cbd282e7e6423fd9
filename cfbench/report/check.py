"""``cfbench leaderboard --validate`` beyond the schema: is a committed board what its run gave?

Checks per ``<task>.json`` board:

* the Markdown and SVG plots are rendered again from the JSON and must equal the committed
  files byte for byte (a hand-edited table cell or plot is caught);
* when the board carries ``records_sha256``, the committed ``<task>.records.jsonl.gz`` must have
  that hash, and the board's numbers are recomputed from those records through the same code
  ``cfbench leaderboard RUN --update`` used (a hand-edited or invented number is caught).

* the suite file the board names is the committed one and asks for the board's settings and
  augmentation study (so the command the board states is the one that made it), and every
  method added by ``--add`` ran on the board's task version;

and once for the folder: ``index.html`` is the page ``cfbench report --board`` makes from the
boards.  These are the checks the test suite makes on the committed boards, so an author learns
of a problem in seconds.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from cfbench.core.errors import UserError
from cfbench.core.strict_json import read_json
from cfbench.execution import augment as aug
from cfbench.execution.suite import SETTINGS as SUITE_SETTINGS
from cfbench.execution.suite import load_suite
from cfbench.report.board import (
    FROM_RECORDS,
    board_from_records,
    board_markdown,
    check_task_name,
    read_records_bytes,
    records_path,
    render_companions,
)
from cfbench.report.html import build_board_index
from cfbench.tasks.spec import Task, resolve_spec

MAX_DIFFS = 8
#: the run settings that change what a board measures (a suite file must agree on each)
RESULT_SETTINGS = ("seeds", "n_queries", "k", "budget", "timeout", "fit_timeout", "data_dir")


def verify_boards(board_dir: Path, skip: tuple[str, ...] = ("schema.json",)
                  ) -> tuple[list[str], list[str]]:
    """(errors, warnings) for every board JSON in ``board_dir``."""
    errors: list[str] = []
    warnings: list[str] = []
    for path in sorted(Path(board_dir).glob("*.json")):
        if path.name in skip:
            continue
        e, w = verify_board(path)
        errors += e
        warnings += w
    if not errors:  # a page is rebuilt only from boards that check out
        stale = index_problem(board_dir)
        errors += [stale] if stale else []
    return errors, warnings


def verify_board(path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) for one board: companions re-rendered, numbers recomputed from records."""

    try:
        board = read_json(path)  # size, nesting depth and strict JSON checked: one line
    except UserError as exc:
        return [str(exc)], []
    if not isinstance(board, dict):
        return [f"{path}: not a JSON object"], []
    try:
        name = check_task_name(board.get("task"))
    except UserError as exc:
        return [f"{path}: {exc}"], []
    errors, warnings = _rendered(path, board, name)
    e, w = _recomputed(path, board, name)
    return errors + e + suite_problems(path, board) + _added_agree(path, board), warnings + w


def suite_problems(path: Path, board: dict[str, Any]) -> list[str]:
    """The suite file a board names must be the committed one (same SHA-256) and must ask for
    the board's settings and study, so the command the board states is what made it."""
    cfg = board.get("config") or {}
    suite = cfg.get("suite")
    if not isinstance(suite, dict):
        return []
    spath = path.parent / str(suite.get("file"))
    if not spath.is_file():
        return [f"{path}: made from the suite file {suite.get('file')}, which is not in "
                f"{path.parent}; commit it beside the board"]
    got = hashlib.sha256(spath.read_bytes()).hexdigest()
    if got != suite.get("sha256"):
        return [f"{path}: made from {spath.name} with SHA-256 {str(suite.get('sha256'))[:16]}, "
                f"but that file is now {got[:16]}; regenerate the board from it"]
    try:
        runs = [r for r in load_suite(spath).runs if board.get("task") in (r.task, r.name)]
    except UserError as exc:
        return [f"{path}: its suite file does not load ({exc})"]
    if len(runs) != 1:
        return [f"{path}: {spath.name} has no run of task {board.get('task')!r}"]
    [run] = runs
    out = []
    if run.methods != cfg.get("methods"):
        out.append(f"methods {cfg.get('methods')!r} on the board, {run.methods!r} in the file")
    for key in RESULT_SETTINGS:
        want = run.settings.get(key, SUITE_SETTINGS[key][1])
        want = list(want) if isinstance(want, (list, tuple, range)) else want
        if not _same_setting(cfg.get(key), want):
            out.append(f"{key} {cfg.get(key)!r} on the board, {want!r} in the file")
    if cfg.get("params"):
        out.append(f"--param {cfg['params']!r} on the board, none in the file")
    out += _study_agrees(board, run.augment, cfg)
    return [f"{path}: the board contradicts {spath.name}, which it names as its command: "
            f"{'; '.join(out)}; regenerate it with `cfbench run --config {spath.name}` and "
            "`--update`, without other flags"] if out else []


def _study_agrees(board: dict[str, Any], want: dict[str, Any] | None, cfg: dict[str, Any]
                  ) -> list[str]:
    """The board's augmentation study against the suite file's ``[augment]`` table."""
    study = board.get("augmentation")
    if not want:
        return ["an augmentation study on the board, none in the file"] if study else []
    if not study:
        return ["no augmentation study on the board, but the file has an [augment] table"]
    out = []
    added = {m for e in board.get("added") or [] for m in e.get("augment_methods") or []}
    listed = [m for m in str(study.get("methods") or "").split(",") if m not in added]
    if ",".join(listed) != want["methods"]:
        out.append(f"augment.methods {','.join(listed)!r} on the board, {want['methods']!r} "
                   "in the file")
    seeds = list(want["seeds"]) if want.get("seeds") is not None else list(aug.DEFAULT_SEEDS)
    curve = sorted({float(want["fraction"]), *map(float, want.get("curve") or [])})
    for key, mine in (("seeds", seeds), ("scenarios", list(want["scenarios"])),
                      ("fraction", want["fraction"]), ("max_per_class", want["max_per_class"]),
                      ("curve", curve), ("timeout", want.get("timeout") or cfg.get("timeout")),
                      ("budget", want.get("budget") or cfg.get("budget"))):
        theirs = study.get(key, [study.get("fraction")] if key == "curve" else None)
        if not _same_setting(theirs, mine):
            out.append(f"augment.{key} {theirs!r} on the board, {mine!r} in the file")
    return out


def _same_setting(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_setting(x, y) for x, y in zip(a, b, strict=True))
    return _same(a, b) if not isinstance(a, list) and not isinstance(b, list) else False


def _added_agree(path: Path, board: dict[str, Any]) -> list[str]:
    """Each method added by ``--add`` ran on the board's task version and is on the board."""
    out = []
    for e in board.get("added") or []:
        if not isinstance(e, dict):
            return [f"{path}: added: expected objects, got {e!r:.60}"]
        prov = e.get("provenance") or {}
        if prov.get("task_hash") != board.get("task_hash"):
            out.append(f"{path}: added {e.get('methods')!r} ran on another version of the task")
        missing = [m for m in e.get("methods") or [] if m not in (board.get("methods") or {})]
        if missing:
            out.append(f"{path}: added {missing!r} are not among the board's methods")
    return out


def index_problem(board_dir: Path) -> str | None:
    """Why ``board_dir/index.html`` is not the page ``cfbench report --board`` makes from the
    boards there (None when it is, or when there is no page)."""
    page = Path(board_dir) / "index.html"
    if not page.is_file():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            fresh = build_board_index(Path(board_dir), Path(tmp)).read_bytes()
        except UserError as exc:
            return f"{page}: cannot be rebuilt ({exc})"
    if fresh != page.read_bytes():
        return (f"{page}: is not the page of the boards beside it (stale); rebuild it with "
                f"`cfbench report --board {board_dir}`")
    return None


def _rendered(path: Path, board: dict[str, Any], name: str) -> tuple[list[str], list[str]]:
    """Render the Markdown and plots from the JSON into a scratch folder and compare."""

    errors: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                (Path(tmp) / f"{name}.md").write_text(board_markdown(board))
                rendered = [Path(tmp) / f"{name}.md"]
                skipped = ["plots not compared: matplotlib is not installed "
                           "(pip install 'cfbench-harness[augment]')"]
            else:
                rendered = render_companions(board, Path(tmp))
                skipped = []
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            return [f"{path}: cannot render the board ({type(exc).__name__}: {exc})"], []
        for new in rendered:
            committed = path.parent / new.name
            if not committed.exists():
                errors.append(f"{path}: companion file {new.name} is missing")
                continue
            old_bytes, new_bytes = committed.read_bytes(), new.read_bytes()
            if old_bytes != new_bytes:
                note = ("" if new.suffix == ".md" else
                        f" (plots also depend on the matplotlib version: {_matplotlib()} here)")
                errors.append(f"{committed}: differs from the one rendered from {path.name}"
                              + _first_difference(old_bytes, new_bytes) + note
                              + "; regenerate it with `cfbench leaderboard RUN --update`")
    return errors, [f"{path}: {s}" for s in skipped]


def _matplotlib() -> str:
    # optional extra `augment` (and slow to import): loaded when a plot is drawn
    import matplotlib

    return str(matplotlib.__version__)


def _first_difference(old: bytes, new: bytes) -> str:
    a = old.decode("utf-8", "replace").splitlines()
    b = new.decode("utf-8", "replace").splitlines()
    for i, (x, y) in enumerate(zip(a, b, strict=False), 1):
        if x != y:
            return f" at line {i}: committed {x[:100]!r}, rendered {y[:100]!r}"
    return f" (committed {len(a)} lines, rendered {len(b)})"


def _recomputed(path: Path, board: dict[str, Any], name: str) -> tuple[list[str], list[str]]:
    """Tie the board to its run: the records' hash, then the numbers recomputed from them."""

    rpath = records_path(path.parent, name)
    want = board.get("records_sha256")
    if want is None:
        if rpath.exists():
            return [f"{path}: {rpath.name} is present but the board has no records_sha256; "
                    "regenerate both with `cfbench leaderboard RUN --update`"], []
        return [f"{path}: not tied to a run (no records file); its numbers cannot be "
                 "recomputed; regenerate with `cfbench leaderboard RUN --update`"], []
    if not rpath.exists():
        return [f"{path}: records_sha256 is set but {rpath.name} is missing"], []
    blob = rpath.read_bytes()
    got = hashlib.sha256(blob).hexdigest()
    if got != want:
        return [f"{rpath}: SHA-256 {got[:16]}… does not match the board's records_sha256 "
                f"{str(want)[:16]}…; the board and its records do not belong together"], []
    try:
        records = read_records_bytes(blob)
        spec = resolve_spec(name)
    except (OSError, ValueError, RecursionError, UserError) as exc:
        return [f"{rpath}: cannot be read ({str(exc)[:160]})"], []
    if spec.hash != board.get("task_hash"):
        return [f"{path}: made with another version of task {name!r} (hash "
                f"{str(board.get('task_hash'))[:12]}, now {spec.hash[:12]}); regenerate it"], []
    data_dir = (board.get("config") or {}).get("data_dir")
    if data_dir and not Path(data_dir).exists():
        return [], [f"{path}: numbers not recomputed: its data folder {data_dir} is not here"]
    try:
        task = Task.load(spec, dataset_options={"data_dir": data_dir} if data_dir else None)
        again = board_from_records(task, records, config=board.get("config", {}),
                                   provenance=board.get("provenance", {}),
                                   skipped_methods=board.get("skipped_methods", {}),
                                   augmentation=board.get("augmentation"))
    except (UserError, KeyError, TypeError, ValueError) as exc:
        return [f"{rpath}: the board cannot be recomputed from these records "
                f"({type(exc).__name__}: {exc})"], []
    diffs: list[str] = []
    for key in FROM_RECORDS:
        _diff(json.loads(json.dumps(again[key], default=lambda o: o.item())), board.get(key),
              key, diffs)
    if not diffs:
        return [], []
    more = f" (and {len(diffs) - MAX_DIFFS} more)" if len(diffs) > MAX_DIFFS else ""
    return [f"{path}: {len(diffs)} values differ from those recomputed from {rpath.name}{more}"
            f"{_version_note(board)}:"] + [f"  {d}" for d in diffs[:MAX_DIFFS]], []


def _version_note(board: dict[str, Any]) -> str:
    """Which scoring libraries differ from the board's provenance (numbers can move with them)."""

    made = (board.get("provenance") or {}).get("libraries") or {}
    moved = []
    for lib in ("numpy", "pandas", "scikit-learn"):
        try:
            here = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            continue
        if made.get(lib) not in (None, here):
            moved.append(f"{lib} {made[lib]} there, {here} here")
    return f" (made with other library versions: {'; '.join(moved)})" if moved else ""


def _diff(new: Any, old: Any, where: str, out: list[str]) -> None:
    """Append ``where: committed X, recomputed Y`` for every leaf that differs (NaN == null)."""
    if isinstance(new, dict) and isinstance(old, dict):
        for k in sorted(set(new) | set(old), key=str):
            if k not in old:
                out.append(f"{where}/{k}: missing from the board")
            elif k not in new:
                out.append(f"{where}/{k}: in the board but not in the records")
            else:
                _diff(new[k], old[k], f"{where}/{k}", out)
    elif isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            _diff(a, b, f"{where}/{i}", out)
    elif not _same(new, old):
        out.append(f"{where}: committed {_short(old)}, recomputed {_short(new)}")


def _same(a: Any, b: Any) -> bool:
    def missing(x: Any) -> bool:
        return x is None or (isinstance(x, float) and math.isnan(x))

    if missing(a) or missing(b):
        return missing(a) and missing(b)
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _short(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, float) else f"{v:.6g}"
    return text if len(text) <= 60 else text[:57] + "..."
