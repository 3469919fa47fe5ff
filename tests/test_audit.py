"""The audit log is append-only and its hash chain exposes tampering."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import drive_rotation

from kmsguard.cli import main
from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App
from kmsguard.workflow.errors import IntegrityError


def verify_cli(db_path: Path) -> Any:
    return CliRunner().invoke(main, ["--db", str(db_path), "audit", "verify"])


def tamper(db_path: Path, sql: str, *params: Any) -> None:
    connection = sqlite3.connect(db_path)
    # A tamperer can drop the append-only triggers; the chain still shows it.
    connection.execute("DROP TRIGGER IF EXISTS events_append_only_update")
    connection.execute("DROP TRIGGER IF EXISTS events_append_only_delete")
    connection.execute(sql, params)
    connection.commit()
    connection.close()


def test_verify_passes_on_clean_log(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "rotation_confirmed")

    result = verify_cli(db_path)

    assert result.exit_code == 0, result.output
    assert "chain intact" in result.stdout


def test_events_cannot_be_updated(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "started")
    connection = sqlite3.connect(db_path)

    with pytest.raises(sqlite3.IntegrityError):
        connection.execute("UPDATE events SET message = 'x' WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute("DELETE FROM events WHERE id = 1")
    connection.close()


def test_verify_names_edited_row(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "rotation_confirmed")
    tamper(db_path, "UPDATE events SET operator = 'mallory' WHERE id = 3")

    result = verify_cli(db_path)

    assert result.exit_code == 3
    assert "event 3" in result.stderr


def test_verify_names_deleted_row(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "rotation_confirmed")
    tamper(db_path, "DELETE FROM events WHERE id = 2")

    result = verify_cli(db_path)

    assert result.exit_code == 3
    assert "event 2" in result.stderr


def test_verify_names_inserted_row(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "support_contacted")
    tamper(
        db_path,
        "INSERT INTO events (id, run_id, environment, procedure, step, outcome, operator, "
        "created_at, prev_hash, hash) SELECT 1000, run_id, environment, procedure, 'confirm', "
        "'applied', 'mallory', created_at, hash, 'f00d' FROM events ORDER BY id DESC LIMIT 1",
    )

    result = verify_cli(db_path)

    assert result.exit_code == 3
    assert "missing" in result.stderr or "1000" in result.stderr


def test_changed_run_state_stops_writes(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "support_contacted")
    tamper(db_path, "UPDATE runs SET state = 'rotation_confirmed'")

    with pytest.raises(IntegrityError) as stopped:
        app.step(PROCEDURES["rotation"], "disable_old_key", "prod", {})

    assert "audit verify" in str(stopped.value)
    assert verify_cli(db_path).exit_code == 3


def test_unknown_state_stops_writes(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "started")
    tamper(db_path, "UPDATE runs SET state = 'old_key_gone'")

    with pytest.raises(IntegrityError) as stopped:
        app.step(PROCEDURES["rotation"], "cancel", "prod", {"reason": "x"})

    assert "old_key_gone" in str(stopped.value)


def test_every_event_names_operator(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "rotation_confirmed")

    events = app.store.environment_events("prod")

    assert all(event.operator == "alice" for event in events)
    assert all(
        event.caller_arn
        for event in events
        if event.step in ("start", "new_key", "apply_policy")
    )


def test_database_file_is_private(app: App, db_path: Path) -> None:
    assert db_path.stat().st_mode & 0o777 == 0o600
