"""The SQLite store: environments, runs and the hash-chained audit log.

Every write that touches a run happens inside one `BEGIN IMMEDIATE`
transaction, so the compare-and-set on the run's version and the audit event
commit together or not at all, and two processes never both win a step.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.chain import (
    CONFIRMATION_FIELDS,
    GENESIS_HASH,
    confirmation_problem,
    event_hash,
    head_problem,
    link_problem,
    run_digest,
    tail_problem,
)
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
from kmsguard.workflow.schema_names import (
    BUSY_TIMEOUT_SECONDS,
    BUSY_TIMEOUT_VARIABLE,
    MIGRATION_NAMES,
    MIGRATION_SET,
)

if TYPE_CHECKING:
    from sqlite_utils import Database

log = logging.getLogger(__name__)

RUN_COLUMNS = (
    "current_key_arn",
    "new_key_arn",
    "ticket_id",
    "contacted_at",
)


def busy_timeout() -> float:
    """Return the lock wait in seconds: KMSGUARD_BUSY_TIMEOUT, else the default.

    Raises:
        InvalidInput: the variable is not a number of seconds from 0 to 3600.
    """
    text = os.environ.get(BUSY_TIMEOUT_VARIABLE, "").strip()
    if not text:
        return BUSY_TIMEOUT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise InvalidInput(
            f"invalid {BUSY_TIMEOUT_VARIABLE}={text!r}: give the seconds to wait "
            "for another kmsguard process, from 0 to 3600 (default 10)"
        )
    return seconds


def create_private_file(path: Path) -> None:
    """Create the database file with mode 0600 before SQLite opens it.

    SQLite gives the -wal and -shm files it creates the database file's mode.
    An existing file keeps its mode; a mode open to group or others is logged.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        descriptor = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(descriptor)
        return
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning(
            "database %s has mode %o, readable by other users; run `chmod 600 %s`",
            path,
            mode,
            path,
        )


