"""The evidence guards on the steps that disable a key or schedule its deletion.

KMS, S3, Kinesis and SQS run in moto's mock_aws. moto 5.2 has no CloudTrail
LookupEvents, so CloudTrail is the local fixture server from conftest, except
in the throttling test, which wraps the CloudTrail client in
botocore.stub.Stubber to inject ThrottlingException without real back-off
waits, and in the delivery delay tests, where Stubber returns an empty history.
The fixture server delivers at once, so conftest sets KMSGUARD_CLOUDTRAIL_DELAY
to 0, and tests of the default 20-minute delay remove it. Tests that need a
key disabled days ago, or support contacted weeks ago, move that recorded time
back in the store, because no test can wait.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from conftest import (
    OWN_ACCOUNT,
    PIPELINE_ACCOUNT,
    REGION,
    ROTATION_PARAMS,
    CloudTrailFixture,
    create_key,
    drive_rotation,
    kms_use_record,
    snapshot,
)

from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App
from kmsguard.workflow.aws import AwsSession
from kmsguard.workflow.environment_resources import set_environment_resources
from kmsguard.workflow.errors import InvalidInput, Refused
from kmsguard.workflow.records import Event, NewEvent, Run, RunChange, parse_time

ROTATION = PROCEDURES["rotation"]
DISABLEMENT = PROCEDURES["disablement"]
STREAM = f"arn:aws:kinesis:{REGION}:{PIPELINE_ACCOUNT}:stream/enriched-good"
TRAIL_ARN = f"arn:aws:cloudtrail:{REGION}:{OWN_ACCOUNT}:trail/audit"


def open_run(app: App) -> Run:
    run = app.store.open_run("prod")
    assert run is not None
    return run


def key_state(kms: Any, key_arn: str) -> str:
    return str(kms.describe_key(KeyId=key_arn)["KeyMetadata"]["KeyState"])


def last_event(app: App, step: str) -> Event:
    return [e for e in app.store.run_events(open_run(app).id) if e.step == step][-1]


def record_in_store(app: App, **change: Any) -> None:
    """Change recorded times of the open run, as if the steps had happened earlier."""
    run = open_run(app)
    app.store.compare_and_set(
        run,
        RunChange(state=run.state, **change),
        NewEvent(
            step="test_move_time_back",
            outcome="recorded",
            operator="test",
            from_state=run.state,
            to_state=run.state,
        ),
    )


def disabled_days_ago(app: App, kms: Any, days: float) -> str:
    """Disable the old key through the steps, then record the disable `days` ago."""
    old_key = drive_rotation(app, kms, "old_key_disabled")
    when = datetime.now(UTC) - timedelta(days=days)
    record_in_store(app, data_updates={"disabled_at": when.isoformat()})
    return old_key


def stream_decrypt(key_arn: str, **options: Any) -> dict[str, Any]:
    return kms_use_record(key_arn, context={"aws:kinesis:arn": STREAM}, **options)


def make_bucket(aws: AwsSession, name: str, objects: dict[str, str]) -> None:
    s3 = aws.client("s3", REGION)
    s3.create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    for key, key_arn in objects.items():
        s3.put_object(
            Bucket=name,
            Key=key,
            Body=b"event data",
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=key_arn,
        )


def refused_step(app: App, procedure: Any, step: str, params: Any) -> Refused:
    with pytest.raises(Refused) as refused:
        app.step(procedure, step, "prod", params)
    return refused.value


# Disable: the usage report must be "no use seen"


def test_disable_refused_while_pipeline_decrypts(
    app: App, kms: Any, cloudtrail: CloudTrailFixture
) -> None:
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    cloudtrail.serve([stream_decrypt(old_key, minutes_ago=45)])

    refused = refused_step(app, ROTATION, "disable_old_key", {})

    refusal = last_event(app, "disable_old_key")
    assert [r.guard for r in refused.unmet] == ["key_out_of_use"]
    assert "is still in use" in refused.unmet[0].reason
    assert STREAM in refused.unmet[0].reason
    assert f"account {PIPELINE_ACCOUNT}" in refused.unmet[0].reason
    assert "kmsguard evidence prod" in refused.unmet[0].next
    assert "--accept-risk" in refused.unmet[0].next
    assert refusal.outcome == "refused"
    assert refusal.evidence["usage_report"]["outcome"] == "in_use"
    assert open_run(app).state == "rotation_confirmed"
    assert key_state(kms, old_key) == "Enabled"


def test_disable_refused_for_use_delivered_early(
    app: App, kms: Any, cloudtrail: CloudTrailFixture
) -> None:
    """A Decrypt from a minute ago that CloudTrail already delivered counts."""
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    cloudtrail.serve([stream_decrypt(old_key, minutes_ago=1)])

    refused = refused_step(app, ROTATION, "disable_old_key", {})

    assert [r.guard for r in refused.unmet] == ["key_out_of_use"]
    assert "is still in use" in refused.unmet[0].reason
    assert key_state(kms, old_key) == "Enabled"


def test_disable_allowed_once_use_stops(
    app: App, kms: Any, cloudtrail: CloudTrailFixture
) -> None:
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    cloudtrail.serve([stream_decrypt(old_key, minutes_ago=45)])
    refused_step(app, ROTATION, "disable_old_key", {})
    cloudtrail.clear()

    result = app.step(ROTATION, "disable_old_key", "prod", {})

    assert result.run.state == "old_key_disabled"
    assert result.event.evidence["usage_report"]["outcome"] == "no_use_seen"
    assert "accepted_risk" not in result.event.evidence
    assert key_state(kms, old_key) == "Disabled"


def test_throttled_cut_short_scan_refuses_disable(
    app: App, kms: Any, aws: AwsSession
) -> None:
    """Stubber returns a first CloudTrail page, then six ThrottlingExceptions."""
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    stubber = Stubber(aws.client("cloudtrail", REGION))
    stubber.add_response("describe_trails", {"trailList": []})
    stubber.add_response("lookup_events", {"Events": [], "NextToken": "page-2"})
    for _ in range(6):
        stubber.add_client_error(
            "lookup_events", "ThrottlingException", "Rate exceeded", 400
        )
    waits: list[float] = []

    with stubber:
        refused = refused_step(
            app, ROTATION, "disable_old_key", {"cloudtrail_sleep": waits.append}
        )

    reason = refused.unmet[0].reason
    refusal = last_event(app, "disable_old_key")
    assert [r.guard for r in refused.unmet] == ["key_out_of_use"]
    assert "insufficient evidence" in reason
    assert "stopped after 1 page(s)" in reason
    assert "ThrottlingException" in reason
    assert waits
    assert refusal.evidence["usage_report"]["outcome"] == "insufficient_evidence"
    assert key_state(kms, old_key) == "Enabled"
    stubber.assert_no_pending_responses()


def test_trail_excluding_kms_events_refuses_disable(
    app: App, kms: Any, cloudtrail: CloudTrailFixture
) -> None:
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    cloudtrail.serve(
        {
            "events": [],
            "trails": [{"Name": "audit", "TrailARN": TRAIL_ARN, "HomeRegion": REGION}],
            "event_selectors": {
                "audit": {
                    "EventSelectors": [
                        {
                            "ReadWriteType": "All",
                            "IncludeManagementEvents": True,
                            "ExcludeManagementEventSources": ["kms.amazonaws.com"],
                        }
                    ]
                }
            },
        }
    )

    refused = refused_step(app, ROTATION, "disable_old_key", {})

    reason = refused.unmet[0].reason
    assert [r.guard for r in refused.unmet] == ["key_out_of_use"]
    assert "insufficient evidence" in reason
    assert "trail audit excludes KMS events" in reason
    assert key_state(kms, old_key) == "Enabled"


def test_lookback_shorter_than_retention_refuses_disable(
    app: App, kms: Any, aws: AwsSession, cloudtrail: CloudTrailFixture
) -> None:
    old_key = drive_rotation(app, kms, "support_contacted")
    run = open_run(app)
    queue = aws.client("sqs", REGION).create_queue(
        QueueName="surge-good",
        Attributes={
            "KmsMasterKeyId": str(run.new_key_arn),
            "MessageRetentionPeriod": str(14 * 24 * 3600),
        },
    )["QueueUrl"]
    set_environment_resources(app, "prod", sqs_queues=[queue])
    # Support confirmed 16 days ago, so the queue's 14 days of messages are
    # all under the new key, and only the CloudTrail window falls short.
    now = datetime.now(UTC)
    record_in_store(
        app, updates={"contacted_at": (now - timedelta(days=20)).isoformat()}
    )
    confirmed = dict(ROTATION_PARAMS["confirm"])
    confirmed["confirmed_at"] = (now - timedelta(days=16)).isoformat()
    app.step(ROTATION, "confirm", "prod", confirmed)

    refused = refused_step(app, ROTATION, "disable_old_key", {"since": "7d"})

    reason = refused.unmet[0].reason
    report = last_event(app, "disable_old_key").evidence["usage_report"]
    assert [r.guard for r in refused.unmet] == ["key_out_of_use"]
    assert "insufficient evidence" in reason
    assert "keeps records for 336 h" in reason
    assert "--since" in refused.unmet[0].next
    assert report["outcome"] == "insufficient_evidence"
    assert key_state(kms, old_key) == "Enabled"


def test_disable_refusal_names_bucket_with_old_objects(
    app: App, kms: Any, aws: AwsSession
) -> None:
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    new_key = str(open_run(app).new_key_arn)
    make_bucket(
        aws,
        "pipeline-archive",
        {"enriched/2026/01/part-1.gz": old_key, "enriched/2026/03/part-2.gz": new_key},
    )
    set_environment_resources(app, "prod", s3_buckets=["pipeline-archive"])

    refused = refused_step(app, ROTATION, "disable_old_key", {})

    reason = refused.unmet[0].reason
    assert "S3 bucket pipeline-archive: 1 object(s)" in reason
    assert "'enriched/'" in reason
    assert key_state(kms, old_key) == "Enabled"


def test_disable_refusal_names_retention_end(
    app: App, kms: Any, aws: AwsSession
) -> None:
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    run = open_run(app)
    kinesis = aws.client("kinesis", REGION)
    kinesis.create_stream(StreamName="good", ShardCount=1)
    kinesis.start_stream_encryption(
        StreamName="good", EncryptionType="KMS", KeyId=str(run.new_key_arn)
    )
    set_environment_resources(app, "prod", kinesis_streams=["good"])
    [confirmation] = app.store.confirmations(run.id)
    earliest = parse_time(confirmation.confirmed_at) + timedelta(hours=24)

    refused = refused_step(app, ROTATION, "disable_old_key", {})

    reason = refused.unmet[0].reason
    assert "Kinesis stream good keeps records for 24 h" in reason
    assert f"until {earliest.isoformat()}" in reason
    assert key_state(kms, old_key) == "Enabled"


def test_disablement_disable_refused_while_in_use(
    app: App, kms: Any, cloudtrail: CloudTrailFixture
) -> None:
    key = create_key(kms, Description="pipeline key to retire")
    app.start(DISABLEMENT, "prod", {"key": key})
    app.step(DISABLEMENT, "request_removal", "prod", {"ticket": "SUP-20"})
    app.step(
        DISABLEMENT, "confirm", "prod", {"ticket": "SUP-20", "confirmed_by": "Sam"}
    )
    cloudtrail.serve([stream_decrypt(key, minutes_ago=30)])

    refused = refused_step(app, DISABLEMENT, "disable_key", {})

    assert [r.guard for r in refused.unmet] == ["key_out_of_use"]
    assert STREAM in refused.unmet[0].reason
    assert key_state(kms, key) == "Enabled"


# Disable: CloudTrail's delivery delay after support's confirmation


def empty_cloudtrail(aws: AwsSession) -> Stubber:
    """Stub CloudTrail with no trails and one empty page of events."""
    stubber = Stubber(aws.client("cloudtrail", REGION))
    stubber.add_response("describe_trails", {"trailList": []})
    stubber.add_response("lookup_events", {"Events": []})
    return stubber


def confirmation_time(app: App) -> datetime:
    [confirmation] = app.store.confirmations(open_run(app).id)
    return parse_time(confirmation.confirmed_at)


def test_disable_refused_until_confirmation_delivered(
    app: App, kms: Any, aws: AwsSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Support confirmed moments ago, so a call since may not be delivered yet.

    moto 5.2 has no CloudTrail LookupEvents, so Stubber returns no trails and
    no events. The delay is the default 20 minutes.
    """
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    monkeypatch.delenv("KMSGUARD_CLOUDTRAIL_DELAY")
    before = open_run(app)
    events_before = app.store.run_events(before.id)
    retry = (confirmation_time(app) + timedelta(minutes=20)).isoformat()
    stubber = empty_cloudtrail(aws)

    with stubber:
        refused = refused_step(app, ROTATION, "disable_old_key", {})

    after = open_run(app)
    events_after = app.store.run_events(before.id)
    [unmet] = refused.unmet
    assert unmet.guard == "key_out_of_use"
    assert "insufficient evidence" in unmet.reason
    assert "may not have reached CloudTrail yet" in unmet.reason
    assert f"wait until {retry} before disabling the key" in unmet.reason
    assert unmet.next.startswith(f"run the step again after {retry}")
    assert "--since" not in unmet.next
    assert "--accept-risk" in unmet.next
    assert after.state == "rotation_confirmed"
    assert after.version == before.version
    assert events_after[:-1] == events_before
    assert events_after[-1].outcome == "refused"
    assert events_after[-1].step == "disable_old_key"
    assert (
        events_after[-1].evidence["usage_report"]["outcome"] == "insufficient_evidence"
    )
    assert key_state(kms, old_key) == "Enabled"
    stubber.assert_no_pending_responses()


