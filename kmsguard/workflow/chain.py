"""The audit log's hash chain: how events and run rows are hashed and checked.

Each event stores the SHA-256 of its own fields and the hash of the event
before it. Each run stores the hash of its newest event, and that event stores
a digest of the run row as the event left it. The hashes use no secret: they
expose edits, deletions and insertions made with a SQLite tool, not a tamperer
who recomputes every hash after the edited row.
"""

from __future__ import annotations

import json
from typing import Any

from kmsguard.workflow.records import dumps

GENESIS_HASH = "0" * 64
HASHED_FIELDS = (
    "id",
    "run_id",
    "environment",
    "procedure",
    "step",
    "outcome",
    "from_state",
    "to_state",
    "run_version",
    "operator",
    "caller_arn",
    "message",
    "evidence",
    "resolves",
    "created_at",
    "prev_hash",
)
# run_digest joins the hashed fields only when set, so events written before
# it existed keep their hashes.
OPTIONAL_HASHED_FIELDS = ("run_digest",)
CONFIRMATION_FIELDS = (
    "ticket_id",
    "confirmed_by",
    "confirmed_at",
    "message",
    "recorded_by",
    "recorded_at",
)
# The run columns the digest covers, with `data` as its stored JSON text.
# head_hash is left out because it is the hash of the event holding the digest.
RUN_DIGEST_FIELDS = (
    "id",
    "environment",
    "procedure",
    "state",
    "version",
    "current_key_arn",
    "new_key_arn",
    "ticket_id",
    "contacted_at",
    "pending_intent_id",
    "data",
    "created_at",
    "closed_at",
)


def sha256_hex(payload: dict[str, Any]) -> str:
    # hashlib loads OpenSSL, which commands that never hash (status) skip.
    import hashlib

    return hashlib.sha256(dumps(payload).encode()).hexdigest()


def event_hash(row: dict[str, Any]) -> str:
    """Return the SHA-256, as hex, of the canonical JSON of an event's hashed fields."""
    payload = {name: row[name] for name in HASHED_FIELDS}
    for name in OPTIONAL_HASHED_FIELDS:
        if row.get(name) is not None:
            payload[name] = row[name]
    return sha256_hex(payload)


def run_digest(row: dict[str, Any]) -> str:
    """Return the SHA-256, as hex, of a stored run row's digest fields."""
    return sha256_hex({name: row[name] for name in RUN_DIGEST_FIELDS})


def link_problem(row: dict[str, Any], previous: dict[str, Any] | None) -> str:
    """Return what is wrong with one event as a link after `previous`, or ""."""
    expected_id = previous["id"] + 1 if previous else 1
    previous_hash = previous["hash"] if previous else GENESIS_HASH
    if row["id"] > expected_id:
        return (
            f"event ids jump from {expected_id - 1} to {row['id']}: event "
            f"{expected_id} was deleted, or event {row['id']} was inserted"
        )
    if row["prev_hash"] != previous_hash:
        return (
            f"event {row['id']} does not link to event {expected_id - 1} before "
            "it: one of the two was inserted or replaced"
        )
    if event_hash(row) != row["hash"]:
        return (
            f"event {row['id']} does not match its hash: it was edited, or "
            "inserted, after it was written"
        )
    return ""


def tail_problem(last: dict[str, Any] | None, head: dict[str, Any] | None) -> str:
    """Compare the newest event with the chain head that every insert updates."""
    if last is None and head is None:
        return ""
    if head is None:
        return "the chain head record is missing, so deleted newest events cannot be ruled out"
    if last is None or last["id"] < head["event_id"]:
        newest = last["id"] if last else 0
        return (
            f"the newest event is {newest}, but event {head['event_id']} was "
            f"written: events {newest + 1} to {head['event_id']} were deleted"
        )
    if last["id"] != head["event_id"] or last["hash"] != head["hash"]:
        return (
            f"the newest event {last['id']} is not the one the chain head "
            "records: it was inserted or replaced"
        )
    return ""


def head_problem(run: dict[str, Any], event: dict[str, Any] | None) -> str:
    """Return what is wrong with a run row against its newest event, or ""."""
    if event is None:
        return "it has no audit events"
    if event_hash(event) != event["hash"]:
        return f"its newest audit event {event['id']} does not match its hash"
    if event["hash"] != run["head_hash"]:
        return (
            f"its stored head hash does not match its newest audit event "
            f"{event['id']}: an event of the run was deleted or inserted"
        )
    if event["run_version"] != run["version"]:
        return (
            f"its version {run['version']} is not the version "
            f"{event['run_version']} its newest event records"
        )
    if event["to_state"] != run["state"]:
        return (
            f"its state {run['state']!r} is not the state "
            f"{event['to_state']!r} its newest event records"
        )
    digest = event.get("run_digest")
    if digest is not None and digest != run_digest(run):
        return (
            "its row (keys, ticket, state or data) was changed after its newest "
            f"event {event['id']} was written"
        )
    return ""


def confirmation_problem(row: dict[str, Any], event: dict[str, Any] | None) -> str:
    """Return what is wrong with a confirmation row against its event, or ""."""
    label = f"confirmation {row['id']} of ticket {row['ticket_id']!r}"
    if event is None:
        return f"{label} names event {row['event_id']}, which does not exist"
    if event["run_id"] != row["run_id"] or event["outcome"] != "applied":
        return f"{label} names event {event['id']}, which is not an applied step of its run"
    if event_hash(event) != event["hash"]:
        return f"{label} names event {event['id']}, which does not match its hash"
    recorded = json.loads(event["evidence"]).get("confirmation")
    fields = {name: row[name] for name in CONFIRMATION_FIELDS}
    if recorded != fields:
        return f"{label} differs from the confirmation its event {event['id']} recorded"
    return ""
