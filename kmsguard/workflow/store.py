"""The SQLite store: environments, runs and the hash-chained audit log.

Every write that touches a run happens inside one `BEGIN IMMEDIATE`
transaction, so the compare-and-set on the run's version and the audit event
commit together or not at all, and two processes never both win a step.

This module contains the writes. `SqliteStore` builds on the connection and
its transactions (store_connection), the record reads (store_reads) and the
integrity reads (store_integrity).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from kmsguard.workflow.chain import GENESIS_HASH, event_hash, run_digest
from kmsguard.workflow.errors import Conflict, InvalidInput
from kmsguard.workflow.records import (
    Environment,
    Event,
    NewEvent,
    Run,
    RunChange,
    dumps,
    utc_now,
)
from kmsguard.workflow.schema_names import BUSY_TIMEOUT_SECONDS
from kmsguard.workflow.store_connection import busy_timeout, create_private_file
from kmsguard.workflow.store_integrity import StoreIntegrity

# Callers import the connection settings from this module, so it re-exports them.
__all__ = [
    "BUSY_TIMEOUT_SECONDS",
    "RUN_COLUMNS",
    "SqliteStore",
    "busy_timeout",
    "create_private_file",
]

RUN_COLUMNS = (
    "current_key_arn",
    "new_key_arn",
    "ticket_id",
    "contacted_at",
)


class SqliteStore(StoreIntegrity):
    """Runs, events and confirmations in one local SQLite file."""

    # Environments

    def add_environment(self, env: Environment, event: NewEvent) -> Event:
        with self.immediate():
            if self.get_environment(env.name):
                raise InvalidInput(
                    f"environment {env.name!r} already exists: see "
                    f"`kmsguard env show {env.name}`"
                )
            row = env.to_dict()
            row["resources"] = dumps(env.resources)
            self.db.table("environments").insert(row)
            return self._insert_event(None, env.name, None, event)

    def set_environment_resources(
        self, name: str, resources: dict[str, Any], event: NewEvent
    ) -> Event:
        with self.immediate():
            self.db.table("environments").update(name, {"resources": dumps(resources)})
            return self._insert_event(None, name, None, event)

    # Runs

    def create_run(
        self,
        environment: str,
        procedure: str,
        state: str,
        change: RunChange,
        event: NewEvent,
    ) -> tuple[Run, Event]:
        """Insert a new open run with its first event; Conflict if one is open."""
        now = utc_now()
        with self.immediate():
            existing = self.open_run(environment)
            if existing is not None:
                raise Conflict(
                    f"environment {environment!r} already has an open "
                    f"{existing.procedure} run in state {existing.state}; finish "
                    f"or cancel it first (`kmsguard {existing.procedure} cancel "
                    f"{environment} --reason TEXT`)"
                )
            row: dict[str, Any] = {
                "environment": environment,
                "procedure": procedure,
                "state": state,
                "version": 1,
                "head_hash": GENESIS_HASH,
                "data": dumps(change.data_updates),
                "created_at": now,
                "updated_at": now,
            }
            row.update({k: v for k, v in change.updates.items() if k in RUN_COLUMNS})
            run_id = self.db.table("runs").insert(row).last_pk
            run = self.get_run(int(str(run_id)))
            return self._apply(run, change, event)

    def compare_and_set(
        self,
        run: Run,
        change: RunChange,
        event: NewEvent,
        before_commit: Callable[[], None] | None = None,
    ) -> tuple[Run, Event]:
        """Apply a change and its event if the run is still at `run.version`.

        `before_commit` is called inside the transaction, after every write
        and before COMMIT (the kill tests stop the process there).

        Raises:
            Conflict: another process changed the run since it was loaded.
        """
        with self.immediate():
            current = self.get_run(run.id)
            if current.version != run.version:
                raise Conflict(
                    f"another operator moved the {run.procedure} run of "
                    f"{run.environment!r} to {current.state} at {current.updated_at}; "
                    f"run `kmsguard status {run.environment}` and try again"
                )
            result = self._apply(current, change, event)
            if before_commit is not None:
                before_commit()
            return result

    def _apply(self, run: Run, change: RunChange, event: NewEvent) -> tuple[Run, Event]:
        if change.confirmation is not None:
            # The event carries the confirmation it writes, so that
            # confirmations() can check each row against its event.
            evidence = dict(event.evidence)
            evidence["confirmation"] = change.confirmation.to_dict()
            event = replace(event, evidence=evidence)
        now = utc_now()
        event_id = self._chain_tail()[0] + 1
        row = self._raw_run(run.id)
        row.update(self._changed_columns(run, change, now))
        row["pending_intent_id"] = event_id if change.pending_intent else None
        stored = self._insert_event(
            run,
            run.environment,
            run.procedure,
            event,
            version=row["version"],
            digest=run_digest(row),
        )
        row["head_hash"] = stored.hash
        self._update_run(run, row)
        self._insert_side_records(run.id, stored.id, change, now)
        return self.get_run(run.id), stored

    @staticmethod
    def _changed_columns(run: Run, change: RunChange, now: str) -> dict[str, Any]:
        data = dict(run.data)
        data.update(change.data_updates)
        closed_at = run.closed_at
        if change.close:
            closed_at = now
        elif change.reopen:
            closed_at = None
        row: dict[str, Any] = {
            "state": change.state,
            "version": run.version + 1,
            "updated_at": now,
            "closed_at": closed_at,
            "data": dumps(data),
        }
        row.update({k: v for k, v in change.updates.items() if k in RUN_COLUMNS})
        return row

    def _update_run(self, run: Run, row: dict[str, Any]) -> None:
        try:
            self.db.table("runs").update(run.id, row)
        except sqlite3.IntegrityError as exc:
            raise Conflict(
                f"environment {run.environment!r} already has another open run; "
                f"run `kmsguard status {run.environment}`"
            ) from exc

    def _insert_side_records(
        self, run_id: int, event_id: int, change: RunChange, now: str
    ) -> None:
        if change.confirmation is not None:
            row = change.confirmation.to_dict()
            row.update({"run_id": run_id, "event_id": event_id})
            self.db.table("confirmations").insert(row)
        for backup in change.backups:
            self.db.table("policy_backups").insert(
                {
                    "run_id": run_id,
                    "event_id": event_id,
                    "key_arn": backup.key_arn,
                    "policy": backup.policy,
                    "reason": backup.reason,
                    "created_at": now,
                }
            )

    # Events

    def append_event(self, run: Run | None, environment: str, event: NewEvent) -> Event:
        """Append an event that does not change a run's state (a refusal, a note).

        The event records the state the run is in when it is written, which
        may be newer than the state the caller loaded: another process can
        move the run in between, and the newest event must match the run.
        """
        with self.immediate():
            if run is None:
                return self._insert_event(None, environment, None, event)
            current = self._raw_run(run.id)
            stored = self._insert_event(
                run,
                environment,
                current["procedure"],
                replace(event, from_state=current["state"], to_state=current["state"]),
                version=current["version"],
                digest=run_digest(current),
            )
            self.db.table("runs").update(run.id, {"head_hash": stored.hash})
            return stored

    def _chain_tail(self) -> tuple[int, str]:
        """Return the id and hash of the newest event, or (0, genesis)."""
        last = self.conn.execute(
            "SELECT id, hash FROM events ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return (int(last[0]), str(last[1])) if last else (0, GENESIS_HASH)

    def _insert_event(
        self,
        run: Run | None,
        environment: str,
        procedure: str | None,
        event: NewEvent,
        version: int | None = None,
        digest: str | None = None,
    ) -> Event:
        last_id, last_hash = self._chain_tail()
        row: dict[str, Any] = {
            "id": last_id + 1,
            "run_id": run.id if run else None,
            "environment": environment,
            "procedure": procedure,
            "step": event.step,
            "outcome": event.outcome,
            "from_state": event.from_state,
            "to_state": event.to_state,
            "run_version": version,
            "operator": event.operator,
            "caller_arn": event.caller_arn,
            "message": event.message,
            "evidence": dumps(event.evidence),
            "resolves": event.resolves,
            "created_at": utc_now(),
            "prev_hash": last_hash,
            "run_digest": digest,
        }
        row["hash"] = event_hash(row)
        self.db.table("events").insert(row)
        return self._event_from_row(row)
