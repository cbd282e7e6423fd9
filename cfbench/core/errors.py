"""User-facing errors: one line naming the bad value and what would be valid."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's input; the CLI prints it as one line and exits with status 2."""

    exit_code = 2


def choices_error(what: str, value: object, valid: Iterable[object], note: str = "") -> UserError:
    """Build the standard message for a value outside a closed set of choices; ``note`` (e.g.
    a suggestion from :func:`closest`) goes between the value and the choices."""
    valid = sorted(str(v) for v in valid)
    shown = ", ".join(valid) if valid else "(none available)"
    return UserError(f"unknown {what} {value!r}{note}; valid choices: {shown}")


def closest(value: str, valid: Iterable[str]) -> str | None:
    """The valid name most like ``value`` (``difflib``), or None when none is close."""
    found = difflib.get_close_matches(value, list(valid), n=1, cutoff=0.6)
    return found[0] if found else None
