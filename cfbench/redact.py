"""Secrets never reach a record: API keys and URL credentials are replaced by ``***``.

The secrets are the values of environment variables whose name ends like one (``*_KEY``,
``*_TOKEN``, ``*_SECRET``, ``*_PASSWORD``) and the password and query values of URLs in
``*_BASE``/``*_URL`` variables (``https://user:pass@host/v1?api_key=...``).  cfbench's own
variables (``CFBENCH_*``) count at any length; others from 8 characters on, so that a setting
like ``HF_TOKEN=1`` does not mask every ``1``.  User info and secret-looking query values of
any URL in the text are masked too, even when they are not in the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"
_SECRET_NAME = re.compile(r"(^|_)(KEY|APIKEY|TOKEN|SECRET|PASSWORD|PASSWD)$")
_URL_NAME = re.compile(r"(^|_)(BASE|URL|ENDPOINT)$")
#: outside cfbench's own variables, shorter values are too likely to be settings, not secrets
MIN_FOREIGN = 8
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_SECRET_PARAM = re.compile(r"(?i)key|token|secret|password|passwd|auth|sig|credential")
_QUERY_SECRET = re.compile(
    r"(?i)([?&;][^=&\s#]*(?:key|token|secret|password|passwd|auth|sig|signature|credential)"
    r"[^=&\s#]*=)[^&\s#]+")


def secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Secret strings found in ``environ`` (default ``os.environ``), longest first."""
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in env.items():
        if not value:
            continue
        upper = name.upper()
        least = 1 if upper.startswith("CFBENCH_") else MIN_FOREIGN
        if _SECRET_NAME.search(upper):
            if len(value) >= least:
                found.add(value)
        elif _URL_NAME.search(upper) and "://" in value:
            found.update(v for v in url_secrets(value) if len(v) >= least)
    return sorted(found, key=len, reverse=True)


def url_secrets(url: str) -> list[str]:
    """Password, whole user info and secret-looking query values (``api_key=``…) of ``url``."""
    try:
        parts = urlsplit(url)
        out = [parts.password]
        out += [v for k, v in parse_qsl(parts.query, keep_blank_values=False)
                if _SECRET_PARAM.search(k)]
    except ValueError:
        return []
    vals = {v for v in out if v}
    return sorted(vals | {unquote(v) for v in vals} | _raw_userinfo(url))


def _raw_userinfo(url: str) -> set[str]:
    m = re.match(r"(?i)[a-z][a-z0-9+.-]*://([^/\s@]+)@", url)
    return {m.group(1)} if m else set()


def redact(text: str, extra: list[str] | tuple[str, ...] = (),
           environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret (``extra`` and those in the environment) replaced by ``***``.

    A secret is replaced wherever it occurs, however short: a 2-character key garbles some
    text, which is the price of never leaking it.
    """
    if not isinstance(text, str) or not text:
        return text
    for s in sorted({*extra, *secrets(environ)} - {""}, key=len, reverse=True):
        text = text.replace(s, MASK)
    text = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    return _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)


def redact_data(obj: object, extra: list[str] | tuple[str, ...] = ()) -> object:
    """Every string inside JSON data ``obj`` (dicts, lists) redacted; keys included."""
    found = [*extra, *secrets()]
    if not found and not isinstance(obj, (str, dict, list)):
        return obj

    def walk(o: object) -> object:
        if isinstance(o, str):
            return redact(o, found, environ={})
        if isinstance(o, dict):
            return {walk(k): walk(v) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    return walk(obj)
