"""The new-key guards refuse each kind of unsuitable key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import REGION, create_key, drive_rotation, snapshot

from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App
from kmsguard.workflow.errors import InvalidInput, Refused

ROTATION = PROCEDURES["rotation"]


def make_asymmetric(kms: Any, aws: Any) -> str:
    return create_key(kms, KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")


def make_hmac(kms: Any, aws: Any) -> str:
    return create_key(kms, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")


def make_external(kms: Any, aws: Any) -> str:
    return create_key(kms, Origin="EXTERNAL")


def make_multi_region(kms: Any, aws: Any) -> str:
    return create_key(kms, MultiRegion=True)


def make_other_region(kms: Any, aws: Any) -> str:
    return create_key(aws.client("kms", "us-east-1"))


def make_disabled(kms: Any, aws: Any) -> str:
    arn = create_key(kms)
    kms.disable_key(KeyId=arn.split("/")[-1])
    return arn


BAD_KEYS = [
    (make_asymmetric, "key_spec"),
    (make_hmac, "key_spec"),
    (make_external, "key_origin"),
    (make_multi_region, "key_single_region"),
    (make_other_region, "key_region"),
    (make_disabled, "key_enabled"),
]


@pytest.mark.parametrize(("make_key", "guard"), BAD_KEYS, ids=[g for _, g in BAD_KEYS])
def test_new_key_refused_for_bad_key(
    app: App, kms: Any, aws: Any, make_key: Any, guard: str
) -> None:
    drive_rotation(app, kms, "started")
    run = app.store.open_run("prod")
    assert run is not None
    bad_key = make_key(kms, aws)

    with pytest.raises(Refused) as refused:
        app.step(ROTATION, "new_key", "prod", {"key": bad_key})

    assert guard in [r.guard for r in refused.value.unmet]
    after = app.store.get_run(run.id)
    assert after.state == "started"
    assert after.version == run.version
    assert after.new_key_arn is None
    assert app.store.run_events(run.id)[-1].outcome == "refused"


def test_hmac_key_also_fails_usage(app: App, kms: Any, aws: Any) -> None:
    drive_rotation(app, kms, "started")

    with pytest.raises(Refused) as refused:
        app.step(ROTATION, "new_key", "prod", {"key": make_hmac(kms, aws)})

    assert "key_usage" in [r.guard for r in refused.value.unmet]


def test_new_key_refused_when_same_as_old(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "started")

    with pytest.raises(Refused) as refused:
        app.step(ROTATION, "new_key", "prod", {"key": old_key})

    assert [r.guard for r in refused.value.unmet] == ["key_not_current"]


def test_new_key_refused_for_other_account(app: App, kms: Any) -> None:
    """moto keeps one key store per account and cannot describe another
    account's key, so botocore's Stubber returns DescribeKey for it."""
    from botocore.stub import Stubber

    drive_rotation(app, kms, "started")
    foreign = (
        f"arn:aws:kms:{REGION}:999988887777:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    )
    metadata = {
        "KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab",
        "Arn": foreign,
        "AWSAccountId": "999988887777",
        "KeyState": "Enabled",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "KeyUsage": "ENCRYPT_DECRYPT",
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "MultiRegion": False,
    }
    with Stubber(kms) as stubber:
        stubber.add_response(
            "describe_key", {"KeyMetadata": metadata}, {"KeyId": foreign}
        )
        stubber.add_response(
            "get_key_rotation_status", {"KeyRotationEnabled": True}, {"KeyId": foreign}
        )
        with pytest.raises(Refused) as refused:
            app.step(ROTATION, "new_key", "prod", {"key": foreign})

    assert [r.guard for r in refused.value.unmet] == ["key_owner"]
    assert "999988887777" in refused.value.unmet[0].reason


@pytest.mark.parametrize(
    "key",
    [
        "not-a-key",
        "arn:aws:kms:eu-west-1:12345:key/abc",
        "alias/aws/s3",
    ],
)
def test_malformed_key_is_invalid_and_writes_nothing(
    app: App, kms: Any, db_path: Path, key: str
) -> None:
    drive_rotation(app, kms, "started")
    before = snapshot(db_path)

    with pytest.raises(InvalidInput) as invalid:
        app.step(ROTATION, "new_key", "prod", {"key": key})

    assert key in str(invalid.value)
    assert invalid.value.exit_code == 2
    assert snapshot(db_path) == before


def test_unknown_key_is_invalid_and_writes_nothing(
    app: App, kms: Any, db_path: Path
) -> None:
    drive_rotation(app, kms, "started")
    before = snapshot(db_path)

    with pytest.raises(InvalidInput) as invalid:
        app.step(ROTATION, "new_key", "prod", {"key": "alias/does-not-exist"})

    assert "alias/does-not-exist" in str(invalid.value)
    assert snapshot(db_path) == before


def test_adopted_key_without_rotation_warns(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "started")
    new_key = create_key(kms)

    result = app.step(ROTATION, "new_key", "prod", {"key": new_key})

    assert result.run.new_key_arn == new_key
    assert any("automatic rotation is off" in note for note in result.outcome.notes)


def test_created_key_has_documented_settings(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "started")

    result = app.step(
        ROTATION, "new_key", "prod", {"create": True, "alias": "alias/prod-2026"}
    )

    metadata = kms.describe_key(KeyId=result.run.new_key_arn)["KeyMetadata"]
    assert metadata["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert metadata["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert metadata["Origin"] == "AWS_KMS"
    assert metadata["MultiRegion"] is False
    assert (
        kms.get_key_rotation_status(KeyId=result.run.new_key_arn)["KeyRotationEnabled"]
        is True
    )
    aliases = {
        a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]
    }
    assert aliases["alias/prod-2026"] == metadata["KeyId"]
    tags = {
        t["TagKey"]: t["TagValue"]
        for t in kms.list_resource_tags(KeyId=metadata["KeyId"])["Tags"]
    }
    assert tags["kmsguard:environment"] == "prod"


def test_existing_alias_is_invalid(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "started")
    taken = create_key(kms)
    kms.create_alias(AliasName="alias/taken", TargetKeyId=taken)
    before = snapshot(db_path)

    with pytest.raises(InvalidInput) as invalid:
        app.step(ROTATION, "new_key", "prod", {"create": True, "alias": "alias/taken"})

    assert "alias/taken" in str(invalid.value)
    assert taken.split("/")[-1] in str(invalid.value)
    assert snapshot(db_path) == before
