"""The data report: every file read, every value masked or dropped and why, every issue.

The loader fills one ``DataReport`` while it builds the feature table; ``cfbench data report``
prints it.  Nothing the loader discards goes uncounted: for each modality the records read equal
the records used plus the sum of the per-reason drops (``check_balance`` asserts it).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

USED = "used"


@dataclass
class DataReport:
    """Counts and messages from one build of the feature table."""

    source: str = ""
    version: str = ""
    files: Counter = field(default_factory=Counter)  # "modality|status" -> n
    records: Counter = field(default_factory=Counter)  # "modality|read", "modality|used", "modality|<reason>"
    participants: Counter = field(default_factory=Counter)  # listed, kept, dropped:<reason>
    dropped: dict[str, str] = field(default_factory=dict)  # participant id -> why
    imputed: dict[str, int] = field(default_factory=dict)  # feature -> cells filled
    issues: list[tuple[str, str]] = field(default_factory=list)  # (file, message)
    notes: list[str] = field(default_factory=list)

    def file(self, modality: str, status: str, n: int = 1) -> None:
        self.files[f"{modality}|{status}"] += n

    def rec(self, modality: str, reason: str, n: int) -> None:
        if n:
            self.records[f"{modality}|{reason}"] += int(n)

    def issue(self, path: str, message: str) -> None:
        self.issues.append((str(path), message))

    def merge(self, other: DataReport) -> None:
        """Add another report's counts (used when participants are processed in parallel)."""
        self.files.update(other.files)
        self.records.update(other.records)
        self.issues.extend(other.issues)

    def check_balance(self) -> dict[str, int]:
        """Per modality: records read minus (used + every drop reason); all zeros when balanced."""
        out: dict[str, int] = {}
        for key, n in self.records.items():
            mod, reason = key.split("|", 1)
            out.setdefault(mod, 0)
            out[mod] += n if reason == "read" else (-n if not reason.startswith("note:") else 0)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "version": self.version, "files": dict(self.files),
            "records": dict(self.records), "participants": dict(self.participants),
            "dropped": self.dropped, "imputed": self.imputed,
            "issues": [list(i) for i in self.issues], "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataReport:
        return cls(
            source=d.get("source", ""), version=d.get("version", ""),
            files=Counter(d.get("files", {})), records=Counter(d.get("records", {})),
            participants=Counter(d.get("participants", {})), dropped=dict(d.get("dropped", {})),
            imputed=dict(d.get("imputed", {})),
            issues=[tuple(i) for i in d.get("issues", [])], notes=list(d.get("notes", [])),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def render(self, max_issues: int = 50) -> str:
        """Plain-text report: participants, files, records by reason, imputed cells, issues."""
        lines = [f"AI-READI data report: {self.source}", f"release version: {self.version}", ""]
        lines.append("participants")
        for k, v in sorted(self.participants.items()):
            lines.append(f"  {k:<48} {v:>10}")
        lines.append("")
        lines.append("files (per modality and status)")
        for k, v in sorted(self.files.items()):
            mod, status = k.split("|", 1)
            lines.append(f"  {mod:<20} {status:<27} {v:>10}")
        lines.append("")
        lines.append("records (read = used + each reason below; 'note:' rows are kept values)")
        mods = sorted({k.split("|", 1)[0] for k in self.records})
        for mod in mods:
            read = self.records.get(f"{mod}|read", 0)
            lines.append(f"  {mod:<20} {'read':<27} {read:>10}")
            items = [(k.split("|", 1)[1], v) for k, v in self.records.items() if k.startswith(mod + "|")]
            for reason, v in sorted(items, key=lambda kv: (kv[0] != USED, kv[0])):
                if reason == "read":
                    continue
                pct = f"{100 * v / read:6.2f}%" if read else ""
                lines.append(f"  {'':<20} {reason:<27} {v:>10} {pct}")
        bal = {m: d for m, d in self.check_balance().items() if d}
        if bal:
            lines.append(f"  UNBALANCED COUNTS (a loader bug): {bal}")
        if self.imputed:
            lines.append("")
            lines.append("feature cells imputed with the cohort median")
            for k, v in sorted(self.imputed.items()):
                lines.append(f"  {k:<48} {v:>10}")
        if self.dropped:
            lines.append("")
            lines.append(f"participants dropped ({len(self.dropped)})")
            for pid, why in list(sorted(self.dropped.items()))[:max_issues]:
                lines.append(f"  {pid}: {why}")
        if self.notes:
            lines.append("")
            lines.extend(f"note: {n}" for n in self.notes)
        lines.append("")
        lines.append(f"issues ({len(self.issues)})")
        for path, msg in self.issues[:max_issues]:
            lines.append(f"  {path}: {msg}")
        if len(self.issues) > max_issues:
            lines.append(f"  ... {len(self.issues) - max_issues} more (use --json for all)")
        return "\n".join(lines)
