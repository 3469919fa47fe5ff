"""The usage report: per-source findings, the combined outcome, and its text form.

"No use seen" is a claim that needs a complete look. A source that could not be
read completely makes the outcome "insufficient_evidence", never "no_use_seen".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SOURCE_IN_USE = "in_use"
SOURCE_CLEAR = "clear"
SOURCE_INCOMPLETE = "incomplete"

OUTCOME_IN_USE = "in_use"
OUTCOME_NO_USE_SEEN = "no_use_seen"
OUTCOME_INSUFFICIENT = "insufficient_evidence"

SOURCE_TITLES = {
    "resource_references": "Resource references",
    "s3_objects": "S3 objects",
    "grants": "Grants",
    "retention": "Retention",
    "cloudtrail": "CloudTrail",
}


@dataclass
class SourceReport:
    """The result of one evidence source about the key.

    `reasons` explain why the source shows use, `gaps` name what could not be
    read, and `findings` are JSON-safe details. The status follows from them.
    """

    name: str
    findings: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.reasons:
            return SOURCE_IN_USE
        if self.gaps:
            return SOURCE_INCOMPLETE
        return SOURCE_CLEAR

    def note(self, text: str) -> None:
        """Add a finding that is only an explanation, not evidence of use."""
        self.findings.append({"note": text})

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "reasons": list(self.reasons),
            "gaps": list(self.gaps),
            "findings": list(self.findings),
        }


@dataclass
class UsageReport:
    """The evidence on whether a key is still in use, one SourceReport per source."""

    key_arn: str
    checked_at: str
    sources: list[SourceReport]
    earliest_out_of_use: str | None = None

    @property
    def outcome(self) -> str:
        statuses = {source.status for source in self.sources}
        if SOURCE_IN_USE in statuses:
            return OUTCOME_IN_USE
        if SOURCE_INCOMPLETE in statuses:
            return OUTCOME_INSUFFICIENT
        return OUTCOME_NO_USE_SEEN

    @property
    def reasons(self) -> list[str]:
        return [reason for source in self.sources for reason in source.reasons]

    @property
    def gaps(self) -> list[str]:
        return [gap for source in self.sources for gap in source.gaps]

    def source(self, name: str) -> SourceReport:
        """Return the source report with this name.

        Raises:
            KeyError: the report has no source of that name.
        """
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_arn": self.key_arn,
            "outcome": self.outcome,
            "checked_at": self.checked_at,
            "earliest_out_of_use": self.earliest_out_of_use,
            "reasons": self.reasons,
            "gaps": self.gaps,
            "sources": [source.to_dict() for source in self.sources],
        }


def format_report_lines(report: UsageReport) -> list[str]:
    """Render the report as lines of text for an operator, outcome first."""
    lines = [_headline(report), ""]
    for source in report.sources:
        lines.extend(_source_lines(source))
    lines.extend(_retention_lines(report))
    return lines


def _headline(report: UsageReport) -> str:
    if report.outcome == OUTCOME_IN_USE:
        return (
            f"IN USE: key {report.key_arn} is still in use; do not disable or "
            "delete it (reasons below)."
        )
    if report.outcome == OUTCOME_INSUFFICIENT:
        count = sum(1 for s in report.sources if s.status == SOURCE_INCOMPLETE)
        return (
            f"INSUFFICIENT EVIDENCE: {count} source(s) could not be read "
            f"completely, so kmsguard cannot claim that key {report.key_arn} is "
            "unused (gaps below)."
        )
    return (
        f"NO USE SEEN: every source was read completely and none shows use of "
        f"key {report.key_arn} (checked at {report.checked_at})."
    )


def _source_lines(source: SourceReport) -> list[str]:
    title = SOURCE_TITLES.get(source.name, source.name)
    lines = [f"{title}: {source.status}"]
    lines.extend(f"  in use: {reason}" for reason in source.reasons)
    lines.extend(f"  gap: {gap}" for gap in source.gaps)
    lines.extend(
        f"  note: {finding['note']}" for finding in source.findings if "note" in finding
    )
    return lines


def _retention_lines(report: UsageReport) -> list[str]:
    if report.earliest_out_of_use is None:
        return []
    return [
        "",
        "Records in the listed streams and queues stop depending on the old key "
        f"at {report.earliest_out_of_use} at the earliest. S3 objects written "
        "under it never age out.",
    ]
