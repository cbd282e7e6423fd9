"""Cut the small test fixtures in ``tests/fixtures/catalogue/`` from CARLA's cf-data files.

Each fixture is the source file's header line and the first ``--per-class`` data lines of each
class, kept in file order and byte for byte as in the source (same quoting, number formatting and
line ends), so an offline test can serve it from a local HTTP server in place of the real file::

    git -C /work/.mirror/carla-recourse+cf-data/repo show HEAD:adult.csv > /tmp/adult.csv
    python scripts/catalogue/fixtures.py /tmp/adult.csv income

For ``give_me_some_credit.csv``, absent from the snapshot, cut ``give_me_some_credit_test.csv``
(same columns) and name the output with ``--name give_me_some_credit.csv``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "catalogue"


def cut(blob: bytes, label: str, per_class: int) -> tuple[bytes, dict[str, int]]:
    """The header and the first ``per_class`` lines of each label value, in file order."""
    lines = blob.splitlines(keepends=True)
    header = next(csv.reader([lines[0].decode("utf-8")]))
    col = header.index(label)
    taken: dict[str, int] = {}
    keep = [lines[0]]
    for line in lines[1:]:
        value = next(csv.reader([line.decode("utf-8")]))[col]
        key = f"{float(value):g}"  # 1 and 1.0 are the same class
        if taken.get(key, 0) < per_class:
            taken[key] = taken.get(key, 0) + 1
            keep.append(line)
    if len(taken) < 2:
        raise SystemExit(f"only one class ({', '.join(taken)}) in column {label!r}")
    return b"".join(keep), taken


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="a cf-data CSV file")
    ap.add_argument("label", help="its label column")
    ap.add_argument("--name", help="the fixture's file name (default: the source's)")
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR)
    a = ap.parse_args(argv)
    data, taken = cut(a.source.read_bytes(), a.label, a.per_class)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    out = a.out_dir / (a.name or a.source.name)
    out.write_bytes(data)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(taken.items()))
    print(f"wrote {out}: {sum(taken.values())} rows ({a.label} {counts})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
