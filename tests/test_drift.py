"""Drift: a key changed outside kmsguard while its run waits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import (
    PIPELINE_ACCOUNT,
    REGION,
    ROTATION_PARAMS,
    Cli,
    create_key,
    drive_rotation,
)
from procedure_drivers import add_environment

from kmsguard.cli import main
from kmsguard.commands.live import live_exit_code
from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App
from kmsguard.workflow.errors import Refused

ROTATION = PROCEDURES["rotation"]
CONFIRM = ROTATION_PARAMS["confirm"]


def key_id(arn: str) -> str:
    return arn.split("/")[-1]


def last_outcome(app: App) -> tuple[str, str]:
    event = app.store.environment_events("prod")[-1]
    return event.step, event.outcome


def test_old_key_disabled_outside_refuses_confirm(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "support_contacted")
    kms.disable_key(KeyId=key_id(old_key))

    with pytest.raises(Refused) as refused:
        app.step(ROTATION, "confirm", "prod", dict(CONFIRM))

    [unmet] = refused.value.unmet
    assert unmet.guard == "key_drift"
    assert f"the current key {old_key} reads Disabled" in unmet.reason
    assert "expects it Enabled" in unmet.reason
    assert unmet.next == f"aws kms enable-key --key-id {old_key} --region {REGION}"
    assert last_outcome(app) == ("confirm", "refused")
    assert app.store.open_run("prod").state == "support_contacted"  # type: ignore[union-attr]


def test_old_key_scheduled_outside_names_cancel(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    kms.schedule_key_deletion(KeyId=key_id(old_key), PendingWindowInDays=7)

    with pytest.raises(Refused) as refused:
        app.step(ROTATION, "disable_old_key", "prod", {})

    [unmet] = refused.value.unmet
    assert "reads PendingDeletion" in unmet.reason
    assert unmet.next == (
        f"aws kms cancel-key-deletion --key-id {old_key} --region {REGION} && "
        f"aws kms enable-key --key-id {old_key} --region {REGION}"
    )


def test_repaired_drift_lets_step_run(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "support_contacted")
    kms.disable_key(KeyId=key_id(old_key))
    with pytest.raises(Refused):
        app.step(ROTATION, "confirm", "prod", dict(CONFIRM))
    kms.enable_key(KeyId=key_id(old_key))

    result = app.step(ROTATION, "confirm", "prod", dict(CONFIRM))

    assert result.run.state == "rotation_confirmed"


def test_new_key_disabled_outside_refuses_complete(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "old_key_disabled")
    new_key = app.store.open_run("prod").new_key_arn  # type: ignore[union-attr]
    assert new_key is not None
    kms.disable_key(KeyId=key_id(new_key))

    with pytest.raises(Refused) as refused:
        app.step(ROTATION, "complete", "prod", {})

    [unmet] = refused.value.unmet
    assert f"the new key {new_key} reads Disabled" in unmet.reason


def test_old_key_already_disabled_lets_disable_run(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    kms.disable_key(KeyId=key_id(old_key))

    result = app.step(ROTATION, "disable_old_key", "prod", {})

    assert result.run.state == "old_key_disabled"
    assert any("reads Disabled" in note for note in result.outcome.notes)
    assert result.event.evidence["drift"][0]["blocking"] is False


def test_cancel_allowed_despite_drift(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "support_contacted")
    kms.disable_key(KeyId=key_id(old_key))

    result = app.step(ROTATION, "cancel", "prod", {"reason": "key gone"})

    assert result.run.state == "cancelled"


def changed_policy(kms: Any, arn: str, drop_pipeline: bool) -> None:
    document = json.loads(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
    if drop_pipeline:
        document["Statement"] = [
            s for s in document["Statement"] if PIPELINE_ACCOUNT not in json.dumps(s)
        ]
    else:
        document["Statement"].append(
            {
                "Sid": "AuditorsDescribe",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:role/auditor"},
                "Action": "kms:DescribeKey",
                "Resource": "*",
            }
        )
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps(document))


def test_policy_changed_outside_reported(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "policy_applied")
    new_key = app.store.open_run("prod").new_key_arn  # type: ignore[union-attr]
    assert new_key is not None
    changed_policy(kms, new_key, drop_pipeline=False)

    result = app.step(ROTATION, "contact_support", "prod", {"ticket": "SUP-1"})

    [drift] = result.event.evidence["drift"]
    assert result.run.state == "support_contacted"
    assert drift["kind"] == "policy"
    assert "changed outside kmsguard" in drift["reason"]
    assert drift["blocking"] is False
    assert any("changed outside kmsguard" in note for note in result.outcome.notes)


def test_policy_without_pipeline_access_refuses(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "policy_applied")
    new_key = app.store.open_run("prod").new_key_arn  # type: ignore[union-attr]
    assert new_key is not None
    changed_policy(kms, new_key, drop_pipeline=True)

    with pytest.raises(Refused) as refused:
        app.step(ROTATION, "contact_support", "prod", {"ticket": "SUP-1"})

    [unmet] = refused.value.unmet
    assert "no longer lets the pipeline use the key" in unmet.reason
    assert unmet.next.startswith(f"aws kms get-key-policy --key-id {new_key}")


def test_status_live_reports_drift(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "support_contacted")
    kms.schedule_key_deletion(KeyId=key_id(old_key), PendingWindowInDays=7)

    [row] = app.status("prod", live=True)

    live = row["live"]
    assert live["keys"]["current"] == {"arn": old_key, "state": "PendingDeletion"}
    assert live["keys"]["new"]["state"] == "Enabled"
    assert [d["target"] for d in live["drift"]] == ["current"]
    assert "cancel-key-deletion" in live["drift"][0]["recovery"]


def test_status_live_without_drift(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "support_contacted")

    [row] = app.status("prod", live=True)

    assert row["live"]["drift"] == []


def test_plain_status_reads_no_keys(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "support_contacted")
    kms.disable_key(KeyId=key_id(old_key))

    [row] = app.status("prod")

    assert "live" not in row


def test_status_live_cli_prints_recovery(app: App, kms: Any, db_path: Path) -> None:
    old_key = drive_rotation(app, kms, "support_contacted")
    kms.disable_key(KeyId=key_id(old_key))

    result = CliRunner().invoke(main, ["--db", str(db_path), "status", "--live"])

    assert result.exit_code == 3, result.output
    assert f"drift: prod: the current key {old_key} reads Disabled" in result.stdout
    assert (
        f"recovery: aws kms enable-key --key-id {old_key} --region {REGION}"
        in result.stdout
    )


@pytest.mark.e2e
def test_status_live_e2e_json(cli: Cli) -> None:
    kms = cli.kms()
    old_key = create_key(kms)
    add_environment(cli)
    cli.run("rotation", "start", "prod", "--current-key", old_key, check=0)
    kms.disable_key(KeyId=key_id(old_key))

    plain = cli.json("status", "prod")
    live = cli.json("status", "prod", "--live", check=3)

    assert "live" not in plain["environments"][0]
    [drift] = live["environments"][0]["live"]["drift"]
    assert drift["actual"] == "Disabled"
    assert drift["expected"] == "Enabled"


def test_status_live_exits_zero_without_drift(
    app: App, kms: Any, db_path: Path
) -> None:
    drive_rotation(app, kms, "support_contacted")

    result = CliRunner().invoke(main, ["--db", str(db_path), "status", "--live"])

    assert result.exit_code == 0, result.output
    assert "prod: no drift: the keys match the run" in result.stdout


def offline_app(db_path: Path, attempts: list[str] | None = None) -> App:
    """An App whose KMS DescribeKey fails as an unreachable endpoint does.

    The connection error is raised at botocore's before-send event, where
    urllib3 would raise it, with one attempt so no retry waits.
    """
    from botocore.exceptions import EndpointConnectionError

    from kmsguard.workflow.app import Settings
    from kmsguard.workflow.aws import AwsSession, AwsSettings

    session = AwsSession(AwsSettings(max_attempts=1))

    def unreachable(request: Any, **_: Any) -> None:
        if attempts is not None:
            attempts.append(request.url)
        raise EndpointConnectionError(endpoint_url=request.url)

    session.client("kms", REGION).meta.events.register_first(
        "before-send.kms.DescribeKey", unreachable
    )
    return App(Settings(db_path=db_path, operator="bob"), aws=session)


def test_status_live_exit_code_one_when_aws_unreadable(
    app: App, kms: Any, db_path: Path
) -> None:
    drive_rotation(app, kms, "support_contacted")
    offline = offline_app(db_path)

    rows = offline.status("prod", live=True)
    offline.close()

    assert "error" in rows[0]["live"]
    assert live_exit_code(rows) == 1


def test_status_live_tries_unreachable_region_once(
    app: App, kms: Any, db_path: Path
) -> None:
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    drive_rotation(app, kms, "support_contacted")
    drive_rotation(app, kms, "support_contacted", env="qa1")
    one_environment: list[str] = []
    every_environment: list[str] = []
    first = offline_app(db_path, one_environment)
    first.status("prod", live=True)
    first.close()

    offline = offline_app(db_path, every_environment)
    rows = offline.status(live=True)
    offline.close()

    errors = {row["environment"]: row["live"]["error"] for row in rows}
    assert len(every_environment) == len(one_environment)
    assert "EndpointConnectionError" in errors["prod"]
    assert errors["qa1"].startswith(f"not read, because AWS in {REGION} could not")
    assert live_exit_code(rows) == 1


def test_local_step_goes_on_when_aws_unreachable(
    app: App, kms: Any, db_path: Path
) -> None:
    drive_rotation(app, kms, "support_contacted")
    offline = offline_app(db_path)
    result = offline.step(ROTATION, "confirm", "prod", dict(CONFIRM))
    offline.close()

    assert result.run.state == "rotation_confirmed"
    assert "EndpointConnectionError" in result.event.evidence["drift_unchecked"]
    assert any("not compared with AWS" in note for note in result.outcome.notes)


def put_statement(kms: Any, arn: str, statement: dict[str, Any]) -> None:
    """Add a statement to a key policy by hand, as the console would."""
    doc = json.loads(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
    doc["Statement"].append(statement)
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps(doc))


def new_key_of(app: App) -> str:
    run = app.store.open_run("prod")
    assert run is not None and run.new_key_arn
    return run.new_key_arn


def test_lockout_under_protection_sid_is_drift(app: App, kms: Any) -> None:
    """A Deny of the pipeline's use, under kmsguard's protection Sid, is no protection."""
    from kmsguard.workflow.policy import PROTECTION_SID

    drive_rotation(app, kms, "support_contacted")
    lockout = {
        "Sid": PROTECTION_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Resource": "*",
    }
    put_statement(kms, new_key_of(app), lockout)

    rows = app.status("prod", live=True)

    [drift] = rows[0]["live"]["drift"]
    assert drift["kind"] == "policy"
    assert "no longer lets the pipeline use the key" in drift["reason"]
    assert live_exit_code(rows) == 3


def test_unexplained_protection_statement_is_drift(app: App, kms: Any) -> None:
    """With no run protecting the key, a statement of kmsguard's form is drift."""
    from kmsguard.workflow.policy import PROTECTION_SID

    drive_rotation(app, kms, "support_contacted")
    statement = {
        "Sid": PROTECTION_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": ["kms:DisableKey", "kms:ScheduleKeyDeletion"],
        "Resource": "*",
    }
    put_statement(kms, new_key_of(app), statement)

    rows = app.status("prod", live=True)

    assert [d["kind"] for d in rows[0]["live"]["drift"]] == ["policy"]
    assert live_exit_code(rows) == 3
