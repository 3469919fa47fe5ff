"""The audit log is append-only and its hash chain exposes tampering."""

from __future__ import annotations

import json
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


def test_verify_names_deleted_newest_event(app: App, db_path: Path) -> None:
    """The newest event has no later event to link to it; the chain head has."""
    app.add_environment("qa1", "eu-west-1", "210987654321")
    tamper(db_path, "DELETE FROM events WHERE id = 2")

    result = verify_cli(db_path)

    assert result.exit_code == 3
    assert "events 2 to 2 were deleted" in result.stderr


def test_edited_run_key_stops_writes(app: App, kms: Any, db_path: Path) -> None:
    """Pointing the run's old key at the new key would make disable hit the new key."""
    drive_rotation(app, kms, "rotation_confirmed")
    tamper(db_path, "UPDATE runs SET current_key_arn = new_key_arn")

    with pytest.raises(IntegrityError) as stopped:
        app.step(PROCEDURES["rotation"], "disable_old_key", "prod", {})

    assert "row (keys, ticket, state or data) was changed" in str(stopped.value)
    assert "audit verify" in str(stopped.value)
    assert verify_cli(db_path).exit_code == 3


def test_inserted_confirmation_stops_disable(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "support_contacted")
    tamper(
        db_path,
        "INSERT INTO confirmations (run_id, event_id, ticket_id, confirmed_by, "
        "confirmed_at, message, recorded_by, recorded_at) SELECT id, 1, 'SUP-1', "
        "'mallory', updated_at, '', 'mallory', updated_at FROM runs",
    )

    with pytest.raises(IntegrityError) as stopped:
        app.step(PROCEDURES["rotation"], "cancel", "prod", {"reason": "x"})

    assert "confirmation" in str(stopped.value)
    assert "not an applied step of its run" in str(stopped.value)


def test_verify_names_deleted_confirmation(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "rotation_confirmed")
    tamper(db_path, "DELETE FROM confirmations")

    result = verify_cli(db_path)

    assert result.exit_code == 3
    assert "needs a recorded support confirmation" in result.stderr


def test_verify_json_names_first_bad_row(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "rotation_confirmed")
    tamper(db_path, "UPDATE events SET message = 'nothing to see' WHERE id = 4")
    tamper(db_path, "UPDATE events SET message = 'nor here' WHERE id = 6")

    result = CliRunner().invoke(
        main, ["--db", str(db_path), "--output", "json", "audit", "verify"]
    )

    report = json.loads(result.stdout)
    assert result.exit_code == 3
    assert report["ok"] is False
    assert report["bad_event"] == 4
    assert report["events_checked"] == 3


def test_database_from_first_schema_migrated(tmp_path: Path) -> None:
    """An event written before the run digest and chain head still verifies."""
    from sqlite_utils import Database

    from kmsguard.workflow.chain import GENESIS_HASH, event_hash
    from kmsguard.workflow.schema import migrations
    from kmsguard.workflow.store import SqliteStore

    path = tmp_path / "old.db"
    database = Database(path)
    migrations.apply(database, stop_before="0002_run_digest_and_chain_head")
    row: dict[str, Any] = {
        "id": 1,
        "run_id": None,
        "environment": "prod",
        "procedure": None,
        "step": "env_add",
        "outcome": "recorded",
        "from_state": None,
        "to_state": None,
        "run_version": None,
        "operator": "alice",
        "caller_arn": None,
        "message": "environment prod added",
        "evidence": "{}",
        "resolves": None,
        "created_at": "2026-01-05T10:00:00.000000+00:00",
        "prev_hash": GENESIS_HASH,
    }
    row["hash"] = event_hash(row)
    database.table("events").insert(row)
    database.conn.close()

    store = SqliteStore(path)
    report = store.verify_chain()
    head = store.conn.execute("SELECT event_id, hash FROM chain_head").fetchone()
    store.close()

    assert report["ok"] is True
    assert head == (1, row["hash"])


def event_count(db_path: Path) -> int:
    connection = sqlite3.connect(db_path)
    try:
        return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        connection.close()


def test_changed_state_cli_exit_one(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "support_contacted")
    tamper(db_path, "UPDATE runs SET state = 'rotation_confirmed'")
    before = event_count(db_path)

    result = CliRunner().invoke(
        main, ["--db", str(db_path), "rotation", "cancel", "prod", "--reason", "x"]
    )

    after = event_count(db_path)
    assert result.exit_code == 1
    assert "kmsguard audit verify" in result.stderr
    assert after == before
