"""The records kmsguard stores, and the small store interface the engine uses."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

TERMINAL_STATES = frozenset({"completed", "cancelled"})
# The state a cancel step leads to. Cancelling needs neither AWS nor agreement
# between the run and its keys, so no drift check blocks it.
CANCELLED_STATE = "cancelled"


def utc_now() -> str:
    """Return the current UTC time as ISO 8601 with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class Environment:
    """One pipeline deployment, named as the vendor names it."""

    name: str
    region: str
    pipeline_account: str
    resources: dict[str, Any]
    created_at: str
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "region": self.region,
            "pipeline_account": self.pipeline_account,
            "resources": self.resources,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class Run:
    """One instance of a procedure for one environment."""

    id: int
    environment: str
    procedure: str
    state: str
    version: int
    current_key_arn: str | None
    new_key_arn: str | None
    ticket_id: str | None
    contacted_at: str | None
    pending_intent_id: int | None
    head_hash: str
    data: dict[str, Any]
    created_at: str
    updated_at: str
    closed_at: str | None

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.id,
            "environment": self.environment,
            "procedure": self.procedure,
            "state": self.state,
            "version": self.version,
            "current_key_arn": self.current_key_arn,
            "new_key_arn": self.new_key_arn,
            "ticket_id": self.ticket_id,
            "contacted_at": self.contacted_at,
            "pending_intent_id": self.pending_intent_id,
            "data": self.data,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "closed_at": self.closed_at,
        }


@dataclass(frozen=True)
class NewEvent:
    """An audit event about to be appended; the store adds ids, times and hashes."""

    step: str
    outcome: str  # applied, refused, failed, intent or recorded
    operator: str
    from_state: str | None = None
    to_state: str | None = None
    caller_arn: str | None = None
    message: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    resolves: int | None = None


@dataclass(frozen=True)
class Event:
    """One stored audit event: a link of the hash chain."""

    id: int
    run_id: int | None
    environment: str
    procedure: str | None
    step: str
    outcome: str
    from_state: str | None
    to_state: str | None
    run_version: int | None
    operator: str
    caller_arn: str | None
    message: str
    evidence: dict[str, Any]
    resolves: int | None
    created_at: str
    prev_hash: str
    hash: str
    # SHA-256 of the run row as this event left it; None on events written
    # before the digest existed and on events of no run.
    run_digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "environment": self.environment,
            "procedure": self.procedure,
            "step": self.step,
            "outcome": self.outcome,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "run_version": self.run_version,
            "operator": self.operator,
            "caller_arn": self.caller_arn,
            "message": self.message,
            "evidence": self.evidence,
            "resolves": self.resolves,
            "created_at": self.created_at,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "run_digest": self.run_digest,
        }


@dataclass(frozen=True)
class Confirmation:
    """Support's confirmation of a ticket, as recorded by an operator."""

    ticket_id: str
    confirmed_by: str
    confirmed_at: str
    message: str
    recorded_by: str
    recorded_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id,
            "confirmed_by": self.confirmed_by,
            "confirmed_at": self.confirmed_at,
            "message": self.message,
            "recorded_by": self.recorded_by,
            "recorded_at": self.recorded_at,
        }


@dataclass(frozen=True)
class PolicyBackup:
    """A key policy as it was before kmsguard changed it."""

    key_arn: str
    policy: str
    reason: str


@dataclass(frozen=True)
class RunChange:
    """The changes a compare-and-set writes with its event, besides the state."""

    state: str
    updates: dict[str, Any] = field(default_factory=dict)
    data_updates: dict[str, Any] = field(default_factory=dict)
    close: bool = False
    reopen: bool = False
    pending_intent: bool = False
    confirmation: Confirmation | None = None
    backups: tuple[PolicyBackup, ...] = ()


class Store(Protocol):
    """The operations the engine needs from a store of runs and audit events."""

    def get_environment(self, name: str) -> Environment | None: ...

    def open_run(self, environment: str) -> Run | None: ...

    def get_run(self, run_id: int) -> Run: ...

    def create_run(
        self,
        environment: str,
        procedure: str,
        state: str,
        change: RunChange,
        event: NewEvent,
    ) -> tuple[Run, Event]: ...

    def compare_and_set(
        self,
        run: Run,
        change: RunChange,
        event: NewEvent,
        before_commit: Callable[[], None] | None = None,
    ) -> tuple[Run, Event]: ...

    def append_event(
        self, run: Run | None, environment: str, event: NewEvent
    ) -> Event: ...

    def run_events(self, run_id: int) -> list[Event]: ...

    def confirmations(self, run_id: int) -> list[Confirmation]: ...

    def check_run_head(self, run: Run) -> None: ...


def dumps(value: Any) -> str:
    """Serialise to the canonical JSON that the hash chain covers."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
