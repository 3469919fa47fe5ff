"""What operators read: whole history messages, plain lists, counts, name hints.

The CLI runs in process with click's CliRunner against a real SQLite file,
and the key checks and policy analysis run on real documents and key facts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import OWN_ACCOUNT, REGION, create_key, snapshot
from test_policy import KEY, PIPE, root_without_sid_narrowed

from kmsguard.cli import main
from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App
from kmsguard.workflow.aws import AwsSession, KeyFacts
from kmsguard.workflow.doctor_keys import Examination, KeyTarget, policy_findings
from kmsguard.workflow.errors import InvalidInput, Refused, unknown_environment
from kmsguard.workflow.keys import KEY_CHECKS, KeyExpectations
from kmsguard.workflow.policy import (
    add_protection,
    analyse_policy,
    narrow_protection,
    render_key_policy,
)

ROTATION = PROCEDURES["rotation"]
KEY_ARN = f"arn:aws:kms:{REGION}:{OWN_ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def invoke(db_path: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--db", str(db_path), *args])


# history


def refused_contact(app: App, kms: Any) -> str:
    """Start a rotation, record a refused step, and return the refusal message."""
    app.start(ROTATION, "prod", {"key": create_key(kms)})
    with pytest.raises(Refused) as refused:
        app.step(ROTATION, "contact_support", "prod", {"ticket": "SUP-1"})
    return str(refused.value)


def test_history_text_shows_every_message_line(
    app: App, kms: Any, db_path: Path
) -> None:
    message = refused_contact(app, kms)

    result = invoke(db_path, "history", "prod")

    lines = result.stdout.splitlines()
    indent = " " * lines[0].index("MESSAGE")
    first, *further = message.splitlines()
    row = next(i for i, line in enumerate(lines) if line.endswith(first))
    assert result.exit_code == 0
    assert len(further) >= 2
    assert lines[row + 1 : row + 1 + len(further)] == [
        indent + line for line in further
    ]


def test_history_json_keeps_whole_message(app: App, kms: Any, db_path: Path) -> None:
    message = refused_contact(app, kms)

    result = invoke(db_path, "--output", "json", "history", "prod")

    messages = [event["message"] for event in json.loads(result.stdout)["events"]]
    assert message in messages


# Lists and booleans in text output


def test_set_resources_text_lists_comma_separated(app: App, db_path: Path) -> None:
    result = invoke(
        db_path,
        "env",
        "set-resources",
        "prod",
        "--s3-bucket",
        "sp-archive",
        "--s3-bucket",
        "sp-enriched",
        "--resource-profile",
        "pipeline-readonly",
    )

    lines = result.stdout.splitlines()
    assert result.exit_code == 0
    assert "s3_buckets: sp-archive, sp-enriched" in lines
    assert "profile: pipeline-readonly" in lines
    assert "[" not in result.stdout


@pytest.mark.parametrize(
    ("multi_region", "status", "reason"),
    [
        (False, "passed", "key is not a multi-Region key"),
        (True, "failed", f"key {KEY_ARN} is a multi-Region key"),
    ],
)
def test_single_region_check_reason_in_words(
    multi_region: bool, status: str, reason: str
) -> None:
    facts = KeyFacts(KEY_ARN, {"MultiRegion": multi_region}, True)

    check = KEY_CHECKS["key_single_region"](facts, KeyExpectations(REGION))

    assert check.status == status
    assert check.reason == reason


def test_single_region_check_unknown_fails() -> None:
    facts = KeyFacts(KEY_ARN, {}, True)

    check = KEY_CHECKS["key_single_region"](facts, KeyExpectations(REGION))

    assert check.status == "failed"
    assert "unknown" in check.reason


def test_narrow_protection_error_lists_actions_plainly() -> None:
    policy = render_key_policy(key_account=KEY, pipeline_account=PIPE)
    protected = add_protection(policy, [f"arn:aws:iam::{KEY}:role/BreakGlass"])

    with pytest.raises(InvalidInput) as invalid:
        narrow_protection(protected, ["kms:Decrypt"])

    message = str(invalid.value)
    assert "invalid protection actions kms:Decrypt:" in message
    assert "kms:DisableKey, kms:ScheduleKeyDeletion" in message
    assert "[" not in message


# Statement numbers


def test_analyse_policy_counts_statements_from_one() -> None:
    findings = analyse_policy(
        root_without_sid_narrowed(), key_account=KEY, pipeline_account=PIPE
    )

    labels = {f.statement for f in findings if f.rule == "key-root-narrowed"}
    assert labels == {"statement 1"}


def check_policy_file(db_path: Path, *options: str) -> Result:
    policy_file = db_path.parent / "policy.json"
    policy_file.write_text(json.dumps(root_without_sid_narrowed()), encoding="utf-8")
    return invoke(
        db_path,
        *options,
        "check",
        "policy",
        "--file",
        str(policy_file),
        "--env",
        "prod",
        "--key-account",
        KEY,
    )


def test_check_policy_text_counts_from_one(app: App, db_path: Path) -> None:
    result = check_policy_file(db_path)

    assert result.exit_code == 3
    assert "statement 1: key-root-narrowed:" in result.stdout
    assert "Statement[0]" not in result.stdout


def test_check_policy_json_counts_from_one(app: App, db_path: Path) -> None:
    result = check_policy_file(db_path, "--output", "json")

    findings = json.loads(result.stdout)["findings"]
    labels = {f["statement"] for f in findings if f["rule"] == "key-root-narrowed"}
    assert labels == {"statement 1"}


def test_doctor_policy_finding_names_statement_once(
    app: App, aws: AwsSession, kms: Any
) -> None:
    key_arn = create_key(kms)
    document = root_without_sid_narrowed()
    document["Statement"][0]["Principal"] = {"AWS": f"arn:aws:iam::{OWN_ACCOUNT}:root"}
    kms.put_key_policy(KeyId=key_arn, PolicyName="default", Policy=json.dumps(document))
    now = datetime.now(UTC)
    exam = Examination(
        aws, app.environment("prod"), "root", now - timedelta(hours=1), now
    )

    findings = policy_findings(exam, KeyTarget(key_arn, "current", "test"))

    messages = {f.details["rule"]: f.message for f in findings}
    assert f"key policy of {key_arn}, statement 1: " in messages["key-root-narrowed"]
    assert "statement statement" not in messages["key-root-narrowed"]
    assert "the policy as a whole: " in messages["pipeline-use-missing"]


# Unknown environment names


def test_unknown_environment_suggests_closest_name() -> None:
    error = unknown_environment("prd", ["prod", "qa1"])

    assert "unknown environment 'prd': did you mean 'prod'?" in str(error)
    assert error.exit_code == 2


def test_unknown_environment_lists_few_names() -> None:
    error = unknown_environment("staging", ["qa1", "prod"])

    assert "the registered environments are prod, qa1" in str(error)
    assert "did you mean" not in str(error)


def test_unknown_environment_counts_many_names() -> None:
    names = [f"qa{number}" for number in range(1, 8)]

    error = unknown_environment("staging", names)

    assert "7 environments are registered" in str(error)
    assert "kmsguard env list" in str(error)
    assert "qa1" not in str(error)


def test_unknown_environment_says_none_registered() -> None:
    error = unknown_environment("prod", [])

    assert "no environment is registered" in str(error)
    assert "kmsguard env add prod --region REGION" in str(error)


def test_app_environment_suggests_registered_name(app: App) -> None:
    with pytest.raises(InvalidInput) as invalid:
        app.environment("prdo")

    assert "did you mean 'prod'?" in str(invalid.value)


def test_engine_environment_suggests_registered_name(app: App) -> None:
    with pytest.raises(InvalidInput) as invalid:
        app.engine.get_environment("prdo")

    assert "did you mean 'prod'?" in str(invalid.value)


def test_cli_unknown_environment_suggests_name(app: App, db_path: Path) -> None:
    before = snapshot(db_path)

    result = invoke(db_path, "history", "prdo")

    assert result.exit_code == 2
    assert "did you mean 'prod'?" in result.stderr
    assert "The only registered environment is prod." in result.stderr
    assert snapshot(db_path) == before
