"""Prompts from a task's schema: plain-text templates, value formatting and few-shot examples.

Nothing here imports torch, so prompts can be built, inspected and tested without a model.
Templates live in ``templates/*.txt`` beside this file; a folder given as ``prompt_dir`` (or the
``CFBENCH_PROMPT_DIR`` environment variable) overrides any of them by file name.
"""

from __future__ import annotations

import json
import math
import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cfbench.api import (
    Feature,
    FeatureSchema,
    FitContext,
    NearestNeighbour,
    UserError,
    heom,
    heom_scales,
)

TEMPLATE_DIR = Path(__file__).parent / "templates"
PROMPT_DIR_ENV = "CFBENCH_PROMPT_DIR"
#: every template and the fields it may use (checked when it is loaded)
TEMPLATE_FIELDS: dict[str, set[str]] = {
    "instructions": {"task_description", "task_name", "class_0", "class_1", "features", "columns", "sep", "format"},
    "feature": {"name", "description", "unit", "lower", "upper", "notes"},
    "examples": {"examples"},
    "record": {"source", "target", "patient", "counterfactual"},
    "record_json": {"source", "target", "patient", "patient_json", "counterfactual"},
    "finetune": {"task_name", "columns", "class_0", "class_1", "sep"},
    "feedback": {"source", "target", "attempts"},
    "api_system": {"instructions"},
    "api_user": {"source", "target", "patient", "patient_json"},
}
ROW_STYLES = ("values", "named", "json")
CF_STYLES = ("full", "edits")


def load_templates(prompt_dir: str | Path | None = None) -> dict[str, str]:
    """Every template, from ``prompt_dir`` (or ``$CFBENCH_PROMPT_DIR``) where present, else the package's.

    Each template's ``{fields}`` are checked against ``TEMPLATE_FIELDS`` so that a typo in an
    override fails here, naming the file, rather than half-way through a run.
    """
    override = prompt_dir if prompt_dir is not None else os.environ.get(PROMPT_DIR_ENV) or None
    folder = Path(override) if override else None
    if folder is not None and not folder.is_dir():
        raise UserError(f"prompt_dir {str(folder)!r} is not a folder (expected a folder of *.txt templates)")
    out: dict[str, str] = {}
    for name, allowed in TEMPLATE_FIELDS.items():
        path = folder / f"{name}.txt" if folder is not None else None
        if path is None or not path.is_file():
            path = TEMPLATE_DIR / f"{name}.txt"
        text = path.read_text(encoding="utf-8")
        used = {f for _, f, _, _ in string.Formatter().parse(text) if f}
        bad = sorted(used - allowed)
        if bad:
            raise UserError(
                f"template {path}: unknown field {{{bad[0]}}}; valid fields: {', '.join(sorted(allowed))}"
            )
        out[name] = text
    return out


# ----------------------------------------------------------------------------- values


@dataclass(frozen=True)
class ValueFormat:
    """How one feature's values are written, and the grammar a generated value must follow.

    ``int_digits`` caps the digits before the point (from the larger bound's magnitude), so a
    value can leave its range by a little but cannot grow without end; ``choices`` restricts a
    categorical or ordinal feature to its codes.
    """

    name: str
    decimals: int
    negative: bool
    int_digits: int
    choices: tuple[str, ...] = ()

    def format(self, value: float) -> str:
        if self.choices or self.decimals == 0:
            text = str(int(round(float(value))))
        else:
            text = f"{float(value):.{self.decimals}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"

    @property
    def max_chars(self) -> int:
        if self.choices:
            return max(len(c) for c in self.choices)
        return int(self.negative) + self.int_digits + (1 + self.decimals if self.decimals else 0)

    def prefix_ok(self, text: str) -> bool:
        """Whether ``text`` can still be extended to a complete value."""
        if self.choices:
            return any(c.startswith(text) for c in self.choices)
        return _prefix_re(self.negative, self.int_digits, self.decimals).fullmatch(text) is not None

    def complete(self, text: str) -> bool:
        """Whether ``text`` is a whole value (the slot may end here)."""
        if self.choices:
            return text in self.choices
        return _complete_re(self.negative, self.int_digits, self.decimals).fullmatch(text) is not None


