"""Write ``cfbench/tasks/data/german-credit.csv.gz`` from Weka's ``credit-g.arff``; a maintainer's tool.

The input is the ARFF copy of the UCI Statlog German credit data (Hofmann 1994) that Debian ships
in the ``weka`` package (3.6.14); get it without installing anything::

    apt-get download weka && dpkg-deb -x weka_*.deb ex
    python scripts/catalogue/german-credit.py ex/usr/share/doc/weka/examples/credit-g.arff

The output is a gzip CSV with the ARFF's 21 columns in the ARFF's order and its text values as
written (the task spec maps them to codes through each feature's ``labels``). It is byte-for-byte
reproducible: LF line ends, no quoting unless a cell needs it, gzip with mtime 0, no file name,
compression level 9. The SHA-256 printed at the end goes into ``tasks/german-credit.toml``.
See ``cfbench/tasks/data/german-credit.md`` for the columns and the checks.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "cfbench" / "tasks" / "data" / "german-credit.csv.gz"
ROWS, GOOD = 1000, 700  # UCI: 1000 applicants, 700 good and 300 bad credit risks


def _split(text: str) -> list[str]:
    """One ARFF line (header value list or data row) split at commas outside single quotes."""
    cells = next(csv.reader([text], quotechar="'", skipinitialspace=True))
    return [c.strip() for c in cells]


def read_arff(path: Path) -> tuple[list[str], dict[str, list[str] | None], list[list[str]]]:
    """The attribute names, each one's declared values (None: numeric) and the data rows."""
    names: list[str] = []
    domains: dict[str, list[str] | None] = {}
    rows: list[list[str]] = []
    in_data = False
    for raw in path.read_text(encoding="latin-1").splitlines():
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        if in_data:
            rows.append(_split(line))
            continue
        head = line.lower()
        if head.startswith("@data"):
            in_data = True
        elif head.startswith("@attribute"):
            rest = line.split(None, 1)[1]
            name, kind = rest.split(None, 1) if not rest.startswith("'") else _quoted_name(rest)
            kind = kind.strip()
            names.append(name)
            domains[name] = _split(kind[1:kind.rindex("}")]) if kind.startswith("{") else None
    return names, domains, rows


def _quoted_name(rest: str) -> tuple[str, str]:
    end = rest.index("'", 1)
    return rest[1:end], rest[end + 1:]


def check(names: list[str], domains: dict[str, list[str] | None], rows: list[list[str]]) -> None:
    """Refuse anything unexpected: row count, ragged rows, '?' cells, undeclared values."""
    assert names[-1] == "class" and len(names) == 21, names
    assert len(rows) == ROWS, f"{len(rows)} rows, expected {ROWS}"
    for i, row in enumerate(rows, 1):
        assert len(row) == len(names), f"data row {i}: {len(row)} cells"
        for name, cell in zip(names, row, strict=True):
            assert cell != "?", f"data row {i}: {name} is missing"
            domain = domains[name]
            if domain is None:
                float(cell)  # numeric attributes must parse
            else:
                assert cell in domain, f"data row {i}: {name} = {cell!r} is not declared"
    good = sum(row[-1] == "good" for row in rows)
    assert good == GOOD, f"{good} good, expected {GOOD}"


def to_csv(names: list[str], rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(names)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def gzip_bytes(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arff", type=Path, help="credit-g.arff from the Debian weka package")
    ap.add_argument("--out", type=Path, default=OUT, help=f"output .csv.gz (default {OUT})")
    a = ap.parse_args(argv)
    names, domains, rows = read_arff(a.arff)
    check(names, domains, rows)
    blob = gzip_bytes(to_csv(names, rows))
    a.out.write_bytes(blob)
    print(f"read {a.arff} (sha256 {hashlib.sha256(a.arff.read_bytes()).hexdigest()})")
    for name in names:
        if domains[name] is not None:
            used = {row[names.index(name)] for row in rows}
            unused = [v for v in domains[name] if v not in used]
            if unused:
                print(f"  {name}: declared but never used: {', '.join(unused)}")
    print(f"wrote {a.out}: {len(rows)} rows x {len(names)} columns, "
          f"sha256 {hashlib.sha256(blob).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
