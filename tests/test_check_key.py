"""Tests of `kmsguard check key` against moto keys, one per failing property.

The command runs in process with click's CliRunner inside mock_aws. moto
cannot make an AWS managed key or a key of another account readable, so
in those two cases botocore's Stubber returns DescribeKey, and the tests call
the library function the command calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from click.testing import CliRunner
from conftest import OWN_ACCOUNT, REGION, create_key, drive_rotation, snapshot

from kmsguard.cli import main
from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App
from kmsguard.workflow.aws import AwsSession
from kmsguard.workflow.errors import Refused
from kmsguard.workflow.key_report import check_key_in_environment
from kmsguard.workflow.keys import ALL_KEY_CHECKS

ROTATION = PROCEDURES["rotation"]
FOREIGN_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"


def check_key(db_path: Path, key: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        main,
        [
            "--db",
            str(db_path),
            "--output",
            "json",
            "check",
            "key",
            key,
            "--env",
            "prod",
        ],
    )
    return result.exit_code, json.loads(result.stdout)


def statuses(data: dict[str, Any]) -> dict[str, str]:
    return {check["check"]: check["status"] for check in data["checks"]}


def failed(data: dict[str, Any]) -> set[str]:
    return {name for name, status in statuses(data).items() if status == "failed"}


def good_key(kms: Any, aws: AwsSession) -> str:
    arn = create_key(kms)
    kms.enable_key_rotation(KeyId=arn)
    return arn


def asymmetric_key(kms: Any, aws: AwsSession) -> str:
    return create_key(kms, KeySpec="RSA_2048")


def hmac_key(kms: Any, aws: AwsSession) -> str:
    return create_key(kms, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")


def external_key(kms: Any, aws: AwsSession) -> str:
    return create_key(kms, Origin="EXTERNAL")


def multi_region_key(kms: Any, aws: AwsSession) -> str:
    return create_key(kms, MultiRegion=True)


def other_region_key(kms: Any, aws: AwsSession) -> str:
    return create_key(aws.client("kms", "us-east-1"))


def disabled_key(kms: Any, aws: AwsSession) -> str:
    arn = good_key(kms, aws)
    kms.disable_key(KeyId=arn.split("/")[-1])
    return arn


def pending_deletion_key(kms: Any, aws: AwsSession) -> str:
    arn = good_key(kms, aws)
    kms.schedule_key_deletion(KeyId=arn.split("/")[-1], PendingWindowInDays=7)
    return arn


MakeKey = Callable[[Any, AwsSession], str]

# Each moto key, and exactly the checks it fails.
FAILING_KEYS: list[Any] = [
    pytest.param(asymmetric_key, {"key_spec"}, id="key_spec"),
    pytest.param(hmac_key, {"key_spec", "key_usage"}, id="key_usage"),
    pytest.param(external_key, {"key_origin"}, id="key_origin"),
    pytest.param(multi_region_key, {"key_single_region"}, id="key_single_region"),
    pytest.param(
        other_region_key,
        # A key in another region is not read, as in the step guards, so every
        # property but the region is unknown.
        set(ALL_KEY_CHECKS) - {"key_rotation", "key_owner"},
        id="key_region",
    ),
    pytest.param(disabled_key, {"key_enabled"}, id="key_enabled"),
    pytest.param(
        pending_deletion_key,
        {"key_enabled", "key_deletion_not_pending"},
        id="key_deletion_not_pending",
    ),
]


@pytest.mark.parametrize(("make_key", "expected"), FAILING_KEYS)
def test_check_key_fails_property(
    app: App, kms: Any, aws: AwsSession, make_key: MakeKey, expected: set[str]
) -> None:
    arn = make_key(kms, aws)

    code, data = check_key(app.settings.db_path, arn)

    assert code == 3
    assert failed(data) == expected
    assert data["ok"] is False
    assert "fails" in data["error"]


@pytest.mark.parametrize(("make_key", "expected"), FAILING_KEYS)
def test_check_key_failures_have_fix(
    app: App, kms: Any, aws: AwsSession, make_key: MakeKey, expected: set[str]
) -> None:
    arn = make_key(kms, aws)

    _, data = check_key(app.settings.db_path, arn)

    assert all(c["fix"] for c in data["checks"] if c["status"] != "passed")


def test_check_key_good_key_passes(app: App, kms: Any, aws: AwsSession) -> None:
    arn = good_key(kms, aws)

    code, data = check_key(app.settings.db_path, arn)

    assert code == 0
    assert set(statuses(data).values()) == {"passed"}
    assert list(statuses(data)) == list(ALL_KEY_CHECKS)


def test_check_key_rotation_off_is_warning(app: App, kms: Any) -> None:
    arn = create_key(kms)

    code, data = check_key(app.settings.db_path, arn)

    assert code == 0
    assert statuses(data)["key_rotation"] == "warning"
    assert failed(data) == set()


def test_check_key_asymmetric_rotation_unknown(app: App, kms: Any) -> None:
    arn = create_key(kms, KeySpec="RSA_2048")

    _, data = check_key(app.settings.db_path, arn)

    rotation = next(c for c in data["checks"] if c["check"] == "key_rotation")
    assert rotation["status"] == "warning"
    assert "unknown" in rotation["reason"]


def test_check_key_resolves_alias(app: App, kms: Any, aws: AwsSession) -> None:
    arn = good_key(kms, aws)
    kms.create_alias(AliasName="alias/pipeline", TargetKeyId=arn.split("/")[-1])

    code, data = check_key(app.settings.db_path, "alias/pipeline")

    assert code == 0
    assert data["key_arn"] == arn


def test_check_key_text_output(app: App, kms: Any) -> None:
    arn = disabled_key(kms, app.aws())

    result = CliRunner().invoke(
        main,
        ["--db", str(app.settings.db_path), "check", "key", arn, "--env", "prod"],
    )

    assert result.exit_code == 3
    assert f"FAILED   key_enabled: key {arn} is Disabled" in result.stdout
    assert "fix: enable the key first" in result.stdout
    assert "key_enabled" in result.stderr


@pytest.mark.parametrize(
    "key",
    ["not-a-key", f"arn:aws:kms:{REGION}:{OWN_ACCOUNT}:key/{FOREIGN_ID}"],
    ids=["malformed", "unknown"],
)
def test_check_key_bad_input_exits_2(app: App, key: str) -> None:
    before = snapshot(app.settings.db_path)

    code, data = check_key(app.settings.db_path, key)

    assert code == 2
    assert key in data["error"]
    assert snapshot(app.settings.db_path) == before


def test_check_key_unknown_environment(app: App, kms: Any) -> None:
    arn = create_key(kms)

    result = CliRunner().invoke(
        main,
        ["--db", str(app.settings.db_path), "check", "key", arn, "--env", "qa9"],
    )

    assert result.exit_code == 2
    assert "unknown environment 'qa9'" in result.stderr


def foreign_metadata(**changes: Any) -> dict[str, Any]:
    account = changes.pop("account", OWN_ACCOUNT)
    arn = f"arn:aws:kms:{REGION}:{account}:key/{FOREIGN_ID}"
    metadata = {
        "KeyId": FOREIGN_ID,
        "Arn": arn,
        "AWSAccountId": account,
        "KeyState": "Enabled",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "KeyUsage": "ENCRYPT_DECRYPT",
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "MultiRegion": False,
    }
    metadata.update(changes)
    return metadata


def stubbed_check(app: App, kms: Any, metadata: dict[str, Any]) -> set[str]:
    arn = metadata["Arn"]
    with Stubber(kms) as stubber:
        stubber.add_response("describe_key", {"KeyMetadata": metadata}, {"KeyId": arn})
        if metadata["KeyManager"] == "CUSTOMER":
            stubber.add_response(
                "get_key_rotation_status", {"KeyRotationEnabled": True}, {"KeyId": arn}
            )
        report = check_key_in_environment(app.aws(), app.environment("prod"), arn)
    return {check.name for check in report.failed}


def test_check_key_aws_managed_fails(app: App, kms: Any) -> None:
    """moto reports every key as customer managed, so Stubber returns DescribeKey."""
    failures = stubbed_check(app, kms, foreign_metadata(KeyManager="AWS"))

    assert failures == {"key_customer_managed"}


def test_check_key_other_account_fails(app: App, kms: Any) -> None:
    """moto cannot describe another account's key, so Stubber returns DescribeKey."""
    failures = stubbed_check(app, kms, foreign_metadata(account="999988887777"))

    assert failures == {"key_owner"}


@pytest.mark.parametrize(("make_key", "expected"), FAILING_KEYS)
def test_check_key_agrees_with_new_key_guards(
    app: App, kms: Any, aws: AwsSession, make_key: MakeKey, expected: set[str]
) -> None:
    drive_rotation(app, kms, "started")
    arn = make_key(kms, aws)
    _, data = check_key(app.settings.db_path, arn)

    with pytest.raises(Refused) as refused:
        app.step(ROTATION, "new_key", "prod", {"key": arn})

    guards = set(ROTATION.step("new_key").guards)
    assert {r.guard for r in refused.value.unmet} == failed(data) & guards