_RE_CACHE: dict[tuple, re.Pattern] = {}


def _int_part(int_digits: int) -> str:
    return f"(0|[1-9][0-9]{{0,{max(int_digits - 1, 0)}}})"


def _prefix_re(neg: bool, idig: int, dec: int) -> re.Pattern:
    key = ("p", neg, idig, dec)
    if key not in _RE_CACHE:
        frac = rf"(\.[0-9]{{0,{dec}}})?" if dec else ""
        sign = "-?" if neg else ""
        _RE_CACHE[key] = re.compile(rf"{sign}({_int_part(idig)}{frac})?")
    return _RE_CACHE[key]


def _complete_re(neg: bool, idig: int, dec: int) -> re.Pattern:
    key = ("c", neg, idig, dec)
    if key not in _RE_CACHE:
        frac = rf"(\.[0-9]{{1,{dec}}})?" if dec else ""
        sign = "-?" if neg else ""
        _RE_CACHE[key] = re.compile(rf"{sign}{_int_part(idig)}{frac}")
    return _RE_CACHE[key]


def value_formats(schema: FeatureSchema, X: pd.DataFrame, digits: int = 3) -> list[ValueFormat]:
    """One ``ValueFormat`` per feature: about ``digits`` significant digits at the data's median size.

    Categorical and ordinal features are written as one of their codes; integer features and
    numeric columns whose training values are all whole numbers get no decimals.
    """
    if digits < 1:
        raise UserError(f"digits must be a positive integer, got {digits}")
    out = []
    for f in schema:
        col = X[f.name].to_numpy(float) if f.name in X else np.array([], float)
        col = col[np.isfinite(col)]
        lo = f.lower if f.lower is not None else (float(col.min()) if len(col) else 0.0)
        hi = f.upper if f.upper is not None else (float(col.max()) if len(col) else 1.0)
        biggest = max(abs(lo), abs(hi), 1.0)
        int_digits = len(str(int(math.floor(biggest))))
        negative = lo < 0
        if f.kind != "numeric":  # categorical and ordinal: one of the codes, nothing between
            codes = f.categories or tuple(np.unique(col))
            choices = tuple(str(int(round(c))) for c in codes)
            out.append(ValueFormat(f.name, 0, negative, int_digits, choices))
            continue
        if f.integer or f.kind == "ordinal" or (len(col) and np.all(col == np.round(col))):
            decimals = 0
        else:
            nonzero = np.abs(col[col != 0])
            typical = float(np.median(nonzero)) if len(nonzero) else 1.0
            decimals = int(np.clip(digits - 1 - math.floor(math.log10(typical)), 0, 6))
        out.append(ValueFormat(f.name, decimals, negative, int_digits))
    return out


# ----------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class Segment:
    """A piece of the counterfactual line: literal text the harness writes, or a value slot."""

    text: str = ""
    slot: int = -1  # feature index when this is a slot the model fills


