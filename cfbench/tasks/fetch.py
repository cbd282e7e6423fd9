"""Data that may not ship: downloaded once into the cache, kept only when its checksum matches.

A fetched file lives at ``$CFBENCH_CACHE/data/<file>``.  It is downloaded to a temporary name
beside it and renamed into place only after its checksum matched, so an interrupted or corrupted
download never becomes the cached copy.  ``$CFBENCH_DATA_MIRROR`` (a base URL) replaces the
source's address, for an institute's mirror or an offline test server: the file is then read
from ``<mirror>/<file>``.  Every failure is one line naming the file, the address and what to do,
including where to place the file by hand to run offline.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cfbench.core.errors import UserError
from cfbench.tasks.classifier import cache_dir

MIRROR_ENV = "CFBENCH_DATA_MIRROR"
TIMEOUT = 60.0
MAX_BYTES = 2 * 1024**3  # no table of the catalogue is near this; a runaway server is cut off
CHUNK = 1 << 20


@dataclass(frozen=True)
class Remote:
    """Where a file comes from and how it is recognised.

    ``sha256`` is the file's SHA-256; ``git_blob_sha1`` (the id git gives the file in its source
    repository) is accepted instead only when the file could not be obtained to hash it.
    """

    url: str
    file: str
    sha256: str | None = None
    git_blob_sha1: str | None = None

    def __post_init__(self) -> None:
        if not self.sha256 and not self.git_blob_sha1:
            raise UserError(f"{self.file}: give sha256 (or git_blob_sha1) to verify the download")
        if Path(self.file).name != self.file or self.file in ("", ".", ".."):
            raise UserError(f"dataset.options.file: {self.file!r} must be a plain file name")

    @property
    def expected(self) -> str:
        return (f"SHA-256 {self.sha256}" if self.sha256
                else f"git blob id {self.git_blob_sha1}")

    def address(self) -> str:
        """The URL to download from: the source's, or the mirror's when one is set."""
        mirror = os.environ.get(MIRROR_ENV, "").strip()
        return f"{mirror.rstrip('/')}/{self.file}" if mirror else self.url


def data_dir() -> Path:
    """``$CFBENCH_CACHE/data``: where fetched tables are kept."""
    path = cache_dir() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached_path(remote: Remote) -> Path:
    return cache_dir() / "data" / remote.file


def matches(remote: Remote, blob: bytes) -> tuple[bool, str]:
    """Whether ``blob`` is the expected file, and the digest that was computed."""
    if remote.sha256:
        digest = hashlib.sha256(blob).hexdigest()
        return digest == remote.sha256.lower(), f"SHA-256 {digest}"
    digest = hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest()  # noqa: S324 - git's id
    return digest == str(remote.git_blob_sha1).lower(), f"git blob id {digest}"


def is_present(remote: Remote) -> bool:
    """The file is in the cache (verified when it was stored; see :func:`verified`)."""
    return cached_path(remote).is_file()


def verified(remote: Remote, where: str) -> bytes:
    """The cached file's bytes after checking them again; an edited copy is refused."""
    path = cached_path(remote)
    blob = path.read_bytes()
    ok, got = matches(remote, blob)
    if not ok:
        raise UserError(
            f"{where}: {path} has {got}, expected {remote.expected}; delete it and run "
            f"`cfbench data fetch` again, or place the original file there"
        )
    return blob


def offline_hint(remote: Remote) -> str:
    return (f"to run offline, download {remote.url} elsewhere and place it at "
            f"{cached_path(remote)} (checked against {remote.expected})")


def fetch(remote: Remote, where: str) -> Path:
    """Download ``remote`` into the cache unless a verified copy is there; return its path."""
    target = data_dir() / remote.file
    if target.is_file():
        verified(remote, where)
        return target
    url = remote.address()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        size = _download(url, tmp, where, remote)
        blob = tmp.read_bytes()
        ok, got = matches(remote, blob)
        if not ok:
            raise UserError(
                f"{where}: the download from {url} ({size} bytes) has {got}, expected "
                f"{remote.expected}; the file was not kept ({offline_hint(remote)})"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _download(url: str, tmp: Path, where: str, remote: Remote) -> int:
    if not url.startswith(("http://", "https://")):
        raise UserError(f"{where}: cannot download {url!r}: only http(s) addresses are fetched")
    request = urllib.request.Request(url, headers={"User-Agent": "cfbench"})
    size = 0
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp, tmp.open("wb") as out:  # noqa: S310
            while chunk := resp.read(CHUNK):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise UserError(f"{where}: {url} sent more than {MAX_BYTES} bytes; stopped")
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise UserError(f"{where}: cannot download {url} (HTTP {exc.code} {exc.reason}); "
                        f"{offline_hint(remote)}") from None
    except (urllib.error.URLError, http.client.HTTPException, ValueError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        reason = str(reason) or type(exc).__name__
        raise UserError(f"{where}: cannot download {url} ({reason}); "
                        f"{offline_hint(remote)}") from None
    return size


def copy_into_cache(remote: Remote, source: Path, where: str) -> Path:
    """Place a file obtained by hand into the cache, after checking it is the expected one."""
    try:
        blob = source.read_bytes()
    except OSError as exc:
        raise UserError(f"{where}: cannot read {source} ({exc.strerror or exc})") from None
    ok, got = matches(remote, blob)
    if not ok:
        raise UserError(f"{where}: {source} has {got}, expected {remote.expected}")
    target = data_dir() / remote.file
    shutil.copyfile(source, target)
    return target
