"""CLI polish: usage errors in JSON, --endpoint-url checks, recovery wording, hints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import PIPELINE_ACCOUNT, REGION, Cli, drive_rotation

from kmsguard.cli import main
from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App, Settings
from kmsguard.workflow.aws import AwsSession
from kmsguard.workflow.errors import Aborted, InvalidInput, Refused
from kmsguard.workflow.recovery import CANCEL_DELETION, RE_ENABLE, recover

USAGE_ERRORS = [
    (("rotation", "start", "prod"), "--current-key"),
    (("bogus",), "bogus"),
    (("diagram", "rotatoin"), "rotatoin"),
    (("rotation",), "Missing command"),
]


@pytest.mark.parametrize(("arguments", "named"), USAGE_ERRORS)
def test_usage_error_json_on_stdout(
    cli: Cli, arguments: tuple[str, ...], named: str
) -> None:
    result = cli.run("--output", "json", *arguments)

    data = json.loads(result.stdout)
    assert result.returncode == 2
    assert data["kind"] == "InvalidInput"
    assert named in data["error"]


def test_usage_error_json_from_environment_variable(cli: Cli) -> None:
    cli.extra_env["KMSGUARD_OUTPUT"] = "json"

    result = cli.run("--no-such-option")

    data = json.loads(result.stdout)
    assert result.returncode == 2
    assert "--no-such-option" in data["error"]


def test_usage_error_text_mode_unchanged(cli: Cli) -> None:
    result = cli.run("bogus")

    assert result.returncode == 2
    assert result.stdout == ""
    assert "No such command 'bogus'" in result.stderr


@pytest.mark.parametrize("url", ["notaurl", "ftp://x", "http://", "http://h:99999"])
def test_endpoint_url_invalid_exits_2(cli: Cli, url: str) -> None:
    result = cli.run(
        "--output", "json", "--endpoint-url", url, "check", "key", "alias/x"
    )

    data = json.loads(result.stdout)
    assert result.returncode == 2
    assert data["kind"] == "InvalidInput"
    assert repr(url) in data["error"]
    assert "Traceback" not in result.stderr


def test_endpoint_url_invalid_text_names_value(cli: Cli) -> None:
    result = cli.run("--endpoint-url", "notaurl", "check", "key", "alias/x")

    assert result.returncode == 2
    assert "'notaurl'" in result.stderr
    assert "Traceback" not in result.stderr


def test_region_mismatch_names_kmsguard_region(aws: AwsSession, db_path: Path) -> None:
    other = App(Settings(db_path=db_path, operator="alice", region="ap-south-1"), aws)
    other.add_environment("prod", REGION, PIPELINE_ACCOUNT)

    with pytest.raises(InvalidInput) as raised:
        other.check_region("prod")
    other.close()

    assert "drop --region or KMSGUARD_REGION" in str(raised.value)
    assert "AWS_REGION" not in str(raised.value).replace("KMSGUARD_REGION", "")


def test_step_hints_never_include_yes() -> None:
    for procedure in PROCEDURES.values():
        for step in (procedure.start, *procedure.steps):
            assert "--yes" not in procedure.command_for(step, "prod"), step.name


def test_recover_refusal_names_recover_group(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "old_key_deletion_scheduled")

    with pytest.raises(Refused) as raised:
        recover(app, RE_ENABLE, "prod", {})

    assert str(raised.value).startswith("recover re-enable refused")


def test_recover_not_confirmed_names_recover_group(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "old_key_deletion_scheduled")

    with pytest.raises(Aborted) as raised:
        recover(app, CANCEL_DELETION, "prod", {}, lambda ctx: False)

    assert str(raised.value).startswith("recover cancel-deletion for 'prod'")


def test_cancel_deletion_next_is_re_enable(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "old_key_deletion_scheduled")

    result = recover(app, CANCEL_DELETION, "prod", {})

    assert result.next_commands == ["kmsguard recover re-enable prod"]


def test_re_enable_next_moves_procedure_on(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "old_key_disabled")

    result = recover(app, RE_ENABLE, "prod", {})

    assert result.next_commands == [
        "kmsguard rotation confirm prod --ticket SUP-1 --confirmed-by NAME"
    ]


@pytest.mark.parametrize("value", ["JSON", "Json"])
def test_output_option_any_case(tmp_path: Path, value: str) -> None:
    db_path = tmp_path / "k.db"
    add = ["env", "add", "prod", "--region", "eu-west-1", "--pipeline-account"]
    CliRunner().invoke(main, ["--db", str(db_path), *add, "210987654321"])

    result = CliRunner().invoke(
        main, ["--db", str(db_path), "--output", value, "status"]
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["environments"][0]["environment"] == "prod"
