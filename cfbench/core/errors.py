"""User-facing errors: one line naming the bad value and what would be valid."""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's input; the CLI prints it as one line and exits with status 2."""

    exit_code = 2


def choices_error(what: str, value: object, valid: Iterable[object]) -> UserError:
    """Build the standard message for a value outside a closed set of choices."""
    valid = sorted(str(v) for v in valid)
    shown = ", ".join(valid) if valid else "(none available)"
    return UserError(f"unknown {what} {value!r}; valid choices: {shown}")