def test_disable_allowed_at_once_with_zero_delay(
    app: App, kms: Any, aws: AwsSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A simulator that delivers at once sets the delay to 0.

    moto 5.2 has no CloudTrail LookupEvents, so Stubber returns no trails and
    no events.
    """
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    monkeypatch.setenv("KMSGUARD_CLOUDTRAIL_DELAY", "0")
    stubber = empty_cloudtrail(aws)

    with stubber:
        result = app.step(ROTATION, "disable_old_key", "prod", {})

    report = result.event.evidence["usage_report"]
    [cloudtrail] = [s for s in report["sources"] if s["name"] == "cloudtrail"]
    note = (
        "KMSGUARD_CLOUDTRAIL_DELAY sets CloudTrail's delivery delay to 0 seconds "
        "instead of 20 minutes"
    )
    assert result.run.state == "old_key_disabled"
    assert report["outcome"] == "no_use_seen"
    assert "accepted_risk" not in result.event.evidence
    assert {"note": note} in cloudtrail["findings"]
    assert key_state(kms, old_key) == "Disabled"
    stubber.assert_no_pending_responses()


def test_disable_allowed_once_confirmation_delivered(
    app: App, kms: Any, aws: AwsSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Support confirmed 21 minutes ago, past the default 20-minute delay.

    The confirmation is recorded with an earlier time, because no test can
    wait. moto 5.2 has no CloudTrail LookupEvents, so Stubber returns no
    trails and no events.
    """
    old_key = drive_rotation(app, kms, "support_contacted")
    now = datetime.now(UTC)
    record_in_store(
        app, updates={"contacted_at": (now - timedelta(hours=1)).isoformat()}
    )
    confirmed = dict(ROTATION_PARAMS["confirm"])
    confirmed["confirmed_at"] = (now - timedelta(minutes=21)).isoformat()
    app.step(ROTATION, "confirm", "prod", confirmed)
    monkeypatch.delenv("KMSGUARD_CLOUDTRAIL_DELAY")
    stubber = empty_cloudtrail(aws)

    with stubber:
        result = app.step(ROTATION, "disable_old_key", "prod", {})

    assert result.run.state == "old_key_disabled"
    assert result.event.evidence["usage_report"]["outcome"] == "no_use_seen"
    assert "accepted_risk" not in result.event.evidence
    assert key_state(kms, old_key) == "Disabled"
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize("value", ["soon", "-1", "3601", "1.5", "20m"])
def test_bad_delay_variable_rejected_before_disable(
    app: App, kms: Any, db_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    drive_rotation(app, kms, "rotation_confirmed")
    monkeypatch.setenv("KMSGUARD_CLOUDTRAIL_DELAY", value)
    before = snapshot(db_path)

    with pytest.raises(InvalidInput) as rejected:
        app.step(ROTATION, "disable_old_key", "prod", {})

    assert f"KMSGUARD_CLOUDTRAIL_DELAY={value!r}" in str(rejected.value)
    assert "from 0 to 3600" in str(rejected.value)
    assert rejected.value.exit_code == 2
    assert snapshot(db_path) == before


def test_bad_delay_variable_rejected_before_schedule(
    app: App, kms: Any, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drive_rotation(app, kms, "old_key_disabled")
    monkeypatch.setenv("KMSGUARD_CLOUDTRAIL_DELAY", "soon")
    before = snapshot(db_path)

    with pytest.raises(InvalidInput, match="KMSGUARD_CLOUDTRAIL_DELAY='soon'"):
        app.step(ROTATION, "schedule_deletion", "prod", {"window_days": 7})

    assert snapshot(db_path) == before


# Overrides


def test_accept_risk_records_reason_and_operator(
    app: App, kms: Any, cloudtrail: CloudTrailFixture
) -> None:
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    cloudtrail.serve([stream_decrypt(old_key, minutes_ago=45)])
    reason = "pipeline stopped for maintenance; ticket SUP-9"

    result = app.step(ROTATION, "disable_old_key", "prod", {"accept_risk": reason})

    accepted = result.event.evidence["accepted_risk"]
    assert result.run.state == "old_key_disabled"
    assert accepted["reason"] == reason
    assert accepted["operator"] == "alice"
    assert [g["guard"] for g in accepted["guards"]] == ["key_out_of_use"]
    assert result.event.operator == "alice"
    assert result.event.evidence["usage_report"]["outcome"] == "in_use"
    assert key_state(kms, old_key) == "Disabled"


def test_accept_risk_overrides_undelivered_confirmation(
    app: App, kms: Any, aws: AwsSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto 5.2 has no CloudTrail LookupEvents, so Stubber returns no events."""
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    monkeypatch.delenv("KMSGUARD_CLOUDTRAIL_DELAY")
    reason = "pipeline stopped before the confirmation; ticket SUP-9"
    stubber = empty_cloudtrail(aws)

    with stubber:
        result = app.step(ROTATION, "disable_old_key", "prod", {"accept_risk": reason})

    accepted = result.event.evidence["accepted_risk"]
    assert result.run.state == "old_key_disabled"
    assert accepted["reason"] == reason
    assert [g["guard"] for g in accepted["guards"]] == ["key_out_of_use"]
    assert result.event.evidence["usage_report"]["outcome"] == "insufficient_evidence"
    assert key_state(kms, old_key) == "Disabled"


def test_accept_risk_cannot_skip_confirmation(
    app: App, kms: Any, cloudtrail: CloudTrailFixture
) -> None:
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    # A later contact, as a recovery records it, makes the confirmation stale.
    later = datetime.now(UTC) + timedelta(seconds=1)
    record_in_store(app, updates={"contacted_at": later.isoformat()})
    cloudtrail.serve([stream_decrypt(old_key, minutes_ago=45)])

    refused = refused_step(
        app, ROTATION, "disable_old_key", {"accept_risk": "support is slow"}
    )

    assert [r.guard for r in refused.unmet] == ["confirmation_recorded"]
    assert "support is slow" not in str(last_event(app, "disable_old_key").evidence)
    assert open_run(app).state == "rotation_confirmed"
    assert key_state(kms, old_key) == "Enabled"


def test_empty_accept_risk_rejected(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "rotation_confirmed")
    before = snapshot(db_path)

    with pytest.raises(InvalidInput, match="--accept-risk is empty"):
        app.step(ROTATION, "disable_old_key", "prod", {"accept_risk": "  "})

    assert snapshot(db_path) == before


def test_malformed_since_rejected(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "rotation_confirmed")
    before = snapshot(db_path)

    with pytest.raises(InvalidInput, match="'7 days'"):
        app.step(ROTATION, "disable_old_key", "prod", {"since": "7 days"})

    assert snapshot(db_path) == before


# Schedule deletion: observation period, use since the disable, S3 objects


def test_schedule_refused_during_observation_period(
    app: App, kms: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_key = drive_rotation(app, kms, "old_key_disabled")
    # With the default delay, the minutes since the disable are undelivered.
    monkeypatch.delenv("KMSGUARD_CLOUDTRAIL_DELAY")
    disabled_at = parse_time(open_run(app).data["disabled_at"])
    ends = disabled_at + timedelta(days=7)

    refused = refused_step(app, ROTATION, "schedule_deletion", {"window_days": 7})

    unmet = {r.guard: r for r in refused.unmet}
    assert "observation_period_passed" in unmet
    assert ends.isoformat() in unmet["observation_period_passed"].reason
    assert "may not have reached CloudTrail yet" in str(
        unmet["no_events_since_disable"].reason
    )
    assert key_state(kms, old_key) == "Disabled"


def test_schedule_allowed_after_observation_period(app: App, kms: Any) -> None:
    old_key = disabled_days_ago(app, kms, 8)

    result = app.step(ROTATION, "schedule_deletion", "prod", {"window_days": 7})

    evidence = result.event.evidence
    assert result.run.state == "old_key_deletion_scheduled"
    assert "accepted_risk" not in evidence
    assert evidence["observation"]["days"] == 7
    assert evidence["events_since_disable"]["complete"] is True
    assert evidence["s3_objects"]["status"] == "clear"
    assert key_state(kms, old_key) == "PendingDeletion"


def test_observation_days_option_shortens_period(app: App, kms: Any) -> None:
    disabled_days_ago(app, kms, 2)

    result = app.step(
        ROTATION, "schedule_deletion", "prod", {"window_days": 7, "observation_days": 1}
    )

    assert result.run.state == "old_key_deletion_scheduled"
    assert result.event.evidence["observation"]["days"] == 1


def test_disabled_exception_after_disable_blocks_schedule(
    app: App, kms: Any, cloudtrail: CloudTrailFixture
) -> None:
    old_key = disabled_days_ago(app, kms, 2)
    cloudtrail.serve(
        [stream_decrypt(old_key, minutes_ago=24 * 60, error="DisabledException")]
    )

    refused = refused_step(
        app, ROTATION, "schedule_deletion", {"window_days": 7, "observation_days": 1}
    )

    reason = refused.unmet[0].reason
    evidence = last_event(app, "schedule_deletion").evidence
    assert [r.guard for r in refused.unmet] == ["no_events_since_disable"]
    assert "DisabledException x1" in reason
    assert STREAM in reason
    assert evidence["events_since_disable"]["groups"][0]["error_codes"] == {
        "DisabledException": 1
    }
    assert open_run(app).state == "old_key_disabled"
    assert key_state(kms, old_key) == "Disabled"


def test_use_before_disable_not_counted(
    app: App, kms: Any, cloudtrail: CloudTrailFixture
) -> None:
    old_key = disabled_days_ago(app, kms, 2)
    cloudtrail.serve([stream_decrypt(old_key, minutes_ago=3 * 24 * 60)])

    result = app.step(
        ROTATION, "schedule_deletion", "prod", {"window_days": 7, "observation_days": 1}
    )

    assert result.run.state == "old_key_deletion_scheduled"


def test_objects_under_key_need_accept_data_loss(
    app: App, kms: Any, aws: AwsSession
) -> None:
    old_key = disabled_days_ago(app, kms, 8)
    make_bucket(aws, "pipeline-archive", {"bad/2026/01/part-1.gz": old_key})
    set_environment_resources(app, "prod", s3_buckets=["pipeline-archive"])
    params: dict[str, Any] = {"window_days": 7, "accept_risk": "old data unneeded"}

    refused = refused_step(app, ROTATION, "schedule_deletion", params)

    assert [r.guard for r in refused.unmet] == ["no_objects_under_key"]
    assert "pipeline-archive" in refused.unmet[0].reason
    assert "unreadable for good" in refused.unmet[0].reason
    assert "--accept-data-loss" in refused.unmet[0].next
    assert key_state(kms, old_key) == "Disabled"


def test_accept_data_loss_records_reason(app: App, kms: Any, aws: AwsSession) -> None:
    old_key = disabled_days_ago(app, kms, 8)
    make_bucket(aws, "pipeline-archive", {"bad/2026/01/part-1.gz": old_key})
    set_environment_resources(app, "prod", s3_buckets=["pipeline-archive"])
    reason = "bad-event archive past its legal retention; ticket SUP-11"

    result = app.step(
        ROTATION,
        "schedule_deletion",
        "prod",
        {"window_days": 7, "accept_data_loss": reason},
    )

    accepted = result.event.evidence["accepted_data_loss"]
    assert result.run.state == "old_key_deletion_scheduled"
    assert accepted["reason"] == reason
    assert accepted["operator"] == "alice"
    assert [g["guard"] for g in accepted["guards"]] == ["no_objects_under_key"]
    assert "accepted_risk" not in result.event.evidence
    assert key_state(kms, old_key) == "PendingDeletion"


def test_observation_days_below_minimum_rejected(
    app: App, kms: Any, db_path: Path
) -> None:
    drive_rotation(app, kms, "old_key_disabled")
    before = snapshot(db_path)

    with pytest.raises(InvalidInput, match="--observation-days 0"):
        app.step(
            ROTATION,
            "schedule_deletion",
            "prod",
            {"window_days": 7, "observation_days": 0},
        )

    assert snapshot(db_path) == before
