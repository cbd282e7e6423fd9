"""Write the test fixtures in ``tests/fixtures/catalogue/``: small files in a fetched table's format.

A fixture has the real file's header, column order and number formatting, so an offline test can
serve it from a local HTTP server in place of the real download.  Only tables that may be
redistributed are excerpted (``--excerpt``: the header and the first ``--per-class`` lines of
each class, byte for byte).  For the others (COMPAS, HELOC, Give Me Some Credit) the rows are
**synthetic**: each cell is drawn, with a fixed seed, inside the bounds or among the categories
the task's spec declares, and written the way the real file writes that column (integers,
floats with a decimal point, or the category's word)::

    git -C /work/.mirror/carla-recourse+cf-data/repo show HEAD:adult.csv > /tmp/adult.csv
    python scripts/catalogue/fixtures.py /tmp/adult.csv tasks/adult.toml --excerpt
    git -C ... show HEAD:heloc.csv > /tmp/heloc.csv
    python scripts/catalogue/fixtures.py /tmp/heloc.csv tasks/heloc.toml

For ``give_me_some_credit.csv``, absent from the snapshot, read the format from
``give_me_some_credit_test.csv`` (same columns) and name the output ``--name give_me_some_credit.csv``.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "catalogue"


def _rows(blob: bytes) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(blob.decode("utf-8"))))
    return rows[0], rows[1:]


def excerpt(blob: bytes, label: str, per_class: int) -> bytes:
    """The header and the first ``per_class`` lines of each label value, in file order."""
    lines = blob.splitlines(keepends=True)
    header, rows = _rows(blob)
    col = header.index(label)
    taken: dict[str, int] = {}
    keep = [lines[0]]
    for line, row in zip(lines[1:], rows, strict=True):
        key = f"{float(row[col]):g}"
        if taken.get(key, 0) < per_class:
            taken[key] = taken.get(key, 0) + 1
            keep.append(line)
    return b"".join(keep)


def synthetic(blob: bytes, spec: dict, per_class: int, seed: int = 0) -> bytes:
    """Invented rows in the real file's format: values from the spec's bounds and categories."""
    header, rows = _rows(blob)
    opts = spec["dataset"]["options"]
    label, positive = opts["label"], opts["positive"]
    feats = {f["name"]: f for f in spec["features"]}
    rng = random.Random(seed)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    for i in range(2 * per_class):
        row = []
        for j, name in enumerate(header):
            sample = rows[0][j]
            if name == label:
                cls = positive if i % 2 == 0 else (0 if positive == 1 else 1)
                row.append(f"{float(cls):.1f}" if "." in sample else str(cls))
                continue
            f = feats.get(name)
            if f is None:
                row.append(sample)
            elif f.get("categories"):
                k = rng.randrange(len(f["categories"]))
                words = f.get("labels")
                text = not _is_number(sample)
                row.append(words[k] if text and words else _num(f["categories"][k], sample))
            else:
                lo, hi = float(f.get("lower", 0)), float(f.get("upper", 1))
                v = rng.uniform(lo, hi)
                row.append(_num(round(v) if f.get("integer") else v, sample))
        w.writerow(row)
    return out.getvalue().encode()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _num(v: float, sample: str) -> str:
    """``v`` written like ``sample``: ``3`` for integer columns, ``3.0`` or ``3.25`` for floats."""
    if "." in sample:
        return repr(float(v))
    return str(int(round(v)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="the real file (or one in the same format)")
    ap.add_argument("spec", type=Path, help="the task spec (label, bounds, categories)")
    ap.add_argument("--excerpt", action="store_true",
                    help="cut real rows (only for tables whose licence allows redistribution)")
    ap.add_argument("--name", help="the fixture's file name (default: the source's)")
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR)
    a = ap.parse_args(argv)
    import tomllib  # Python >= 3.11; the script is run by hand, not by cfbench

    spec = tomllib.loads(a.spec.read_text())
    blob = a.source.read_bytes()
    data = (excerpt(blob, spec["dataset"]["options"]["label"], a.per_class) if a.excerpt
            else synthetic(blob, spec, a.per_class))
    a.out_dir.mkdir(parents=True, exist_ok=True)
    out = a.out_dir / (a.name or a.source.name)
    out.write_bytes(data)
    n = data.count(b"\n") - 1
    print(f"wrote {out}: {n} rows ({'excerpt' if a.excerpt else 'synthetic'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
