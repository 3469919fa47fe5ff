"""The store's record reads: environments, runs, events, confirmations, backups.

Reads use the sqlite3 connection directly, never sqlite-utils, so that the
commands that only read stay quick to start.
"""

from __future__ import annotations

import json
from typing import Any

from kmsguard.workflow.chain import CONFIRMATION_FIELDS, confirmation_problem
from kmsguard.workflow.errors import IntegrityError, InvalidInput
from kmsguard.workflow.records import Confirmation, Environment, Event, Run
from kmsguard.workflow.store_connection import SqliteConnection


class StoreReads(SqliteConnection):
    """The read queries of the store, as records or as rows as stored."""

    # Environments

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

    def all_runs(self) -> list[Run]:
        return [
            self._run_from_row(row)
            for row in self._rows("SELECT * FROM runs ORDER BY id")
        ]

    def _one_run(self, where: str, params: list[Any]) -> Run | None:
        rows = self._rows(f"SELECT * FROM runs WHERE {where} LIMIT 1", params)
        return self._run_from_row(rows[0]) if rows else None

    @staticmethod
    def _run_from_row(row: dict[str, Any]) -> Run:
        row = dict(row)
        row["data"] = json.loads(row["data"])
        return Run(**row)

    # Events

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

    # Confirmations and policy backups

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

    def policy_backups(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM policy_backups WHERE run_id = ? ORDER BY id", [run_id]
        )

    # Rows as stored, which the hash chain covers

    def _raw_run(self, run_id: int) -> dict[str, Any]:
        """Return a run row as stored, with `data` as JSON text."""
        cursor = self.conn.execute("SELECT * FROM runs WHERE id = ?", [run_id])
        values = cursor.fetchone()
        if values is None:
            raise InvalidInput(f"run {run_id} not found")
        return dict(zip([c[0] for c in cursor.description], values, strict=True))

    def _raw_event(self, event_id: int) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM events WHERE id = ?", [event_id])
        return rows[0] if rows else None

    def _newest_run_event(self, run_id: int) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT * FROM events WHERE run_id = ? ORDER BY id DESC LIMIT 1", [run_id]
        )
        return rows[0] if rows else None