class PromptBuilder:
    """Turns rows of a task into prompt text, and the counterfactual line into segments.

    ``row_style="values"`` writes a patient as the bare values in schema order (compact: the
    instructions list the order); ``"named"`` writes ``name=value`` pairs; ``"json"`` writes the
    patient as a JSON object and the counterfactual as a JSON object of the mutable features
    (the free-text format, with the keys and punctuation written by the harness).

    ``cf_style="full"`` writes every (mutable) feature of the counterfactual; ``"edits"`` writes
    only the features it changes, as a JSON object ``{"name": new value, ...}``: far fewer tokens
    per query, and the model, not the format, decides how sparse the counterfactual is.
    """

    def __init__(
        self,
        schema: FeatureSchema,
        formats: Sequence[ValueFormat],
        class_names: dict[int, str],
        task_name: str,
        task_description: str,
        templates: dict[str, str],
        row_style: str = "json",
        sep: str = ",",
        cf_style: str = "full",
    ) -> None:
        if row_style not in ROW_STYLES:
            raise UserError(f"unknown row_style {row_style!r}; valid choices: {', '.join(ROW_STYLES)}")
        if cf_style not in CF_STYLES:
            raise UserError(f"unknown cf_style {cf_style!r}; valid choices: {', '.join(CF_STYLES)}")
        self.cf_style = cf_style
        if not sep or any(ch in "0123456789.-" for ch in sep):
            raise UserError(f"sep must be non-empty and contain no digit, '.' or '-', got {sep!r}")
        self.schema = schema
        self.formats = list(formats)
        self.class_names = {int(k): str(v) for k, v in class_names.items()}
        self.task_name = task_name
        self.task_description = task_description.strip()
        self.templates = templates
        self.row_style = row_style
        self.sep = sep
        self.mutable = [i for i, f in enumerate(schema) if f.mutable]
        self.names = schema.names

    # -- pieces
    def cls(self, c: int) -> str:
        return self.class_names.get(int(c), f"class {int(c)}")

    def _entry(self, i: int, text: str) -> str:
        return f"{self.names[i]}={text}" if self.row_style == "named" else text

    def row(self, x: Sequence[float]) -> str:
        """A patient's values as written in prompts."""
        return self.sep.join(self._entry(i, self.formats[i].format(v)) for i, v in enumerate(x))

    def feature_lines(self) -> str:
        return "".join(self.templates["feature"].format(**_feature_fields(f, fmt)) for f, fmt in
                       zip(self.schema, self.formats, strict=True))

    def format_text(self) -> str:
        """One sentence on how patients and counterfactuals are written, for the instructions."""
        if self.row_style == "json":
            patient = "A patient is written as a JSON object of every feature"
        elif self.row_style == "named":
            patient = f'A patient is written as name=value pairs separated by "{self.sep}"'
        else:
            patient = f'A patient is written as the values of the features above, in that order, separated by "{self.sep}"'
        if self.cf_style == "edits":
            cf = "a counterfactual as a JSON object of only the features it changes, with their new values"
        elif self.row_style == "json":
            cf = "a counterfactual as a JSON object of every mutable feature"
        else:
            cf = "a counterfactual in the same way"
        return f"{patient}; {cf}."

    def instructions(self) -> str:
        return self.templates["instructions"].format(
            format=self.format_text(),
            task_description=self.task_description or f"Task: {self.task_name}.",
            task_name=self.task_name,
            class_0=self.cls(0),
            class_1=self.cls(1),
            features=self.feature_lines().rstrip("\n"),
            columns=self.sep.join(self.names),
            sep=self.sep,
        )

    def finetune_header(self) -> str:
        return self.templates["finetune"].format(
            task_name=self.task_name, columns=self.sep.join(self.names),
            class_0=self.cls(0), class_1=self.cls(1), sep=self.sep,
        )

    def record(self, x: Sequence[float], source: int, target: int, cf: Sequence[float]) -> str:
        """A complete (patient, counterfactual) example in the constrained format."""
        if self.cf_style == "edits":
            name = "record_json" if self.row_style == "json" else "record"
            return self.templates[name].format(
                source=self.cls(source), target=self.cls(target), patient=self.row(x),
                patient_json=self.patient_json(x), counterfactual=self.cf_edits(x, cf))
        if self.row_style == "json":
            return self.record_json(x, source, target, cf)
        return self.templates["record"].format(
            source=self.cls(source), target=self.cls(target), patient=self.row(x), counterfactual=self.row(cf)
        )

    def record_json(self, x: Sequence[float], source: int, target: int, cf: Sequence[float]) -> str:
        """A complete example in the free-text format: the counterfactual as a JSON object."""
        return self.templates["record_json"].format(
            source=self.cls(source), target=self.cls(target), patient=self.row(x),
            patient_json=self.patient_json(x), counterfactual=self.cf_json(cf),
        )

    def patient_json(self, x: Sequence[float]) -> str:
        """Every feature of ``x`` as a JSON object (the free-text variants' patient format)."""
        return "{" + ", ".join(f'"{n}": {self.formats[i].format(x[i])}' for i, n in enumerate(self.names)) + "}"

    def cf_json(self, cf: Sequence[float]) -> str:
        """The mutable features of ``cf`` as the JSON object the free-text variants must write."""
        items = ", ".join(f'"{self.names[i]}": {self.formats[i].format(cf[i])}' for i in self.mutable)
        return "{" + items + "}"

    def changed(self, x: Sequence[float], cf: Sequence[float]) -> list[int]:
        """Mutable features whose value, as written in prompts, differs between ``x`` and ``cf``."""
        return [i for i in self.mutable if self.formats[i].format(cf[i]) != self.formats[i].format(x[i])]

    def cf_edits(self, x: Sequence[float], cf: Sequence[float]) -> str:
        """The features ``cf`` changes, as the JSON object the edits format writes."""
        items = ", ".join(f'"{self.names[i]}": {self.formats[i].format(cf[i])}' for i in self.changed(x, cf))
        return "{" + items + "}"

    def feedback(self, x: Sequence[float], source: int, target: int, attempts: Sequence[Sequence[float]],
                 json_format: bool = False) -> str:
        """The line shown with a query in a verified variant's later rounds: the candidates the
        classifier rejected, each written as the model writes a counterfactual: the features it
        changed (edits), a JSON object of the mutable features (``json_format``, the JSON row
        style: the free-text and API answers) or its row."""
        json_format = json_format or self.row_style == "json"
        written = [self.cf_edits(x, cf) if self.cf_style == "edits" else self.cf_json(cf) if json_format
                   else self.row(cf) for cf in attempts]
        return self.templates["feedback"].format(source=self.cls(source), target=self.cls(target),
                                                 attempts="; ".join(written))

    def examples_block(self, records: Sequence[str]) -> str:
        if not records:
            return ""
        return self.templates["examples"].format(examples="\n".join(records))

    # -- the open query
    def query_text(self, x: Sequence[float], source: int, target: int, json_format: bool = False) -> tuple[str, str]:
        """``(head, tail)``: the record text before and after the counterfactual the model writes."""
        json_format = json_format or self.row_style == "json"
        name = "record_json" if json_format else "record"
        marker = "\x00CF\x00"
        fields = dict(source=self.cls(source), target=self.cls(target), patient=self.row(x), counterfactual=marker)
        if json_format:
            fields["patient_json"] = self.patient_json(x)
        text = self.templates[name].format(**fields)
        head, _, tail = text.partition(marker)
        return head, tail

    def cf_segments(self, x: Sequence[float], tail: str) -> list[Segment]:
        """The counterfactual line as literal text and value slots; immutables are literal copies.

        Every slot is followed by non-empty literal text (a separator or ``tail``), whose first
        token ends the value.
        """
        if not tail:
            raise UserError("the record template must have text after {counterfactual} (e.g. a newline)")
        segs: list[Segment] = []
        if self.row_style == "json":  # {"a": <slot>, "b": <slot>} over the mutable features
            for n, i in enumerate(self.mutable):
                segs.append(Segment(text=("{" if n == 0 else ", ") + f'"{self.names[i]}": '))
                segs.append(Segment(slot=i))
            segs.append(Segment(text="}" + tail))
            return segs
        for i in range(len(self.names)):
            lead = self.sep if i else ""
            if self.row_style == "named":
                lead += f"{self.names[i]}="
            if self.schema.features[i].mutable:
                segs.append(Segment(text=lead))
                segs.append(Segment(slot=i))
            else:
                segs.append(Segment(text=lead + self.formats[i].format(x[i])))
        segs.append(Segment(text=tail))
        merged: list[Segment] = []
        for s in segs:  # join adjacent literals
            if s.slot < 0 and merged and merged[-1].slot < 0:
                merged[-1] = Segment(text=merged[-1].text + s.text)
            elif s.slot >= 0 or s.text:
                merged.append(s)
        return merged

    def api_messages(self, x: Sequence[float], source: int, target: int,
                     examples: Sequence[tuple[Sequence[float], int, int, Sequence[float]]] = (),
                     note: str = "") -> list[dict]:
        """Chat messages for an OpenAI-compatible endpoint; examples become user/assistant turns.
        ``note`` (a verified round's ``feedback``) ends the last user message, on its own line."""
        msgs = [{"role": "system", "content": self.templates["api_system"].format(instructions=self.instructions())}]
        for ex_x, ex_s, ex_t, ex_cf in examples:
            msgs.append({"role": "user", "content": self._api_user(ex_x, ex_s, ex_t)})
            msgs.append({"role": "assistant", "content": self.cf_json(ex_cf)})
        query = self._api_user(x, source, target)
        if note:
            query = query.rstrip("\n") + "\n" + note
        msgs.append({"role": "user", "content": query})
        return msgs

    def _api_user(self, x: Sequence[float], source: int, target: int) -> str:
        return self.templates["api_user"].format(
            source=self.cls(source), target=self.cls(target), patient=self.row(x), patient_json=self.patient_json(x)
        )

    # -- parsing
    def parse_json(self, text: str, x: Sequence[float]) -> tuple[np.ndarray | None, str]:
        """The counterfactual from a free-text answer, or ``(None, why)``; immutables come from ``x``.

        The first ``{...}`` object in ``text`` must give a finite number for every mutable feature
        (``cf_style="full"``), or for at least one, and name only mutable features (``"edits"``).
        """
        obj, why = first_json_object(text)
        if obj is None:
            return None, why
        out = np.asarray(x, dtype=float).copy()
        edits = self.cf_style == "edits"
        if edits:
            allowed = {self.names[i] for i in self.mutable}
            bad = sorted(set(obj) - allowed)
            if bad:
                return None, f"not a mutable feature: {bad[0]!r}"
            if not obj:
                return None, "no feature changed"
        for i in self.mutable:
            name = self.names[i]
            if name not in obj:
                if edits:
                    continue
                return None, f"missing feature {name!r}"
            v = obj[name]
            if isinstance(v, str):
                try:
                    v = float(v)
                except ValueError:
                    return None, f"feature {name!r}: not a number ({v!r})"
            try:
                ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
            except OverflowError:  # an integer too large for a float
                ok = False
            if not ok:
                return None, f"feature {name!r}: not a finite number ({str(v)[:40]!r})"
            out[i] = float(v)
        return out, ""


