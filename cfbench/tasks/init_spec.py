"""``cfbench task init DATA --label COL``: write a commented task spec for a table, then load it.

Each column's kind is guessed from its values (numeric, integer, binary, categorical with its
codes, ordinal when the words form a known scale or the name says level/grade/stage), bounds are
the observed range, every feature starts ``mutable = true`` and the ones whose names suggest
they cannot change (age, sex, site, ethnicity ...) are listed in a comment for the user to
decide.  The spec is then loaded once (data checks, split, classifier) so it runs as written.

Names and values come from the user's file, so every string is written by ``toml_string`` and
every comment through ``_comment``: a header cannot add keys, tables or lines to the spec.  A
column that cannot be a feature name (empty, control characters, line breaks) is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cfbench.core.errors import UserError
from cfbench.core.names import check_name
from cfbench.tasks.classifier import MODEL_NAMES, USER_MODEL
from cfbench.tasks.datasets import MISSING_POLICIES
from cfbench.tasks.spec import Task, check_not_reserved, load_spec
from cfbench.tasks.table import binary_positive, read_table, same_value

MAX_CODES = 20  # more distinct values than this and a column is not treated as categorical
IMMUTABLE_HINTS = ("age", "sex", "gender", "site", "centre", "center", "ethnicity", "ethnic",
                   "race", "birth", "dob", "height", "country", "region", "genotype", "cohort")
CATEGORICAL_HINTS = ("site", "centre", "center", "region", "country", "type", "group", "race",
                     "ethnic", "sex", "gender", "device", "code", "category", "class", "status")
ORDINAL_HINTS = ("level", "grade", "stage", "severity", "rating", "scale", "likert", "tier")
ID_PATTERN = re.compile(r"(^|[_\W])(id|uuid|identifier)$|^(id|record|subject|participant|patient)"
                        r"([_\W]|$)", re.IGNORECASE)
#: Word scales whose order is obvious; a text column whose values all belong to one is ordinal.
SCALES = (
    ("never", "rarely", "sometimes", "often", "always"),
    ("none", "mild", "moderate", "severe"),
    ("very low", "low", "medium", "high", "very high"),
    ("very low", "low", "moderate", "high", "very high"),
    ("poor", "fair", "good", "very good", "excellent"),
    ("strongly disagree", "disagree", "neutral", "agree", "strongly agree"),
    ("sedentary", "light", "moderate", "active", "very active"),
    ("low", "mid", "high"),
)


@dataclass
class Column:
    """What init decided about one column: the spec lines to write, or why it was left out."""

    name: str
    kind: str = "numeric"
    integer: bool = False
    lower: float | None = None
    upper: float | None = None
    categories: list[int | float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    note: str = ""
    skipped: str = ""


def _tokens(name: str) -> set[str]:
    return {t for t in re.split(r"[^a-z0-9]+", name.lower()) if t}


def _hint(name: str, hints: tuple[str, ...]) -> bool:
    toks = _tokens(name)
    return any(h in toks for h in hints)


def _num(v: float, integer: bool = False) -> str:
    """A bound written exactly (shortest round-trip repr), as an integer when it is one."""
    return str(int(v)) if integer or float(v).is_integer() else repr(float(v))


#: what a TOML basic string must escape: quote, backslash, U+0000-U+001F and U+007F
_TOML_ESCAPES = {**{c: f"\\u{c:04X}" for c in (*range(0x20), 0x7F)},
                 **{ord(c): e for c, e in (('"', '\\"'), ("\\", "\\\\"), ("\b", "\\b"),
                                            ("\t", "\\t"), ("\n", "\\n"), ("\f", "\\f"),
                                            ("\r", "\\r"))}}
_SURROGATE = re.compile("[\ud800-\udfff]")
#: what a comment line must not hold as is: control characters, line and paragraph separators
#: (and lone surrogates, which are not text)
_UNSAFE_IN_COMMENT = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
#: ... and a column name must not hold a tab either
_UNSAFE_IN_NAME = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (per the TOML spec), so that it reads back exactly."""
    if _SURROGATE.search(text):  # callers check first: TOML has no form for them
        raise ValueError(f"{text!r} holds a lone surrogate, which TOML cannot represent")
    return '"' + text.translate(_TOML_ESCAPES) + '"'


