"""The SQLite store: environments, runs and the hash-chained audit log.

Every write that touches a run happens inside one `BEGIN IMMEDIATE`
transaction, so the compare-and-set on the run's version and the audit event
commit together or not at all, and two processes never both win a step.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from kmsguard.workflow.errors import Conflict, IntegrityError, InvalidInput, LockTimeout
from kmsguard.workflow.records import (
    Confirmation,
    Environment,
    Event,
    NewEvent,
    Run,
    RunChange,
    dumps,
    utc_now,
)
from kmsguard.workflow.schema import apply_migrations

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
BUSY_TIMEOUT_SECONDS = 10.0
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
RUN_COLUMNS = (
    "current_key_arn",
    "new_key_arn",
    "ticket_id",
    "contacted_at",
)


def event_hash(row: dict[str, Any]) -> str:
    """Return the SHA-256 of an event row's hashed fields, as hex."""
    payload = {name: row[name] for name in HASHED_FIELDS}
    return hashlib.sha256(dumps(payload).encode()).hexdigest()


def create_private_file(path: Path) -> None:
    """Create the database file with mode 0600 before SQLite opens it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        descriptor = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(descriptor)


class SqliteStore:
    """Runs, events and confirmations in one local SQLite file."""

    def __init__(self, path: str | Path, timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InvalidInput(
                f"database path {str(self.path)!r} is a directory: give a file "
                "path with --db or KMSGUARD_DB"
            )
        create_private_file(self.path)
        connection = sqlite3.connect(
            str(self.path), timeout=timeout, isolation_level=None
        )
        self.db = Database(connection)
        self.conn = connection
        self._configure()

    def _configure(self) -> None:
        with self._translate_lock_errors("opening the database"):
            self.conn.execute("PRAGMA foreign_keys=ON")
            mode = self.conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            if self._needs_migration():
                with self.immediate():
                    apply_migrations(self.db)

    def _needs_migration(self) -> bool:
        from kmsguard.workflow.schema import migrations

        return bool(migrations.pending(self.db))

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _translate_lock_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise LockTimeout(
                    f"{action} failed: the database {str(self.path)!r} stayed "
                    "locked by another kmsguard process; wait for it and run the "
                    "command again"
                ) from exc
            raise

    @contextmanager
    def immediate(self) -> Iterator[None]:
        """Run the block in one BEGIN IMMEDIATE transaction."""
        with self._translate_lock_errors("starting a write"):
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        with self._translate_lock_errors("committing"):
            self.conn.execute("COMMIT")

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

    def get_environment(self, name: str) -> Environment | None:
        rows = list(self.db.table("environments").rows_where("name = ?", [name]))
        if not rows:
            return None
        row = rows[0]
        row["resources"] = json.loads(row["resources"])
        return Environment(**row)

    def list_environments(self) -> list[Environment]:
        rows = self.db.execute("SELECT name FROM environments ORDER BY name")
        found = [self.get_environment(name) for (name,) in rows.fetchall()]
        return [env for env in found if env is not None]

    # Runs

    def open_run(self, environment: str) -> Run | None:
        return self._one_run("environment = ? AND closed_at IS NULL", [environment])

    def get_run(self, run_id: int) -> Run:
        run = self._one_run("id = ?", [run_id])
        if run is None:
            raise InvalidInput(f"run {run_id} not found")
        return run

    def runs(self, environment: str) -> list[Run]:
        rows = self.db.table("runs").rows_where(
            "environment = ?", [environment], order_by="id"
        )
        return [self._run_from_row(row) for row in rows]

    def open_runs(self) -> list[Run]:
        rows = self.db.table("runs").rows_where("closed_at IS NULL", order_by="environment")
        return [self._run_from_row(row) for row in rows]

    def _one_run(self, where: str, params: list[Any]) -> Run | None:
        rows = list(self.db.table("runs").rows_where(where, params, limit=1))
        return self._run_from_row(rows[0]) if rows else None

    @staticmethod
    def _run_from_row(row: dict[str, Any]) -> Run:
        row = dict(row)
        row["data"] = json.loads(row["data"])
        return Run(**row)

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
        self, run: Run, change: RunChange, event: NewEvent
    ) -> tuple[Run, Event]:
        """Apply a change and its event if the run is still at `run.version`.

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
            return self._apply(current, change, event)

    def _apply(self, run: Run, change: RunChange, event: NewEvent) -> tuple[Run, Event]:
        now = utc_now()
        version = run.version + 1
        data = dict(run.data)
        data.update(change.data_updates)
        closed_at = run.closed_at
        if change.close:
            closed_at = now
        elif change.reopen:
            closed_at = None
        stored = self._insert_event(
            run, run.environment, run.procedure, event, version=version
        )
        row: dict[str, Any] = {
            "state": change.state,
            "version": version,
            "updated_at": now,
            "closed_at": closed_at,
            "data": dumps(data),
            "head_hash": stored.hash,
            "pending_intent_id": stored.id if change.pending_intent else None,
        }
        row.update({k: v for k, v in change.updates.items() if k in RUN_COLUMNS})
        self._update_run(run, row)
        self._insert_side_records(run.id, stored.id, change, now)
        return self.get_run(run.id), stored

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
        """Append an event that does not change a run's state (a refusal, a note)."""
        with self.immediate():
            if run is None:
                return self._insert_event(None, environment, None, event)
            current = self.get_run(run.id)
            stored = self._insert_event(
                current, environment, current.procedure, event, version=current.version
            )
            self.db.table("runs").update(current.id, {"head_hash": stored.hash})
            return stored

    def _insert_event(
        self,
        run: Run | None,
        environment: str,
        procedure: str | None,
        event: NewEvent,
        version: int | None = None,
    ) -> Event:
        last = self.conn.execute(
            "SELECT id, hash FROM events ORDER BY id DESC LIMIT 1"
        ).fetchone()
        row: dict[str, Any] = {
            "id": (last[0] + 1) if last else 1,
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
            "prev_hash": last[1] if last else GENESIS_HASH,
        }
        row["hash"] = event_hash(row)
        self.db.table("events").insert(row)
        return self._event_from_row(row)

    @staticmethod
    def _event_from_row(row: dict[str, Any]) -> Event:
        row = dict(row)
        row["evidence"] = json.loads(row["evidence"])
        return Event(**row)

    def run_events(self, run_id: int) -> list[Event]:
        rows = self.db.table("events").rows_where("run_id = ?", [run_id], order_by="id")
        return [self._event_from_row(row) for row in rows]

    def environment_events(self, environment: str) -> list[Event]:
        rows = self.db.table("events").rows_where(
            "environment = ?", [environment], order_by="id"
        )
        return [self._event_from_row(row) for row in rows]

    def get_event(self, event_id: int) -> Event | None:
        rows = list(self.db.table("events").rows_where("id = ?", [event_id]))
        return self._event_from_row(rows[0]) if rows else None

    def confirmations(self, run_id: int) -> list[Confirmation]:
        rows = self.db.execute(
            "SELECT ticket_id, confirmed_by, confirmed_at, message, recorded_by, "
            "recorded_at FROM confirmations WHERE run_id = ? ORDER BY id",
            [run_id],
        ).fetchall()
        return [Confirmation(*row) for row in rows]

    def policy_backups(self, run_id: int) -> list[dict[str, Any]]:
        rows = self.db.table("policy_backups").rows_where(
            "run_id = ?", [run_id], order_by="id"
        )
        return list(rows)

    # Integrity

    def check_run_head(self, run: Run) -> None:
        """Check the run's newest event against its stored hash, state and version.

        Raises:
            IntegrityError: the run row or its newest event was changed outside
                kmsguard.
        """
        row = self.conn.execute(
            "SELECT * FROM events WHERE run_id = ? ORDER BY id DESC LIMIT 1",
            [run.id],
        ).fetchone()
        problem = self._head_problem(run, row)
        if problem:
            raise IntegrityError(
                f"run {run.id} of environment {run.environment!r} failed its "
                f"integrity check: {problem}. Writes to this run are stopped; "
                "run `kmsguard audit verify` to find the changed rows"
            )

    def _head_problem(self, run: Run, row: Any) -> str:
        if row is None:
            return "it has no audit events"
        names = [
            column[0]
            for column in self.conn.execute("SELECT * FROM events LIMIT 0").description
        ]
        event = dict(zip(names, row, strict=True))
        if event_hash(event) != event["hash"]:
            return f"its newest audit event {event['id']} does not match its hash"
        if event["hash"] != run.head_hash:
            return "its stored head hash does not match its newest audit event"
        if event["run_version"] != run.version:
            return f"its version {run.version} is not the one its newest event records"
        if event["to_state"] != run.state:
            return (
                f"its state {run.state!r} is not the state "
                f"{event['to_state']!r} its newest event records"
            )
        return ""

    def verify_chain(self) -> dict[str, Any]:
        """Check every event's hash and link, and every run's head; report the first bad row."""
        previous, count = GENESIS_HASH, 0
        cursor = self.conn.execute("SELECT * FROM events ORDER BY id")
        names = [column[0] for column in cursor.description]
        expected_id = 1
        for values in cursor:
            row = dict(zip(names, values, strict=True))
            problem = self._link_problem(row, previous, expected_id)
            if problem:
                return {
                    "ok": False,
                    "events_checked": count,
                    "bad_event": row["id"],
                    "problem": problem,
                }
            previous, count, expected_id = row["hash"], count + 1, row["id"] + 1
        for run in self.all_runs():
            try:
                self.check_run_head(run)
            except IntegrityError as exc:
                return {
                    "ok": False,
                    "events_checked": count,
                    "bad_run": run.id,
                    "problem": str(exc),
                }
        return {"ok": True, "events_checked": count, "head": previous}

    @staticmethod
    def _link_problem(row: dict[str, Any], previous: str, expected_id: int) -> str:
        if row["id"] != expected_id:
            return f"event {expected_id} is missing (next is {row['id']})"
        if row["prev_hash"] != previous:
            return f"event {row['id']} does not link to the event before it"
        if event_hash(row) != row["hash"]:
            return f"event {row['id']} was changed after it was written"
        return ""

    def all_runs(self) -> list[Run]:
        return [
            self._run_from_row(row) for row in self.db.table("runs").rows_where(order_by="id")
        ]

    def status_rows(
        self, environment: str | None = None
    ) -> list[tuple[Environment, Run | None]]:
        """Return every environment (or one) with its open run, in one query."""
        sql = (
            "SELECT e.name, r.id FROM environments e LEFT JOIN runs r "
            "ON r.environment = e.name AND r.closed_at IS NULL"
        )
        params: list[Any] = []
        if environment is not None:
            sql += " WHERE e.name = ?"
            params.append(environment)
        rows = self.conn.execute(sql + " ORDER BY e.name", params).fetchall()
        result = []
        for name, run_id in rows:
            env = self.get_environment(name)
            assert env is not None
            result.append((env, self.get_run(run_id) if run_id is not None else None))
        return result
