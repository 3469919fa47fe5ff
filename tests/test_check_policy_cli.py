"""Tests of `kmsguard check policy`: the analysis table through the command line.

The policy documents and their exact findings are the table of
tests/test_policy.py, which tests analyse_policy itself. Here a representative
subset runs through `check policy --file` in process with click's CliRunner
(no AWS call: --key-account is given), and the invalid documents through the
installed command in a subprocess too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import OWN_ACCOUNT, ROTATION_PARAMS, Cli, create_key, drive_rotation
from test_policy import ANALYSIS_CASES, GRAMMAR_CASES, KEY, PIPE, vendor_policy

from kmsguard.cli import main
from kmsguard.workflow.app import App
from kmsguard.workflow.policy import render_key_policy

# One or two cases of each rule family, with and without errors.
CLI_CASE_IDS = (
    "vendor-root-example",
    "vendor-placeholders-left",
    "pipeline-account-one-digit-off",
    "root-statement-removed",
    "root-narrowed-to-describe",
    "grant-without-condition",
    "use-without-decrypt",
    "wildcards-cover-use",
    "star-principal-unpinned",
    "star-principal-pinned-account",
    "deny-decrypt-for-pipeline",
    "deny-with-unknown-condition",
    "vendor-roles-example",
    "roles-form-arnlike",
    "admin-in-foreign-account",
    "duplicate-sid",
    "statement-as-single-object",
)
CLI_CASES = [case for case in ANALYSIS_CASES if case.id in CLI_CASE_IDS]
GRAMMAR_CLI_CASES = GRAMMAR_CASES[:6]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "kmsguard.db"
    result = invoke(
        path, "env", "add", "pipe", "--region", "eu-west-1", "--pipeline-account", PIPE
    )
    assert result.exit_code == 0, result.output
    return path


def invoke(db_path: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--db", str(db_path), "--output", "json", *args])


def check_file(db_path: Path, text: str, *options: str) -> tuple[int, dict[str, Any]]:
    policy_file = db_path.parent / "policy.json"
    policy_file.write_text(text, encoding="utf-8")
    result = invoke(
        db_path,
        "check",
        "policy",
        "--file",
        str(policy_file),
        "--env",
        "pipe",
        "--key-account",
        KEY,
        *options,
    )
    return result.exit_code, json.loads(result.stdout)


def test_cli_subset_is_complete() -> None:
    assert len(CLI_CASES) == len(CLI_CASE_IDS)


@pytest.mark.parametrize(("doc", "form", "expected"), CLI_CASES)
def test_check_policy_file_reports_table_findings(
    db: Path, doc: dict[str, Any], form: str, expected: set[tuple[str, str, str]]
) -> None:
    code, data = check_file(db, json.dumps(doc), "--pipeline-principal", form)

    found = {(f["severity"], f["rule"], f["statement"]) for f in data["findings"]}
    assert found == expected
    assert code == (3 if any(e[0] == "error" for e in expected) else 0)
    assert data["ok"] is (code == 0)


@pytest.mark.parametrize(("doc", "form", "expected"), CLI_CASES)
def test_check_policy_findings_have_category_and_fix(
    db: Path, doc: dict[str, Any], form: str, expected: set[tuple[str, str, str]]
) -> None:
    _, data = check_file(db, json.dumps(doc), "--pipeline-principal", form)

    assert all(f["fix"] and f["category"] != "other" for f in data["findings"])


@pytest.mark.parametrize(("text", "path"), GRAMMAR_CLI_CASES)
def test_check_policy_invalid_document_names_path(
    db: Path, text: str, path: str
) -> None:
    code, data = check_file(db, text)

    assert code == 2
    assert data["path"] == path
    assert path in data["error"]


def test_check_policy_invalid_json_names_line_and_column(db: Path) -> None:
    code, data = check_file(db, '{\n  "Version": "2012-10-17",\n  "Statement": [,]\n}')

    assert code == 2
    assert (data["line"], data["column"]) == (3, 17)
    assert "line 3, column 17" in data["error"]


def test_check_policy_text_output_names_statement_rule_fix(db: Path) -> None:
    policy_file = db.parent / "policy.json"
    policy_file.write_text(json.dumps(vendor_policy(pipe="444455556780")))

    result = CliRunner().invoke(
        main,
        [
            "--db",
            str(db),
            "check",
            "policy",
            "--file",
            str(policy_file),
            "--env",
            "pipe",
            "--key-account",
            KEY,
        ],
    )

    assert result.exit_code == 3
    assert "Allow use of the key: pipeline-account-mismatch:" in result.stdout
    assert "fix: " in result.stdout
    assert "error(s)" in result.stderr


def test_check_policy_missing_file_exits_2(db: Path) -> None:
    result = invoke(
        db, "check", "policy", "--file", str(db.parent / "none.json"), "--env", "pipe"
    )

    assert result.exit_code == 2
    assert "cannot read --file" in json.loads(result.stdout)["error"]


@pytest.mark.parametrize(
    "options",
    [(), ("--key", "alias/x", "--file", "policy.json")],
    ids=["neither", "both"],
)
def test_check_policy_needs_key_or_file(db: Path, options: tuple[str, ...]) -> None:
    result = invoke(db, "check", "policy", "--env", "pipe", *options)

    assert result.exit_code == 2
    assert "exactly one of --key" in json.loads(result.stdout)["error"]


def test_check_policy_bad_key_account_exits_2(db: Path) -> None:
    code, data = check_file(db, json.dumps(vendor_policy()), "--key-account", "123")

    assert code == 2
    assert "'123'" in data["error"]


def test_check_policy_key_with_default_policy(app: App, kms: Any) -> None:
    arn = create_key(kms)

    result = invoke(
        app.settings.db_path, "check", "policy", "--key", arn, "--env", "prod"
    )

    data = json.loads(result.stdout)
    assert result.exit_code == 3
    assert {f["rule"] for f in data["findings"]} == {
        "pipeline-use-missing",
        "pipeline-grant-missing",
    }
    assert data["source"] == arn


def test_check_policy_key_with_rendered_policy(app: App, kms: Any) -> None:
    arn = create_key(kms)
    document = render_key_policy(
        key_account=OWN_ACCOUNT,
        pipeline_account=app.environment("prod").pipeline_account,
    )
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps(document))

    result = invoke(
        app.settings.db_path, "check", "policy", "--key", arn, "--env", "prod"
    )

    assert result.exit_code == 0
    assert json.loads(result.stdout)["findings"] == []


def test_check_policy_key_in_other_region_exits_2(app: App, aws: Any) -> None:
    arn = create_key(aws.client("kms", "us-east-1"))

    result = invoke(
        app.settings.db_path, "check", "policy", "--key", arn, "--env", "prod"
    )

    assert result.exit_code == 2
    assert "us-east-1" in json.loads(result.stdout)["error"]


def test_check_policy_agrees_with_apply_policy(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "policy_applied")
    run = app.store.open_run("prod")
    assert run is not None and run.new_key_arn is not None
    form = ROTATION_PARAMS["apply_policy"]["pipeline_principal"]

    result = invoke(
        app.settings.db_path,
        "check",
        "policy",
        "--key",
        run.new_key_arn,
        "--env",
        "prod",
        "--pipeline-principal",
        form,
    )

    assert result.exit_code == 0


@pytest.mark.e2e
def test_check_policy_subprocess_invalid_path(cli: Cli, tmp_path: Path) -> None:
    text, path = GRAMMAR_CASES[0].values
    policy_file = tmp_path / "bad.json"
    policy_file.write_text(text)
    cli.run("env", "add", "pipe", "--region", "eu-west-1", "--pipeline-account", PIPE)

    data = cli.json(
        "check",
        "policy",
        "--file",
        str(policy_file),
        "--env",
        "pipe",
        "--key-account",
        KEY,
        check=2,
    )

    assert data["path"] == path
    assert data["kind"] == "InvalidPolicyDocument"


@pytest.mark.e2e
def test_check_policy_subprocess_reads_caller_account(cli: Cli, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(vendor_policy(key=OWN_ACCOUNT)))
    cli.run("env", "add", "pipe", "--region", "eu-west-1", "--pipeline-account", PIPE)

    data = cli.json("check", "policy", "--file", str(policy_file), "--env", "pipe")

    assert data["key_account"] == OWN_ACCOUNT
    assert data["findings"] == []