def _comment(text: str) -> str:
    """``text`` made safe for a ``#`` comment: one line, control characters shown as ``\\uXXXX``."""
    return _UNSAFE_IN_COMMENT.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _toml(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return _num(float(v))
    return toml_string(str(v))


def _shown(name: str) -> str:
    """A column name for a one-line message: escaped by ``repr``, long ones cut."""
    return repr(name) if len(name) <= 60 else f"{name[:50]!r}... ({len(name)} characters)"


def check_column_names(columns: list[str], file: Path) -> None:
    """Refuse a column that cannot be a feature name: no name (pandas' ``Unnamed: N``), or
    control characters or line breaks in it; one line naming it."""
    for i, name in enumerate(columns):
        if not name.strip() or re.fullmatch(r"Unnamed: \d+", name):
            raise UserError(f"{file}: column {i + 1} ({_shown(name)}) has no name in the header; "
                            "valid: a non-empty name (name the column, or remove it)")
        if _UNSAFE_IN_NAME.search(name):
            raise UserError(f"{file}: column name {_shown(name)} holds control characters or line "
                            "breaks; valid: a name of printable characters on one line")


def _scale_order(values: list[str]) -> list[str] | None:
    low = {v.strip().lower(): v for v in values}
    for scale in SCALES:
        if len(low) >= 3 and set(low) <= set(scale):
            return [low[w] for w in scale if w in low]
    return None


def infer_column(name: str, col: pd.Series) -> Column:
    """The kind, codes and bounds of one feature column, guessed from its values."""
    c = Column(name)
    present = col.dropna()
    if pd.api.types.is_bool_dtype(col):
        c.kind, c.categories, c.labels, c.integer = "categorical", [0, 1], ["False", "True"], True
        c.note = "binary"
        return c
    if not pd.api.types.is_numeric_dtype(col):
        text = present.astype(str).str.strip()
        text = text[text != ""]
        numeric = pd.to_numeric(text, errors="coerce")
        if len(text) and numeric.notna().mean() >= 0.9:  # numbers with a few bad cells
            bad = text[numeric.isna()]
            c.note = (f"{len(bad)} non-numeric cell(s), e.g. {bad.iloc[0]!r}: fix them in the data"
                      if len(bad) else "")
            present = numeric.dropna()
        else:
            values = sorted(pd.unique(text))
            if not values:
                c.skipped = "no values"
                return c
            if len(values) > MAX_CODES:
                c.skipped = f"text with {len(values)} distinct values"
                return c
            order = _scale_order(values)
            c.kind = "ordinal" if order else "categorical"
            c.labels = order or values
            c.categories = list(range(len(c.labels)))
            c.integer = True
            c.note = ("ordered scale" if order else "binary" if len(values) == 2
                      else f"{len(values)} text categories")
            return c
    if present.empty:
        c.skipped = "no values"
        return c
    vals = np.unique(present.to_numpy(dtype=float))
    if not np.isfinite(vals).all():
        c.note = "has infinite values: fix them in the data"
        vals = vals[np.isfinite(vals)]
        if not len(vals):
            c.skipped = "no finite values"
            return c
    integer = bool(np.all(vals == np.round(vals)))
    c.lower, c.upper = float(vals.min()), float(vals.max())
    if integer and set(vals.tolist()) <= {0.0, 1.0}:
        c.kind, c.categories, c.integer, c.note = "categorical", [0, 1], True, "binary"
    elif integer and len(vals) <= MAX_CODES and _hint(name, CATEGORICAL_HINTS):
        c.kind, c.categories, c.integer = "categorical", [int(v) for v in vals], True
        c.note = f"{len(vals)} codes"
    elif integer and len(vals) <= 12 and _hint(name, ORDINAL_HINTS):
        c.kind, c.categories, c.integer = "ordinal", [int(v) for v in vals], True
        c.note = f"{len(vals)} ordered levels"
    else:
        c.integer = integer
    if c.kind != "numeric":
        c.lower = c.upper = None
    return c


def _is_id(name: str, col: pd.Series) -> bool:
    return bool(ID_PATTERN.search(name)) and col.notna().all() and col.is_unique


def _positive(values: list[Any], given: str | None, label: str, file: Path) -> Any:
    shown = ", ".join(repr(v) for v in values[:10])
    if given is None:
        pos = binary_positive(values) if len(values) == 2 else None
        if pos is None:
            raise UserError(f"{file}: column {label!r} has values {shown}; "
                            "say which is class 1 with --positive")
        return pos
    match = [v for v in values if same_value(v, given)]
    if not match:
        raise UserError(f"{file}: --positive {given!r} is not a value of column {label!r}; "
                        f"values: {shown}")
    return match[0]


def _task_name(given: str | None, out: Path) -> str:
    """``--name`` (default: the ``--out`` file's stem), checked as a spec's name is, and not the
    name of a registered task."""

    name = given if given is not None else re.sub(r"[^A-Za-z0-9._-]+", "-", out.stem).strip("-._")
    check_name(name, "--name")
    check_not_reserved(name, out, "--name")
    return name


def _utf8_path(rel: str, given: Path) -> str:
    """``rel``, the path the spec will hold, if TOML can hold it (UTF-8 text)."""
    if _SURROGATE.search(rel):
        raise UserError(f"{given!r}: the path {rel!r} is not UTF-8 text, which a spec file cannot "
                        "hold; valid: a path with UTF-8 names (rename the file or folder)")
    return rel


def render_spec(args: argparse.Namespace, file: Path, df: pd.DataFrame, digest: str,
                out: Path) -> tuple[str, list[Column], str]:
    """The spec text, the columns it describes (and skips) and the missing policy it chose."""

    check_column_names([str(c) for c in df.columns], file)
    label = args.label
    if args.model not in MODEL_NAMES:
        raise UserError(f"--model {args.model!r}: unknown model; valid choices: {', '.join(MODEL_NAMES)} "
                        "(or --model-file for your own fitted pipeline)")
    if label not in df.columns:
        raise UserError(f"{file}: no column {label!r} (the label); columns: {', '.join(df.columns)}")
    id_col = args.id
    if id_col is not None and id_col not in df.columns:
        raise UserError(f"{file}: no column {id_col!r} (the id); columns: {', '.join(df.columns)}")
    lab = df[label].dropna()
    values = sorted(pd.unique(lab), key=str)
    positive = _positive(values, args.positive, label, file)
    if id_col is None:
        id_col = next((c for c in df.columns if c != label and _is_id(c, df[c])), None)
    cols = [infer_column(c, df[c]) for c in df.columns if c not in (label, id_col)]
    feats = [c for c in cols if not c.skipped]
    if not feats:
        raise UserError(f"{file}: no usable feature columns besides the label {label!r}")
    n_missing = {c.name: int(df[c.name].isna().sum()) for c in feats if df[c.name].isna().any()}
    missing = args.missing or ("impute-median" if n_missing else "error")
    immutables = [c.name for c in feats if _hint(c.name, IMMUTABLE_HINTS)]
    rel = _utf8_path(os.path.relpath(file.resolve(), out.parent.resolve()), file)
    name = _task_name(args.name, out)
    others = [v for v in values if not same_value(v, positive)]
    negative = str(others[0]) if len(others) == 1 else "anything else"
    description = f"{label} = {positive} (class 1) vs {label} = {negative} (class 0), from {file.name}"
    if args.model_file:
        model_path = Path(args.model_file)
        try:
            model_sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
        except OSError as exc:
            raise UserError(f"--model-file {model_path}: cannot read it ({exc.strerror or exc})") from None
    L: list[str] = [
        "# " + _comment(f"Task spec written by `cfbench task init` from {file.name} "
                        f"({len(df)} rows, {len(df.columns)} columns)."),
        "# Check every feature: kinds and codes are guesses from the data, bounds are the observed",
        "# range (widen them to plausible limits), and every feature starts mutable.",
        "# Likely immutable (by name), decide and set `mutable = false`: "
        + _comment(", ".join(immutables) if immutables else "(none found by name)"),
        f"name = {_toml(name)}",
        f"description = {_toml(description)}",
        "",
        "[dataset]",
        'loader = "table"',
        "",
        "[dataset.options]",
        f"path = {_toml(Path(rel).as_posix())}  # relative to this file",
        f"label = {_toml(label)}",
        f"positive = {_toml(positive)}  # the label value that is class 1; every other row is class 0",
    ]
    if id_col is not None:
        L.append(f"id = {_toml(id_col)}  # row identifier: named in error messages, never a feature")
    miss_note = (f"{sum(n_missing.values())} missing cells in {', '.join(n_missing)}"
                 if n_missing else "no missing cells")
    L += [
        f"missing = {_toml(missing)}  # "
        + _comment(f"{' | '.join(MISSING_POLICIES)}; the file has {miss_note}"),
        f"sha256 = {_toml(digest)}  # loading refuses a changed file; delete to accept edits",
        "",
        "[split]",
        "test_size = 0.3",
        "seed = 0",
        "",
        "[classifier]",
    ]
    if args.model_file:
        mrel = _utf8_path(os.path.relpath(Path(args.model_file).resolve(), out.parent.resolve()),
                          Path(args.model_file))
        L += [f'model = "{USER_MODEL}"  # your fitted pipeline, loaded with skops (never a pickle)',
              f"path = {_toml(Path(mrel).as_posix())}",
              f"sha256 = {_toml(model_sha)}"]
    else:
        L += [f"model = {_toml(args.model)}  # {' | '.join([*MODEL_NAMES, USER_MODEL])}", "seed = 0"]
    L += ["", "[target]", 'class = "opposite"', "", "[queries]", "per_class = 50", "seed = 0"]
    for c in cols:
        L.append("")
        if c.skipped:
            L.append("# " + _comment(f"column {c.name!r} left out: {c.skipped}"))
            continue
        L += ["[[features]]", f"name = {_toml(c.name)}"]
        kind = f"kind = {_toml(c.kind)}"
        L.append(kind + (f"  # {_comment(c.note)}" if c.note else ""))
        if c.kind == "numeric":
            if c.integer:
                L.append("integer = true")
            if c.lower is not None:
                L.append(f"lower = {_num(c.lower, c.integer)}  # observed minimum")
                L.append(f"upper = {_num(c.upper, c.integer)}  # observed maximum")
        else:
            L.append(f"categories = [{', '.join(_toml(v) for v in c.categories)}]")
            if c.labels:
                L.append(f"labels = [{', '.join(_toml(v) for v in c.labels)}]")
        L.append("mutable = true" + ("  # likely immutable: decide" if c.name in immutables else ""))
    return "\n".join(L) + "\n", cols, missing


def cmd_task_init(args: argparse.Namespace) -> int:
    """Write the spec, then load it once; a spec that does not load is reported, exit 2."""

    file = Path(args.data)
    out = Path(args.out) if args.out else Path("tasks") / f"{file.stem}.toml"
    if out.suffix != ".toml":
        raise UserError(f"--out {out}: expected a .toml file name")
    if out.exists() and not args.force:
        raise UserError(f"--out {out}: the file exists; pass --force to overwrite it")
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a .toml file name")
    df, digest = read_table(file)
    text, cols, missing = render_spec(args, file, df, digest, out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write it ({exc.strerror or exc})") from None
    feats = [c for c in cols if not c.skipped]
    kinds: dict[str, int] = {}
    for c in feats:
        k = "binary" if c.note == "binary" else "integer" if c.integer and c.kind == "numeric" else c.kind
        kinds[k] = kinds.get(k, 0) + 1
    print(f"wrote {out}: {len(feats)} features ("
          + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")"
          + (f"; left out {', '.join(c.name for c in cols if c.skipped)}"
             if any(c.skipped for c in cols) else ""))
    if missing == "impute-median" and not args.missing:
        print("note: the table has missing cells; the spec imputes them (missing = \"impute-median\"); "
              "set missing = \"drop\" to drop those rows instead")
    try:
        task = Task.load(load_spec(out))
    except UserError as exc:
        raise UserError(f"wrote {out}, but it does not load yet: {exc}") from None
    s = task.scores
    print(f"loaded it: {s['n_train']} train / {s['n_test']} test rows; classifier "
          f"{task.spec.model} test accuracy {s['accuracy']:.3f}, F1 {s['f1']:.3f}")
    print(f"next: review {out}, then: cfbench run --task {out} --methods all")
    return 0
