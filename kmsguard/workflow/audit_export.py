"""Audit export: every event of one environment, hashes included, for a reviewer.

JSON Lines and CSV hold one event a line with every stored field. Markdown is
a report to read: the chain check, the runs, support's confirmations, the
events, their hashes and their evidence.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.chain import HASHED_FIELDS, OPTIONAL_HASHED_FIELDS
from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.records import utc_now

if TYPE_CHECKING:
    from kmsguard.workflow.records import Confirmation, Event, Run
    from kmsguard.workflow.store import SqliteStore

FORMATS = ("jsonl", "csv", "markdown")
EXPORT_FIELDS = (
    "id",
    "created_at",
    "environment",
    "run_id",
    "procedure",
    "step",
    "outcome",
    "from_state",
    "to_state",
    "run_version",
    "operator",
    "caller_arn",
    "message",
    "resolves",
    "evidence",
    "prev_hash",
    "hash",
    "run_digest",
)


@dataclass(frozen=True)
class AuditExport:
    """A rendered export and the whole-chain check it was made with."""

    environment: str
    format: str
    text: str
    events: int
    verification: dict[str, Any]


def export_audit(
    store: SqliteStore,
    environment: str,
    fmt: str,
    verification: dict[str, Any],
    generated_by: str,
) -> AuditExport:
    """Render every event of an environment in one of FORMATS.

    Raises:
        InvalidInput: an unknown format.
    """
    if fmt not in FORMATS:
        raise InvalidInput(f"invalid --format {fmt!r}: use one of {', '.join(FORMATS)}")
    events = store.environment_events(environment)
    if fmt == "jsonl":
        text = to_jsonl(events)
    elif fmt == "csv":
        text = to_csv(events)
    else:
        runs = store.runs(environment)
        confirmations = [
            (run.id, c) for run in runs for c in store.confirmations(run.id)
        ]
        report = MarkdownReport(environment, events, runs, confirmations)
        text = report.render(verification, generated_by)
    return AuditExport(environment, fmt, text, len(events), verification)


def to_jsonl(events: list[Event]) -> str:
    lines = [json.dumps(event.to_dict(), sort_keys=True) for event in events]
    return "".join(line + "\n" for line in lines)


def to_csv(events: list[Event]) -> str:
    """Return one CSV row per event; evidence is a JSON object in its cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for event in events:
        row = event.to_dict()
        row["evidence"] = json.dumps(row["evidence"], sort_keys=True)
        writer.writerow({name: row[name] for name in EXPORT_FIELDS})
    return buffer.getvalue()


def cell(value: Any) -> str:
    """Return a value as the text of one Markdown table cell."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines


@dataclass(frozen=True)
class MarkdownReport:
    """The Markdown export of one environment."""

    environment: str
    events: list[Event]
    runs: list[Run]
    confirmations: list[tuple[int, Confirmation]]

    def render(self, verification: dict[str, Any], generated_by: str) -> str:
        lines = [f"# kmsguard audit report: environment {self.environment}", ""]
        lines += self.summary(verification, generated_by)
        for title, body in (
            ("Runs", self.run_table()),
            ("Support confirmations", self.confirmation_table()),
            ("Events", self.event_table()),
            ("Event hashes", self.hash_table()),
            ("Evidence", self.evidence_sections()),
        ):
            lines += ["", f"## {title}", "", *body]
        return "\n".join(lines) + "\n"

    def summary(self, verification: dict[str, Any], generated_by: str) -> list[str]:
        if verification.get("ok"):
            check = (
                f"passed: {verification['events_checked']} events of the whole "
                f"database, chain head {verification.get('head')}"
            )
        else:
            check = f"FAILED: {verification.get('problem')}"
        hashed = ", ".join(HASHED_FIELDS)
        optional = ", ".join(OPTIONAL_HASHED_FIELDS)
        return [
            f"- Generated at {utc_now()} by {generated_by}",
            f"- Events of this environment: {len(self.events)}",
            f"- Whole-chain check (`kmsguard audit verify`): {check}",
            "- How the hashes are made: each event's `hash` is the SHA-256 of the "
            "JSON object of its fields "
            f"{hashed} (and {optional} when set), with sorted keys and no spaces; "
            "`evidence` enters as the JSON text stored. `prev_hash` is the hash of "
            "the event before it in the whole database, which may belong to "
            "another environment.",
        ]

    def run_table(self) -> list[str]:
        if not self.runs:
            return ["No runs."]
        header = ["Run", "Procedure", "State", "Current key", "New key", "Ticket"]
        header += ["Opened", "Closed"]
        rows = [
            [
                run.id,
                run.procedure,
                run.state,
                run.current_key_arn,
                run.new_key_arn,
                run.ticket_id,
                run.created_at,
                run.closed_at,
            ]
            for run in self.runs
        ]
        return table(header, rows)

    def confirmation_table(self) -> list[str]:
        if not self.confirmations:
            return ["No confirmations recorded."]
        header = ["Run", "Ticket", "Confirmed by", "Confirmed at", "Their words"]
        header += ["Recorded by", "Recorded at"]
        rows = [
            [
                run_id,
                c.ticket_id,
                c.confirmed_by,
                c.confirmed_at,
                c.message,
                c.recorded_by,
                c.recorded_at,
            ]
            for run_id, c in self.confirmations
        ]
        return table(header, rows)

    def event_table(self) -> list[str]:
        if not self.events:
            return ["No events."]
        header = ["Event", "Time (UTC)", "Run", "Procedure", "Step", "Outcome"]
        header += ["From", "To", "Operator", "AWS caller", "Resolves", "Message"]
        rows = [
            [
                e.id,
                e.created_at,
                e.run_id,
                e.procedure,
                e.step,
                e.outcome,
                e.from_state,
                e.to_state,
                e.operator,
                e.caller_arn,
                e.resolves,
                e.message,
            ]
            for e in self.events
        ]
        return table(header, rows)

    def hash_table(self) -> list[str]:
        if not self.events:
            return ["No events."]
        rows = [[e.id, e.prev_hash, e.hash, e.run_digest] for e in self.events]
        return table(["Event", "prev_hash", "hash", "run_digest"], rows)

    def evidence_sections(self) -> list[str]:
        lines: list[str] = []
        for event in self.events:
            if not event.evidence:
                continue
            text = json.dumps(event.evidence, indent=2, sort_keys=True, default=str)
            lines += [f"### Event {event.id}: {event.step} {event.outcome}", ""]
            lines += ["```json", text.replace("```", "` ` `"), "```", ""]
        return lines or ["No evidence recorded."]
