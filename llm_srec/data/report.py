"""A ledger of every row, user, item or title that preprocessing dropped or changed, counted by reason.

Why: "nothing disappears silently". Every stage that removes or rewrites data adds one entry here, the entries are
saved next to the splits as JSON, and `llm-srec prepare-data` prints them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Kind = Literal["dropped", "changed", "note"]


@dataclass(frozen=True)
class ReportEntry:
    """One counted event: `count` `unit`s were `kind` at `stage` because of `reason`."""

    stage: str
    reason: str
    count: int
    unit: str
    kind: Kind
    detail: str = ""


class DropReport:
    """Ordered, JSON-serialisable list of counted drops/changes; entries with a zero count are not recorded."""

    def __init__(self, entries: list[ReportEntry] | None = None) -> None:
        self.entries: list[ReportEntry] = list(entries or [])

    def add(
        self, stage: str, reason: str, count: int, unit: str = "interactions", kind: Kind = "dropped",
        detail: str = "",
    ) -> None:
        count = int(count)
        if count < 0:
            raise ValueError(f"negative count {count} for {stage}/{reason}")
        if count:
            self.entries.append(ReportEntry(stage, reason, count, unit, kind, detail))

    def count(self, reason: str, unit: str | None = None) -> int:
        """Total count recorded under `reason` (optionally only in `unit`); 0 when absent."""
        return sum(e.count for e in self.entries if e.reason == reason and (unit is None or e.unit == unit))

    def total_dropped(self, unit: str = "interactions") -> int:
        return sum(e.count for e in self.entries if e.kind == "dropped" and e.unit == unit)

    def to_dict(self) -> dict[str, Any]:
        return {"entries": [asdict(e) for e in self.entries]}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> DropReport:
        return cls([ReportEntry(**entry) for entry in payload["entries"]])

    def format(self) -> str:
        """Human-readable table, one line per entry."""
        if not self.entries:
            return "drop report: nothing dropped or changed"
        lines = ["drop report (stage / reason: count unit [kind]):"]
        for e in self.entries:
            detail = f" - {e.detail}" if e.detail else ""
            lines.append(f"  {e.stage} / {e.reason}: {e.count:,} {e.unit} [{e.kind}]{detail}")
        return "\n".join(lines)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DropReport) and self.entries == other.entries

    def __repr__(self) -> str:
        return f"DropReport({len(self.entries)} entries)"
