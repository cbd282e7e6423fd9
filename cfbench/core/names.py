"""Names that become file and folder names (tasks, runs, boards): one rule, one check.
"""

from __future__ import annotations

import re

from cfbench.core.errors import UserError

#: Task names become file names (leaderboard/<name>.json): no path separators, no leading dot
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


#: ... and folder names (runs/<name>/...), with room in the path for the files inside
MAX_NAME = 100


def check_name(name: str, where: str, what: str = "task name") -> str:
    """``name`` if it can name files and folders (``NAME_RULE``, at most ``MAX_NAME``
    characters), else one line naming ``where`` and the rule."""
    if len(name) > MAX_NAME:
        raise UserError(f"{where} {name[:40]!r}... is {len(name)} characters long; valid: a "
                        f"{what} of at most {MAX_NAME} characters")
    if not NAME_RULE.fullmatch(name):
        raise UserError(f"{where} {name!r} is not a valid {what}; expected letters, digits, '.', "
                        f"'_' or '-', starting with a letter or digit (pattern {NAME_RULE.pattern})")
    return name
