"""The task catalogue: real tables that ship inside cfbench and tables fetched on first use.

Two loaders share the ``table`` loader's options (``label``, ``positive``, ``id``, ``missing``)
and differ only in where the file comes from:

- ``packaged``: ``file`` under ``cfbench/tasks/data/`` (gzip CSV), checked against ``sha256``;
- ``fetched``: ``url`` and ``file``, downloaded once into ``$CFBENCH_CACHE/data/`` and checked
  against ``sha256`` (or ``git_blob_sha1``) every time it is read.

A spec's ``[card]`` says where the data comes from and under which licence; ``status`` says
whether the data is on this machine, for ``cfbench list tasks``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfbench.core.errors import UserError
from cfbench.tasks.datasets import Dataset
from cfbench.tasks.fetch import Remote, cached_path, fetch, is_present
from cfbench.tasks.table import load_table

PACKAGED_DIR = Path(__file__).parent / "data"
#: what a dataset card says; ``rows`` is a count, the rest are one-line texts
CARD_KEYS = ("source", "citation", "licence", "url", "rows", "balance", "missing")
CARD_REQUIRED = ("source", "citation", "licence", "rows", "balance", "missing")


def check_card(card: Any, where: str) -> dict[str, Any]:
    """A spec's ``[card]``: known keys, text values, ``rows`` a positive count."""
    if not isinstance(card, dict):
        raise UserError(f"{where}: card: expected a table of source, citation, licence, rows, "
                        "balance and missing")
    unknown = sorted(set(card) - set(CARD_KEYS))
    if unknown:
        raise UserError(f"{where}: card: unknown key {unknown[0]!r}; valid keys: "
                        f"{', '.join(CARD_KEYS)}")
    absent = [k for k in CARD_REQUIRED if k not in card]
    if absent:
        raise UserError(f"{where}: card: missing {absent[0]!r}; a card gives "
                        f"{', '.join(CARD_REQUIRED)}")
    for key, value in card.items():
        if key == "rows":
            if type(value) is not int or value < 1:
                raise UserError(f"{where}: card.rows: expected a positive row count, got {value!r}")
        elif not isinstance(value, str) or not value.strip():
            raise UserError(f"{where}: card.{key}: expected non-empty text, got {value!r}")
    return dict(card)


def load_packaged(file: str | None = None, sha256: str | None = None, **options: Any) -> Dataset:
    """A table shipped inside cfbench (``cfbench/tasks/data/<file>``), checksum verified."""
    if not isinstance(file, str) or Path(file).name != file:
        raise UserError(f"dataset.options.file: expected the name of a file in {PACKAGED_DIR}, "
                        f"got {file!r}")
    if not sha256:
        raise UserError(f"dataset.options.sha256: a packaged table ({file}) needs its SHA-256")
    path = PACKAGED_DIR / file
    if not path.is_file():
        shipped = sorted(p.name for p in PACKAGED_DIR.glob("*.csv*"))
        raise UserError(f"dataset.options.file: {file!r} is not shipped with cfbench; "
                        f"shipped tables: {', '.join(shipped)}")
    dataset = load_table(path=str(path), sha256=sha256, **options)
    dataset.source = f"packaged {file} sha256={str(sha256)[:16]} ({dataset.notes['rows']} rows)"
    return dataset


def remote(options: dict[str, Any], where: str = "dataset.options") -> Remote:
    """The ``fetched`` loader's file description from a spec's options."""
    url, file = options.get("url"), options.get("file")
    if not isinstance(url, str) or not url:
        raise UserError(f"{where}.url: expected the address the table is downloaded from")
    if not isinstance(file, str) or not file:
        raise UserError(f"{where}.file: expected the file's name in the cache")
    sha = options.get("sha256")
    blob = options.get("git_blob_sha1")
    return Remote(url=url, file=file, sha256=sha if isinstance(sha, str) else None,
                  git_blob_sha1=blob if isinstance(blob, str) else None)


def load_fetched(url: str | None = None, file: str | None = None, sha256: str | None = None,
                 git_blob_sha1: str | None = None, **options: Any) -> Dataset:
    """A table that may not ship: downloaded on first use, verified on every read."""
    src = remote({"url": url, "file": file, "sha256": sha256, "git_blob_sha1": git_blob_sha1})
    path = fetch(src, f"dataset {src.file}")
    dataset = load_table(path=str(path), sha256=sha256, **options)
    check = f"sha256={str(sha256)[:16]}" if sha256 else f"git-blob={str(git_blob_sha1)[:16]}"
    dataset.source = f"fetched {src.file} from {src.url} {check} ({dataset.notes['rows']} rows)"
    return dataset


def status(loader: str, options: dict[str, Any], spec_dir: Path) -> tuple[bool, str]:
    """Whether the task's data is on this machine, and where it is (or would be)."""
    if loader == "packaged":
        path = PACKAGED_DIR / str(options.get("file", ""))
        return path.is_file(), f"packaged {path.name}"
    if loader == "fetched":
        try:
            src = remote(options)
        except UserError as exc:
            return False, str(exc)
        return is_present(src), str(cached_path(src))
    if loader == "table" and isinstance(options.get("path"), str):
        path = Path(options["path"]).expanduser()
        path = path if path.is_absolute() else spec_dir / path
        return path.is_file(), str(path)
    return True, f"loader {loader}"


LOADERS = {"packaged": load_packaged, "fetched": load_fetched}
