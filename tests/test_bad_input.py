"""Bad input exits with status 2, names the value and writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import PIPELINE_ACCOUNT, REGION, drive_rotation, snapshot

from kmsguard.cli import main
from kmsguard.workflow.app import App


def invoke(db_path: Path, *args: str) -> Any:
    runner = CliRunner()
    return runner.invoke(main, ["--db", str(db_path), "--operator", "alice", *args])


def prepared_db(db_path: Path) -> None:
    result = invoke(
        db_path,
        "env",
        "add",
        "prod",
        "--region",
        REGION,
        "--pipeline-account",
        PIPELINE_ACCOUNT,
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "value"),
    [
        (
            [
                "env",
                "add",
                "qa1",
                "--region",
                REGION,
                "--pipeline-account",
                "12345678901",
            ],
            "12345678901",
        ),
        (
            [
                "env",
                "add",
                "qa1",
                "--region",
                REGION,
                "--pipeline-account",
                "1234567890123",
            ],
            "1234567890123",
        ),
        (
            [
                "env",
                "add",
                "qa1",
                "--region",
                "Europe",
                "--pipeline-account",
                PIPELINE_ACCOUNT,
            ],
            "Europe",
        ),
        (
            [
                "env",
                "add",
                "Bad Name",
                "--region",
                REGION,
                "--pipeline-account",
                PIPELINE_ACCOUNT,
            ],
            "Bad Name",
        ),
        (
            [
                "env",
                "add",
                "prod",
                "--region",
                REGION,
                "--pipeline-account",
                PIPELINE_ACCOUNT,
            ],
            "prod",
        ),
        (["env", "show", "nowhere"], "nowhere"),
        (["history", "nowhere"], "nowhere"),
        (["status", "nowhere"], "nowhere"),
        (["rotation", "start", "nowhere", "--current-key", "alias/x"], "nowhere"),
        (
            [
                "rotation",
                "start",
                "prod",
                "--current-key",
                "arn:aws:kms:eu-west-1:123:key/x",
            ],
            "arn:aws:kms:eu-west-1:123:key/x",
        ),
        (["rotation", "contact-support", "prod", "--ticket", ""], "--ticket"),
        (["rotation", "contact-support", "prod", "--ticket", "   "], "--ticket"),
        (
            ["rotation", "confirm", "prod", "--ticket", "", "--confirmed-by", "Sam"],
            "--ticket",
        ),
        (
            ["rotation", "confirm", "prod", "--ticket", "SUP-1", "--confirmed-by", ""],
            "--confirmed-by",
        ),
        (
            [
                "rotation",
                "confirm",
                "prod",
                "--ticket",
                "SUP-1",
                "--confirmed-by",
                "S",
                "--confirmed-at",
                "yesterday",
            ],
            "yesterday",
        ),
        (["rotation", "schedule-deletion", "prod", "--window-days", "6", "--yes"], "6"),
        (
            ["rotation", "schedule-deletion", "prod", "--window-days", "31", "--yes"],
            "31",
        ),
        (["rotation", "new-key", "prod"], "--create"),
        (["rotation", "new-key", "prod", "--create", "--key", "alias/x"], "--create"),
        (
            ["rotation", "new-key", "prod", "--create", "--alias", "alias/aws/nope"],
            "alias/aws/nope",
        ),
        (
            [
                "rotation",
                "apply-policy",
                "prod",
                "--admin-role",
                "arn:aws:iam::1:role/x",
            ],
            "arn:aws:iam::1:role/x",
        ),
        (["rotation", "cancel", "prod", "--reason", ""], "--reason"),
        (
            [
                "--region",
                "us-east-1",
                "rotation",
                "start",
                "prod",
                "--current-key",
                "alias/x",
            ],
            "us-east-1",
        ),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    db_path: Path, args: list[str], value: str
) -> None:
    prepared_db(db_path)
    before = snapshot(db_path)

    result = invoke(db_path, *args)

    assert result.exit_code == 2, result.output
    assert value in result.stderr
    assert snapshot(db_path) == before


def test_destructive_step_without_terminal_needs_yes(
    app: App, kms: Any, db_path: Path
) -> None:
    drive_rotation(app, kms, "rotation_confirmed")
    before = snapshot(db_path)

    result = invoke(db_path, "rotation", "disable-old-key", "prod")

    assert result.exit_code == 2, result.output
    assert "--yes" in result.stderr
    assert snapshot(db_path) == before


def test_out_of_order_destructive_step_refused_before_yes(db_path: Path) -> None:
    """Without a run to disable, the refusal comes first, not a request for --yes."""
    prepared_db(db_path)

    result = invoke(db_path, "rotation", "disable-old-key", "prod")

    assert result.exit_code == 3, result.output
    assert "--yes" not in result.stderr


def test_bad_ticket_on_open_run_writes_nothing(
    app: App, kms: Any, db_path: Path
) -> None:
    drive_rotation(app, kms, "policy_applied")
    before = snapshot(db_path)

    result = invoke(db_path, "rotation", "contact-support", "prod", "--ticket", "")

    assert result.exit_code == 2
    assert snapshot(db_path) == before


def test_json_error_has_error_field(db_path: Path) -> None:
    import json

    prepared_db(db_path)

    result = invoke(db_path, "--output", "json", "env", "show", "nowhere")

    assert result.exit_code == 2
    assert "nowhere" in json.loads(result.stdout)["error"]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--ticket", "SUP-1\x1b[2J"),
        ("--confirmed-by", "Jane\x1b[31m Doe"),
    ],
    ids=["ticket", "confirmed-by"],
)
def test_control_characters_rejected_and_nothing_written(
    app: App, kms: Any, db_path: Path, option: str, value: str
) -> None:
    drive_rotation(app, kms, "support_contacted")
    before = snapshot(db_path)
    args = {"--ticket": "SUP-1", "--confirmed-by": "Jane", option: value}

    result = invoke(
        db_path,
        "rotation",
        "confirm",
        "prod",
        *(text for pair in args.items() for text in pair),
    )

    assert result.exit_code == 2, result.output
    assert "control characters" in result.stderr
    assert snapshot(db_path) == before


def test_operator_with_escape_sequence_rejected(db_path: Path) -> None:
    prepared_db(db_path)
    before = snapshot(db_path)

    result = CliRunner().invoke(
        main,
        ["--db", str(db_path), "--operator", "mallory\x1b[2J", "env", "list"],
    )

    assert result.exit_code == 2
    assert "control characters" in result.stderr
    assert snapshot(db_path) == before


def test_memory_database_rejected(tmp_path: Path) -> None:
    add = ["env", "add", "qa1", "--region", REGION, "--pipeline-account"]
    result = CliRunner().invoke(main, ["--db", ":memory:", *add, PIPELINE_ACCOUNT])

    assert result.exit_code == 2
    assert "':memory:' is not a file" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("status", "prod"),
        ("history", "prod"),
        ("audit", "verify"),
        ("env", "list"),
        ("env", "show", "prod"),
    ],
    ids=" ".join,
)
def test_reading_missing_database_creates_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    path = tmp_path / "mistyped.db"

    result = CliRunner().invoke(main, ["--db", str(path), *args])

    assert result.exit_code == 2, result.output
    assert f"no kmsguard database at '{path}'" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ("rotation", "cancel", "prod", "--reason", "done\x1b]0;title\x07"),
        ("rotation", "cancel", "prod", "--reason", "done \u202eevil"),
        ("env", "set-resources", "prod", "--sqs-queue", "https://q\n\x1b[2J"),
        ("unprotect", "prod", "--reason", "moving\x1b[2J"),
    ],
    ids=["reason-title", "reason-bidi", "sqs-queue", "unprotect-reason"],
)
def test_free_text_control_characters_rejected(
    app: App, kms: Any, db_path: Path, args: tuple[str, ...]
) -> None:
    drive_rotation(app, kms, "support_contacted")
    before = snapshot(db_path)

    result = invoke(db_path, *args)

    assert result.exit_code == 2, result.output
    assert "control characters" in result.stderr
    assert snapshot(db_path) == before


def test_empty_database_option_rejected(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--db=", "status"])

    assert result.exit_code == 2
    assert "the database path is empty" in result.stderr


def test_database_directory_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--db", str(tmp_path), "env", "list"])

    assert result.exit_code == 2
    assert f"database path '{tmp_path}' is a directory" in result.stderr


def test_windows_line_endings_and_direction_marks_accepted(
    app: App, kms: Any, db_path: Path
) -> None:
    drive_rotation(app, kms, "support_contacted")

    result = invoke(
        db_path,
        "rotation",
        "confirm",
        "prod",
        "--ticket",
        "SUP-1\r",
        "--confirmed-by",
        "\u05de\u05e9\u05d4 \u05db\u05d4\u05df\r",
        "--message",
        "switched\r\nto the new key\u200f",
    )

    assert result.exit_code == 0, result.output
