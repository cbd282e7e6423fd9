"""Secrets never reach a record: API keys and URL credentials are replaced by ``***``.

The secrets are the values of environment variables whose name ends like one (``*_KEY``,
``*_TOKEN``, ``*_SECRET``, ``*_PASSWORD``) and the password and query values of URLs in
``*_BASE``/``*_URL`` variables (``https://user:pass@host/v1?api_key=...``).  cfbench's own
variables (``CFBENCH_*``) count at any length; others from 8 characters on, so that a setting
like ``HF_TOKEN=1`` does not mask every ``1``.  User info and secret-looking query values of
any URL in the text are masked too, even when they are not in the environment.

A secret can come back encoded, e.g. a server echoing the request's ``Authorization`` header in
its error: each is masked as written, percent-encoded, JSON-escaped and, for URL credentials,
as the base64 ``user:pass`` of a ``Basic`` header (``encodings``, ``url_secrets``); any
``Basic``/``Bearer`` credential that looks like one is masked even when it is not known.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

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
#: ``Basic <base64>`` (checked to decode to ``user:pass``) and ``Bearer <token>`` (with a digit
#: or punctuation, so that "Bearer responsibilities" stays): HTTP credentials, known or not
_BASIC = re.compile(r"(?i)\b(Basic\s+)([A-Za-z0-9+/_-]{4,}={0,2})")
_BEARER = re.compile(r"(?i)\b(Bearer\s+)(?=[A-Za-z0-9._~+/-]*[0-9._~+/-])[A-Za-z0-9._~+/-]{8,}=*")


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
    info = _raw_userinfo(url)
    return sorted(vals | {unquote(v) for v in vals} | info
                  | {b for i in info for b in basic_credentials(i)})


def _raw_userinfo(url: str) -> set[str]:
    m = re.match(r"(?i)[a-z][a-z0-9+.-]*://([^/\s@]+)@", url)
    return {m.group(1)} if m else set()


def basic_credentials(userinfo: str) -> set[str]:
    """The base64 forms of ``user:pass`` (as in the URL and decoded) that a ``Basic`` header
    carries: HTTP clients send a base URL's user info that way."""
    user, _, password = userinfo.partition(":")
    out: set[str] = set()
    for text in {userinfo, f"{unquote(user)}:{unquote(password)}"}:
        raw = text.encode("utf-8", "surrogatepass")
        for enc in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            out |= {enc.decode("ascii"), enc.decode("ascii").rstrip("=")}
    return out - {""}


@functools.lru_cache(maxsize=1024)
def encodings(secret: str) -> frozenset[str]:
    """``secret`` as written, percent-encoded (``+`` or ``%20`` for spaces) and JSON-escaped:
    the forms it takes inside URLs, query strings and echoed JSON bodies."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    for quoter in (quote, quote_plus):  # environ values may hold surrogates
        forms.add(quoter(secret, safe="", errors="surrogatepass"))
    return frozenset(forms - {""})


@functools.lru_cache(maxsize=4096)
def _pattern(form: str) -> re.Pattern[str]:
    """``form`` as a pattern whose ``%XX`` escapes match in either hex case (``%2f``, ``%2F``)."""
    parts = re.split(r"(%[0-9A-Fa-f]{2})", form)
    return re.compile("".join(f"%(?i:{p[1:]})" if i % 2 else re.escape(p)
                              for i, p in enumerate(parts)))


def _mask_basic(m: re.Match[str]) -> str:
    """``Basic ***`` when the token decodes to ``user:pass`` text, else the text unchanged."""
    token = m.group(2)
    try:
        text = base64.b64decode(token.replace("-", "+").replace("_", "/") + "=" * (-len(token) % 4),
                                validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return m.group(0)
    return m.group(1) + MASK if ":" in text and text.isprintable() else m.group(0)


def redact(text: str, extra: list[str] | tuple[str, ...] = (),
           environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret (``extra`` and those in the environment), in each of its
    ``encodings``, and every ``Basic``/``Bearer`` credential replaced by ``***``.

    A secret is replaced wherever it occurs, however short: a 2-character key garbles some
    text, which is the price of never leaking it.
    """
    if not isinstance(text, str) or not text:
        return text
    forms = {f for s in {*extra, *secrets(environ)} - {""} for f in encodings(s)}
    for s in sorted(forms, key=len, reverse=True):
        text = _pattern(s).sub(MASK, text) if "%" in s else text.replace(s, MASK)
    text = _BASIC.sub(_mask_basic, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
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