def first_json_object(text: str) -> tuple[dict | None, str]:
    """The first ``{...}`` JSON object in ``text`` (what follows it is ignored), or ``(None, why)``."""
    start = text.find("{")
    if start < 0:
        return None, "no JSON object in the answer"
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg} at char {exc.pos})"
    except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit integer, deep nesting
        return None, f"invalid JSON ({type(exc).__name__}: {str(exc)[:120]})"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    return obj, ""


def _feature_fields(f: Feature, fmt: ValueFormat) -> dict[str, str]:
    notes = []
    if f.kind == "categorical" and f.categories:
        labels = f.labels or tuple(str(int(c)) for c in f.categories)
        notes.append("codes " + ", ".join(f"{fmt.format(c)} = {lab}" for c, lab in zip(f.categories, labels, strict=True)))
    if not f.mutable:
        notes.append("immutable")
    elif f.actionable:
        notes.append("actionable")
    if f.direction != "any":
        notes.append("can only " + f.direction.split("-")[0])
    return {
        "name": f.name,
        "description": f.description or f.name,
        "unit": f" [{f.unit}]" if f.unit else "",
        "lower": "?" if f.lower is None else fmt.format(f.lower),
        "upper": "?" if f.upper is None else fmt.format(f.upper),
        "notes": ("; " + "; ".join(notes)) if notes else "",
    }