class SqliteStore:
    """Runs, events and confirmations in one local SQLite file."""

    def __init__(self, path: str | Path, timeout: float | None = None) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InvalidInput(
                f"database path {str(self.path)!r} is a directory: give a file "
                "path with --db or KMSGUARD_DB"
            )
        self._db: Database | None = None
        try:
            create_private_file(self.path)
            self.conn = sqlite3.connect(
                str(self.path),
                timeout=busy_timeout() if timeout is None else timeout,
                isolation_level=None,
            )
            self._configure()
        except (OSError, sqlite3.DatabaseError) as exc:
            # For example a parent path that is a file, or a file that is not SQLite.
            raise InvalidInput(
                f"cannot open database {str(self.path)!r}: {exc}; give the path "
                "of a kmsguard SQLite file in a writable directory with --db or "
                "KMSGUARD_DB"
            ) from exc

    @property
    def db(self) -> Database:
        """The sqlite-utils view of the connection, for writes and migrations.

        Reads use the sqlite3 connection directly, so that commands that only
        read (status, history) never import sqlite-utils, which costs more
        start-up time than all of their queries.
        """
        if self._db is None:
            from sqlite_utils import Database

            self._db = Database(self.conn)
        return self._db

    def _configure(self) -> None:
        with self._translate_lock_errors("opening the database"):
            self.conn.execute("PRAGMA foreign_keys=ON")
            mode = self.conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            if self._needs_migration():
                from kmsguard.workflow.schema import apply_migrations

                with self.immediate():
                    apply_migrations(self.db)

    def _needs_migration(self) -> bool:
        """Whether a migration is not applied yet, read with one plain query."""
        try:
            rows = self.conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = ?",
                [MIGRATION_SET],
            ).fetchall()
        except sqlite3.OperationalError:
            # A new database: the migrations table does not exist yet.
            return True
        return not set(MIGRATION_NAMES) <= {str(name) for (name,) in rows}

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

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Run the block's reads in one read transaction: one consistent view."""
        if self.conn.in_transaction:
            yield
            return
        with self._translate_lock_errors("reading"):
            self.conn.execute("BEGIN")
        try:
            yield
        finally:
            if self.conn.in_transaction:
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
        rows = self._rows("SELECT * FROM environments WHERE name = ?", [name])
        if not rows:
            return None
        row = rows[0]
        row["resources"] = json.loads(row["resources"])
        return Environment(**row)

    def list_environments(self) -> list[Environment]:
        rows = self._rows("SELECT * FROM environments ORDER BY name")
        for row in rows:
            row["resources"] = json.loads(row["resources"])
        return [Environment(**row) for row in rows]

    # Runs

    def open_run(self, environment: str) -> Run | None:
        return self._one_run("environment = ? AND closed_at IS NULL", [environment])

    def get_run(self, run_id: int) -> Run:
        run = self._one_run("id = ?", [run_id])
        if run is None:
            raise InvalidInput(f"run {run_id} not found")
        return run

    def runs(self, environment: str) -> list[Run]:
        rows = self._rows(
            "SELECT * FROM runs WHERE environment = ? ORDER BY id", [environment]
        )
        return [self._run_from_row(row) for row in rows]

    def latest_completed_run(self, environment: str) -> Run | None:
        """Return the environment's newest completed run, reading no older one."""
        return self._newest_run(
            "environment = ? AND state = 'completed'", [environment]
        )

    def _newest_run(self, where: str, params: list[Any]) -> Run | None:
        rows = self._rows(
            f"SELECT * FROM runs WHERE {where} ORDER BY id DESC LIMIT 1", params
        )
        return self._run_from_row(rows[0]) if rows else None

    def pending_intent_runs(self, environment: str) -> list[Run]:
        """Return the environment's runs, open or closed, with an unresolved intent."""
        rows = self._rows(
            "SELECT * FROM runs WHERE environment = ? "
            "AND pending_intent_id IS NOT NULL ORDER BY id",
            [environment],
        )
        return [self._run_from_row(row) for row in rows]

    def open_runs(self) -> list[Run]:
        rows = self._rows(
            "SELECT * FROM runs WHERE closed_at IS NULL ORDER BY environment"
        )
        return [self._run_from_row(row) for row in rows]

    def _one_run(self, where: str, params: list[Any]) -> Run | None:
        rows = self._rows(f"SELECT * FROM runs WHERE {where} LIMIT 1", params)
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

    def _raw_run(self, run_id: int) -> dict[str, Any]:
        """Return a run row as stored, with `data` as JSON text."""
        cursor = self.conn.execute("SELECT * FROM runs WHERE id = ?", [run_id])
        values = cursor.fetchone()
        if values is None:
            raise InvalidInput(f"run {run_id} not found")
        return dict(zip([c[0] for c in cursor.description], values, strict=True))

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

    @staticmethod
    def _event_from_row(row: dict[str, Any]) -> Event:
        row = dict(row)
        row["evidence"] = json.loads(row["evidence"])
        return Event(**row)

    def run_events(self, run_id: int) -> list[Event]:
        rows = self._rows("SELECT * FROM events WHERE run_id = ? ORDER BY id", [run_id])
        return [self._event_from_row(row) for row in rows]

    def environment_events(self, environment: str) -> list[Event]:
        rows = self._rows(
            "SELECT * FROM events WHERE environment = ? ORDER BY id", [environment]
        )
        return [self._event_from_row(row) for row in rows]

    def get_event(self, event_id: int) -> Event | None:
        rows = self._rows("SELECT * FROM events WHERE id = ?", [event_id])
        return self._event_from_row(rows[0]) if rows else None

    def confirmations(self, run_id: int) -> list[Confirmation]:
        """Return the run's confirmations, each checked against its audit event.

        The disable guards trust these rows, so a row that no event of the run
        backs (inserted or edited with a SQLite tool) stops the step.

        Raises:
            IntegrityError: a confirmation row does not match its event.
        """
        rows = self._rows(
            "SELECT * FROM confirmations WHERE run_id = ? ORDER BY id", [run_id]
        )
        for row in rows:
            problem = confirmation_problem(row, self._raw_event(row["event_id"]))
            if problem:
                raise IntegrityError(
                    f"run {run_id} failed its integrity check: {problem}. Writes "
                    "to this run are stopped; run `kmsguard audit verify`"
                )
        return [
            Confirmation(*(row[name] for name in CONFIRMATION_FIELDS)) for row in rows
        ]

    def confirmation_events_without_rows(self) -> list[int]:
        """Return the ids of applied events whose confirmation row is missing."""
        rows = self.conn.execute(
            "SELECT e.id FROM events e WHERE e.outcome = 'applied' "
            "AND json_extract(e.evidence, '$.confirmation') IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM confirmations c WHERE c.event_id = e.id) "
            "ORDER BY e.id"
        ).fetchall()
        return [int(row[0]) for row in rows]

    def policy_backups(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM policy_backups WHERE run_id = ? ORDER BY id", [run_id]
        )

    # Integrity

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, params or [])
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor]

    def _raw_event(self, event_id: int) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM events WHERE id = ?", [event_id])
        return rows[0] if rows else None

    def _newest_run_event(self, run_id: int) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT * FROM events WHERE run_id = ? ORDER BY id DESC LIMIT 1", [run_id]
        )
        return rows[0] if rows else None

    def check_run_head(self, run: Run) -> None:
        """Check the run row against its newest event: hash, version, state, digest.

        Only the run's own head is read, so loading a run stays fast; `audit
        verify` walks the whole chain. Row and event are read in one snapshot,
        so a step another process commits meanwhile is not mistaken for an edit.

        Raises:
            IntegrityError: the run row or its newest event was changed outside
                kmsguard.
        """
        with self.snapshot():
            row = self._raw_run(run.id)
            problem = head_problem(row, self._newest_run_event(run.id))
        if problem:
            raise IntegrityError(
                f"run {run.id} of environment {run.environment!r} failed its "
                f"integrity check: {problem}. Writes to this run are stopped; "
                "run `kmsguard audit verify` to find the changed rows"
            )

    def verify_chain(self) -> dict[str, Any]:
        """Check every event's hash and link, the chain head and every run's head.

        Returns a report with `ok` and `events_checked`; when a check fails,
        also the first bad row (`bad_event` or `bad_run`) and the `problem`.
        """
        with self.snapshot():
            count, last, problem = self._walk_chain()
            if problem:
                return {"ok": False, "events_checked": count, **problem}
            for row in self._rows("SELECT * FROM runs ORDER BY id"):
                found = head_problem(row, self._newest_run_event(row["id"]))
                if found:
                    return {
                        "ok": False,
                        "events_checked": count,
                        "bad_run": row["id"],
                        "problem": f"run {row['id']} of environment "
                        f"{row['environment']!r}: {found}",
                    }
        return {"ok": True, "events_checked": count, "head": last}

    def _walk_chain(self) -> tuple[int, str, dict[str, Any]]:
        previous: dict[str, Any] | None = None
        count = 0
        for row in self._rows("SELECT * FROM events ORDER BY id"):
            problem = link_problem(row, previous)
            if problem:
                return count, "", {"bad_event": row["id"], "problem": problem}
            previous, count = row, count + 1
        heads = self._rows("SELECT event_id, hash FROM chain_head WHERE id = 1")
        head = heads[0] if heads else None
        problem = tail_problem(previous, head)
        if problem:
            bad = head["event_id"] if head else (previous or {}).get("id")
            return count, "", {"bad_event": bad, "problem": problem}
        return count, previous["hash"] if previous else GENESIS_HASH, {}

    def all_runs(self) -> list[Run]:
        return [
            self._run_from_row(row)
            for row in self._rows("SELECT * FROM runs ORDER BY id")
        ]
