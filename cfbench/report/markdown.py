"""Text written into Markdown (boards, augmentation tables) as literal text, never markup."""

from __future__ import annotations

import re
from typing import Any

#: Markdown's active characters, escaped with a backslash by ``md_cell`` (``_`` only at a word's
#: edge: inside a word, as in ``cfnow:random_optim``, it cannot start emphasis)
_MD_ACTIVE = re.compile(r"[\\`*\[\]|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def md_cell(text: Any) -> str:
    """``text`` as literal Markdown on one line (a table cell, a name in a sentence).

    Whitespace is collapsed; ``&`` and ``<`` become entities (no HTML tag, comment or autolink
    can start); backslashes, code, emphasis, link, table and strikethrough characters are
    escaped, and ``$`` when two could open math.  Ordinary labels (``dice:random``,
    ``llm-fewshot:verified``, ``nearest-neighbour``) come out unchanged.
    """
    out = " ".join(str(text).split()).replace("&", "&amp;").replace("<", "&lt;")
    out = _MD_ACTIVE.sub(lambda m: "\\" + m.group(0), out)
    return out.replace("$", "\\$") if out.count("$") > 1 else out
