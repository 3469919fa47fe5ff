"""`kmsguard audit export`: every event of an environment, hashes included."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from conftest import PIPELINE_ACCOUNT, REGION, drive_rotation

from kmsguard.cli import main
from kmsguard.workflow.app import App
from kmsguard.workflow.audit_export import EXPORT_FIELDS
from kmsguard.workflow.chain import event_hash
from kmsguard.workflow.records import dumps


def export(db_path: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--db", str(db_path), *args])


def test_jsonl_hashes_recompute(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "rotation_confirmed")

    result = export(db_path, "audit", "export", "prod", "--format", "jsonl")

    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0, result.output
    assert len(events) == len(app.store.environment_events("prod"))
    for event in events:
        stored = dict(event, evidence=dumps(event["evidence"]))
        assert event_hash(stored) == event["hash"]
    assert [e["prev_hash"] for e in events[1:]] == [e["hash"] for e in events[:-1]]


def test_csv_has_every_field(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "support_contacted")

    result = export(db_path, "audit", "export", "prod", "--format", "csv")

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert result.exit_code == 0, result.output
    assert tuple(rows[0]) == EXPORT_FIELDS
    assert len(rows) == len(app.store.environment_events("prod"))
    assert json.loads(rows[-1]["evidence"])["ticket"] == "SUP-1"


def test_markdown_report_for_reviewer(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "rotation_confirmed")
    events = app.store.environment_events("prod")

    result = export(db_path, "audit", "export", "prod", "--format", "markdown")

    text = result.stdout
    assert result.exit_code == 0, result.output
    assert text.startswith("# kmsguard audit report: environment prod")
    assert "Whole-chain check (`kmsguard audit verify`): passed" in text
    assert "| SUP-1 | Sam (vendor support) |" in text
    assert "switch done" in text
    assert all(event.hash in text for event in events)
    assert "## Evidence" in text


def test_export_only_named_environment(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "started")
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)

    result = export(db_path, "audit", "export", "qa1", "--format", "jsonl")

    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["environment"] for e in events] == ["qa1"]


def test_export_to_file_prints_summary(
    app: App, kms: Any, db_path: Path, tmp_path: Path
) -> None:
    drive_rotation(app, kms, "started")
    target = tmp_path / "report.md"

    result = export(
        db_path,
        "--output",
        "json",
        "audit",
        "export",
        "prod",
        "--output-file",
        str(target),
    )

    summary = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert summary["output_file"] == str(target)
    assert summary["events"] == len(app.store.environment_events("prod"))
    assert summary["chain"]["ok"] is True
    assert target.read_text().startswith("# kmsguard audit report")


def test_export_unknown_environment_exit_two(app: App, db_path: Path) -> None:
    result = export(db_path, "audit", "export", "staging")

    assert result.exit_code == 2
    assert "unknown environment 'staging'" in result.stderr


def test_export_of_tampered_log_says_failed(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "support_contacted")
    connection = sqlite3.connect(db_path)
    connection.execute("DROP TRIGGER events_append_only_update")
    connection.execute("UPDATE events SET operator = 'mallory' WHERE id = 2")
    connection.commit()
    connection.close()

    result = export(db_path, "audit", "export", "prod")

    assert result.exit_code == 0
    assert "FAILED: event 2 does not match its hash" in result.stdout
    assert "warning: the audit chain failed its check" in result.stderr