# ----------------------------------------------------------------------------- examples


def sparsify(X: np.ndarray, CF: np.ndarray, targets: np.ndarray, scale: np.ndarray, predict, names) -> np.ndarray:
    """Greedy post-hoc sparsity: per row, revert changed features from the smallest change up
    while ``predict`` still gives the target (one batched prediction per round)."""
    CF = CF.copy()
    change = np.abs(CF - X) / np.where(scale > 0, scale, 1.0)
    order = np.argsort(np.where(change > 0, change, np.inf), axis=1, kind="stable")
    rows = np.arange(len(X))
    for r in range(X.shape[1]):
        j = order[:, r]
        live = change[rows, j] > 0
        if not live.any():
            break
        trial = CF[live].copy()
        trial[np.arange(live.sum()), j[live]] = X[live, j[live]]
        ok = np.asarray(predict(pd.DataFrame(trial, columns=names))) == targets[live]
        idx = rows[live][ok]
        CF[idx, j[live][ok]] = X[idx, j[live][ok]]
    return CF


class ExamplePool:
    """(instance, counterfactual) pairs from the training split, for few-shot prompts and fine-tuning.

    An instance's counterfactual is its nearest training row of the other class (as labelled and
    as predicted) that keeps the instance's immutables and respects bounds and directions: the
    core's ``nearest-neighbour`` generator.  Only correctly classified rows are used.

    ``sparse=True`` then reverts, one by one, the features whose change is smallest (in units of
    the feature's range) back to the instance's values while the classifier still predicts the
    target: the example counterfactuals of the edits format change few features, as it asks.
    """

    def __init__(self, n_pool: int = 400, seed: int = 0, sparse: bool = False) -> None:
        if n_pool < 1:
            raise UserError(f"n_pool must be a positive integer, got {n_pool}")
        self.n_pool = n_pool
        self.seed = seed
        self.sparse = sparse

    def fit(self, context: FitContext) -> ExamplePool:
        names = context.schema.names
        X = context.X_train[names]
        pred = context.predict(X)
        y = np.asarray(context.y_train)
        ok = np.flatnonzero(pred == y)
        rng = np.random.default_rng(self.seed)
        per_class = []
        for c in (0, 1):
            idx = ok[y[ok] == c]
            take = min(len(idx), max(self.n_pool // 2, 1))
            per_class.append(np.sort(rng.choice(idx, size=take, replace=False)) if take else idx[:0])
        idx = np.concatenate(per_class)
        nn = NearestNeighbour().fit(context)
        res = nn.generate(X.iloc[idx], 1 - y[idx], k=1, budget=1e9)
        keep = [j for j, r in enumerate(res) if r.status == "ok"]
        self.X_ = X.iloc[idx[keep]].to_numpy(float)
        self.source_ = y[idx[keep]]
        self.cf_ = np.stack([res[j].cfs.to_numpy(float)[0] for j in keep]) if keep else np.empty((0, len(names)))
        self.categorical_ = context.schema.mask("kind", "categorical")
        self.scale_ = heom_scales(X, self.categorical_)
        if self.sparse and len(keep):
            self.cf_ = sparsify(self.X_, self.cf_, 1 - self.source_, self.scale_, context.predict, names)
        return self

    def __len__(self) -> int:
        return len(self.X_)

    def fixed(self, per_direction: int, seed: int) -> list[int]:
        """A seeded set of ``per_direction`` pairs for each direction, interleaved 0->1, 1->0, ..."""
        rng = np.random.default_rng(seed)
        picks = []
        for c in (0, 1):
            idx = np.flatnonzero(self.source_ == c)
            picks.append(list(rng.choice(idx, size=min(per_direction, len(idx)), replace=False)))
        out = []
        for a, b in zip(picks[0] + [None] * per_direction, picks[1] + [None] * per_direction, strict=False):
            out.extend(v for v in (a, b) if v is not None)
        return [int(i) for i in out]

    def nearest(self, x: np.ndarray, source: int, n: int) -> list[int]:
        """The ``n`` pool instances of class ``source`` closest to ``x`` (HEOM), closest last.

        Closest last puts the most similar example next to the query in the prompt.
        """
        idx = np.flatnonzero(self.source_ == source)
        if len(idx) == 0:
            return []
        d = heom(np.asarray(x, float)[None, :], self.X_[idx], self.scale_, self.categorical_)[0]
        best = idx[np.argsort(d, kind="stable")[:n]]
        return [int(i) for i in best[::-1]]

    def pair(self, i: int) -> tuple[np.ndarray, int, int, np.ndarray]:
        s = int(self.source_[i])
        return self.X_[i], s, 1 - s, self.cf_[i]
