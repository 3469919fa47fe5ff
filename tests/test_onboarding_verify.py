"""Onboarding verify: CloudTrail evidence of pipeline use, and the resources' keys.

moto 5.2 does not implement CloudTrail LookupEvents, so every test answers
DescribeTrails and LookupEvents with botocore.stub.Stubber on the session's
CloudTrail client (it checks the response shapes). S3, Kinesis, SQS and KMS run
in moto. Two tests also stub S3 or Kinesis with Stubber, to return the
access-denied error that an operator without read access gets, because moto
allows every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from conftest import OWN_ACCOUNT, REGION, create_key, snapshot
from procedure_drivers import (
    ONBOARDING,
    drive_onboarding,
    kms_call,
    list_encrypted_bucket,
    stub_cloudtrail,
)

from kmsguard.workflow.app import App
from kmsguard.workflow.engine import StepResult
from kmsguard.workflow.environment_resources import set_environment_resources
from kmsguard.workflow.errors import Refused
from kmsguard.workflow.evidence_resources import Resources
from kmsguard.workflow.verify_resources import set_resources_command

OTHER_ACCOUNT = "999988887777"
LISTED_BUCKET = "prod-pipeline-archive"
MISSING_QUEUE = f"https://sqs.{REGION}.amazonaws.com/{OWN_ACCOUNT}/prod-missing-queue"


def onboarded_key(app: App, *, list_bucket: bool = True) -> str:
    """Drive onboarding to `configured` and list a bucket encrypted with the key."""
    drive_onboarding(app, "configured")
    run = app.store.open_run("prod")
    assert run is not None and run.new_key_arn
    if list_bucket:
        list_encrypted_bucket(app)
    return run.new_key_arn


def verify(app: App, events: list[dict[str, Any]]) -> StepResult:
    with stub_cloudtrail(app.aws(), events):
        return app.step(ONBOARDING, "verify", "prod", {})


def refused_verify(app: App, events: list[dict[str, Any]]) -> Refused:
    with pytest.raises(Refused) as refused, stub_cloudtrail(app.aws(), events):
        app.step(ONBOARDING, "verify", "prod", {})
    return refused.value


def checks_by_subject(result: StepResult) -> dict[str, dict[str, Any]]:
    checks = result.event.evidence["verification"]["checks"]
    return {check["subject"]: check for check in checks}


def checks_of(refused: Refused) -> dict[str, dict[str, Any]]:
    """Return the checks a refused verify carries, by subject."""
    checks = refused.unmet[0].details["checks"]
    return {check["subject"]: check for check in checks}


def test_verify_passes_with_pipeline_calls(app: App) -> None:
    key = onboarded_key(app)

    result = verify(app, [kms_call(key, "Decrypt"), kms_call(key, "GenerateDataKey")])

    checks = checks_by_subject(result)
    assert result.run.state == "verified"
    assert checks["CloudTrail"]["status"] == "passed"
    assert "Decrypt x1, GenerateDataKey x1" in checks["CloudTrail"]["reason"]
    assert "210987654321" in checks["CloudTrail"]["reason"]


def test_verify_notes_requested_components_without_resources(app: App) -> None:
    """Onboarding requests every component; only a bucket is listed."""
    key = onboarded_key(app)

    result = verify(app, [kms_call(key, "Decrypt")])

    checks = checks_by_subject(result)
    assert result.run.state == "verified"
    assert checks["Kinesis streams"]["status"] == "skipped"
    assert checks["SQS queues"]["status"] == "skipped"
    assert "none was checked" in checks["SQS queues"]["reason"]


def test_verify_fails_without_listed_resources(app: App) -> None:
    key = onboarded_key(app, list_bucket=False)

    refused = refused_verify(app, [kms_call(key, "Decrypt")])

    checks = checks_of(refused)
    assert [r.guard for r in refused.unmet] == ["resources_name_key"]
    assert "environment prod lists no pipeline resources" in refused.unmet[0].reason
    assert "`kmsguard env set-resources prod --s3-bucket NAME" in (
        refused.unmet[0].reason
    )
    assert checks["pipeline resources"]["status"] == "failed"
    assert refused.unmet[0].next == "kmsguard onboarding verify prod"


def test_verify_fails_without_calls(app: App) -> None:
    onboarded_key(app)
    run = app.store.open_run("prod")
    assert run is not None

    refused = refused_verify(app, [])

    assert [r.guard for r in refused.unmet] == ["pipeline_use_seen"]
    assert "no Decrypt or GenerateDataKey call" in refused.unmet[0].reason
    assert refused.unmet[0].next == "kmsguard onboarding verify prod"
    assert app.store.get_run(run.id).state == "configured"
    refusal = app.store.run_events(run.id)[-1]
    assert refusal.outcome == "refused"
    assert refusal.evidence["verification"]["passed"] is False


def test_verify_fails_with_other_account_calls_only(app: App) -> None:
    key = onboarded_key(app)

    refused = refused_verify(
        app,
        [
            kms_call(key, "Decrypt", account=OTHER_ACCOUNT),
            kms_call(key, "GenerateDataKey", account=OTHER_ACCOUNT),
        ],
    )

    assert [r.guard for r in refused.unmet] == ["pipeline_use_seen"]
    assert OTHER_ACCOUNT in refused.unmet[0].reason
    assert "none from pipeline account 210987654321" in refused.unmet[0].reason


def test_verify_fails_when_pipeline_calls_all_failed(app: App) -> None:
    key = onboarded_key(app)

    refused = refused_verify(
        app, [kms_call(key, "Decrypt", error="AccessDeniedException")]
    )

    assert [r.guard for r in refused.unmet] == ["pipeline_use_seen"]
    assert "AccessDeniedException x1" in refused.unmet[0].reason


def test_verify_ignores_calls_before_confirmation(app: App) -> None:
    key = onboarded_key(app)
    before = datetime.now(UTC) - timedelta(hours=1)

    refused = refused_verify(app, [kms_call(key, "Decrypt", when=before)])

    assert [r.guard for r in refused.unmet] == ["pipeline_use_seen"]


def test_verify_ignores_calls_other_than_decrypt_and_generate(app: App) -> None:
    key = onboarded_key(app)

    refused = refused_verify(app, [kms_call(key, "Encrypt")])

    assert [r.guard for r in refused.unmet] == ["pipeline_use_seen"]


def make_resources(aws: Any, key_reference: dict[str, str]) -> dict[str, str]:
    """Create a bucket, a stream and a queue naming the given key identifiers."""
    s3 = aws.client("s3", REGION)
    s3.create_bucket(
        Bucket="pipeline-enriched",
        CreateBucketConfiguration={"LocationConstraint": REGION},
    )
    s3.put_bucket_encryption(
        Bucket="pipeline-enriched",
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": key_reference["s3"],
                    }
                }
            ]
        },
    )
    kinesis = aws.client("kinesis", REGION)
    kinesis.create_stream(StreamName="good", ShardCount=1)
    kinesis.start_stream_encryption(
        StreamName="good", EncryptionType="KMS", KeyId=key_reference["kinesis"]
    )
    sqs = aws.client("sqs", REGION)
    url = sqs.create_queue(
        QueueName="good-queue", Attributes={"KmsMasterKeyId": key_reference["sqs"]}
    )["QueueUrl"]
    return {"bucket": "pipeline-enriched", "stream": "good", "queue": str(url)}


def list_resources(app: App, names: dict[str, str]) -> None:
    set_environment_resources(
        app,
        "prod",
        s3_buckets=[names["bucket"]],
        kinesis_streams=[names["stream"]],
        sqs_queues=[names["queue"]],
    )


def test_verify_resolves_each_identifier_form(app: App, kms: Any) -> None:
    key = onboarded_key(app)
    key_id = key.split("/")[-1]
    kms.create_alias(AliasName="alias/pipeline", TargetKeyId=key_id)
    alias_arn = f"arn:aws:kms:{REGION}:{key.split(':')[4]}:alias/pipeline"
    names = make_resources(
        app.aws(), {"s3": "alias/pipeline", "kinesis": key_id, "sqs": alias_arn}
    )
    list_resources(app, names)

    result = verify(app, [kms_call(key, "Decrypt")])

    checks = checks_by_subject(result)
    assert checks["S3 bucket pipeline-enriched"]["status"] == "passed"
    assert checks["Kinesis stream good"]["status"] == "passed"
    assert checks[f"SQS queue {names['queue']}"]["status"] == "passed"
    assert "'alias/pipeline'" in checks["S3 bucket pipeline-enriched"]["reason"]


def test_verify_fails_when_resource_names_other_key(app: App, kms: Any) -> None:
    key = onboarded_key(app)
    other = create_key(kms, Description="another key")
    names = make_resources(app.aws(), {"s3": other, "kinesis": key, "sqs": key})
    list_resources(app, names)

    refused = refused_verify(app, [kms_call(key, "Decrypt")])

    assert [r.guard for r in refused.unmet] == ["resources_name_key"]
    assert "S3 bucket pipeline-enriched" in refused.unmet[0].reason
    assert other in refused.unmet[0].reason


def test_verify_fails_when_bucket_has_no_kms_key(app: App) -> None:
    key = onboarded_key(app)
    s3 = app.aws().client("s3", REGION)
    s3.create_bucket(
        Bucket="pipeline-archive",
        CreateBucketConfiguration={"LocationConstraint": REGION},
    )
    set_environment_resources(app, "prod", s3_buckets=["pipeline-archive"])

    refused = refused_verify(app, [kms_call(key, "Decrypt")])

    assert [r.guard for r in refused.unmet] == ["resources_name_key"]
    assert "names no KMS key" in refused.unmet[0].reason


@contextmanager
def s3_access_denied(app: App) -> Iterator[None]:
    stubber = Stubber(app.aws().client("s3", REGION))
    stubber.add_client_error(
        "get_bucket_encryption", "AccessDenied", "Access Denied", 403
    )
    stubber.activate()
    try:
        yield
    finally:
        stubber.deactivate()


def test_verify_refused_while_resource_unreadable(app: App) -> None:
    key = onboarded_key(app)
    set_environment_resources(app, "prod", s3_buckets=["pipeline-bad"])

    with s3_access_denied(app):
        refused = refused_verify(app, [kms_call(key, "Decrypt")])

    check = checks_of(refused)["S3 bucket pipeline-bad"]
    assert check["status"] == "not_checked"
    assert "AccessDenied" in check["reason"]
    assert [r.guard for r in refused.unmet] == ["resources_name_key"]
    assert "S3 bucket pipeline-bad (not checked)" in refused.unmet[0].reason
    assert app.store.open_run("prod").state == "configured"  # type: ignore[union-attr]


@contextmanager
def kinesis_access_denied(app: App) -> Iterator[None]:
    stubber = Stubber(app.aws().client("kinesis", REGION))
    stubber.add_client_error(
        "describe_stream_summary",
        "AccessDeniedException",
        "User is not authorized to perform: kinesis:DescribeStreamSummary",
        400,
    )
    stubber.activate()
    try:
        yield
    finally:
        stubber.deactivate()


def test_verify_refused_while_any_resource_unreadable(app: App) -> None:
    """A bucket that names the key does not outweigh a stream that cannot be read."""
    key = onboarded_key(app)
    set_environment_resources(
        app, "prod", s3_buckets=[LISTED_BUCKET], kinesis_streams=["good"]
    )

    with kinesis_access_denied(app):
        refused = refused_verify(app, [kms_call(key, "Decrypt")])

    checks = checks_of(refused)
    assert checks[f"S3 bucket {LISTED_BUCKET}"]["status"] == "passed"
    assert checks["Kinesis stream good"]["status"] == "not_checked"
    assert [r.guard for r in refused.unmet] == ["resources_name_key"]
    assert "Kinesis stream good (not checked)" in refused.unmet[0].reason


@pytest.mark.parametrize(
    ("options", "subject", "code"),
    [
        (
            {"s3_buckets": [LISTED_BUCKET, "prod-missing-bucket"]},
            "S3 bucket prod-missing-bucket",
            "NoSuchBucket",
        ),
        (
            {"s3_buckets": [LISTED_BUCKET], "kinesis_streams": ["prod-missing"]},
            "Kinesis stream prod-missing",
            "ResourceNotFoundException",
        ),
        (
            {"s3_buckets": [LISTED_BUCKET], "sqs_queues": [MISSING_QUEUE]},
            f"SQS queue {MISSING_QUEUE}",
            "NonExistentQueue",
        ),
    ],
    ids=["bucket", "stream", "queue"],
)
def test_verify_fails_for_missing_resource(
    app: App, options: dict[str, list[str]], subject: str, code: str
) -> None:
    key = onboarded_key(app)
    set_environment_resources(app, "prod", **options)  # type: ignore[arg-type]

    refused = refused_verify(app, [kms_call(key, "Decrypt")])

    check = checks_of(refused)[subject]
    reason = refused.unmet[0].reason
    assert [r.guard for r in refused.unmet] == ["resources_name_key"]
    assert f"{subject} (failed): not found" in reason
    assert check["status"] == "failed"
    assert code in check["reason"]
    assert "kmsguard env set-resources prod --s3-bucket" in check["reason"]
    assert f"--s3-bucket {LISTED_BUCKET}" in check["reason"]
    assert "or create the" in check["reason"]
    assert checks_of(refused)[f"S3 bucket {LISTED_BUCKET}"]["status"] == "passed"


def test_set_resources_command_repeats_every_list() -> None:
    resources = Resources(
        s3_buckets=("prod-missing-bucket", LISTED_BUCKET),
        kinesis_streams=("good",),
        sqs_queues=(MISSING_QUEUE,),
        profile="pipeline-readonly",
    )

    command = set_resources_command(
        "prod", resources, replace=[("s3_bucket", "prod-missing-bucket")]
    )

    assert command == (
        f"kmsguard env set-resources prod --s3-bucket NAME --s3-bucket "
        f"{LISTED_BUCKET} --kinesis-stream good --sqs-queue {MISSING_QUEUE} "
        "--resource-profile pipeline-readonly"
    )


def test_set_resources_command_replaces_every_missing() -> None:
    resources = Resources(
        s3_buckets=("prod-missing-bucket", LISTED_BUCKET),
        sqs_queues=(MISSING_QUEUE,),
    )
    missing = [("s3_bucket", "prod-missing-bucket"), ("sqs_queue", MISSING_QUEUE)]

    command = set_resources_command("prod", resources, replace=missing)

    assert command == (
        f"kmsguard env set-resources prod --s3-bucket NAME --s3-bucket "
        f"{LISTED_BUCKET} --sqs-queue URL"
    )


def test_set_resources_command_adds_placeholders() -> None:
    command = set_resources_command(
        "prod", Resources(kinesis_streams=("good",)), add=["s3", "sqs"]
    )

    assert command == (
        "kmsguard env set-resources prod --s3-bucket NAME --kinesis-stream good "
        "--sqs-queue URL"
    )


def test_verify_skips_components_not_requested(app: App, kms: Any) -> None:
    drive_onboarding(app, "policy_applied")
    app.step(ONBOARDING, "share", "prod", {"ticket": "SUP-4", "components": "s3"})
    app.step(ONBOARDING, "confirm", "prod", {"ticket": "SUP-4", "confirmed_by": "Sam"})
    run = app.store.open_run("prod")
    assert run is not None and run.new_key_arn
    other = create_key(kms, Description="queue key")
    names = make_resources(
        app.aws(), {"s3": run.new_key_arn, "kinesis": other, "sqs": other}
    )
    list_resources(app, names)

    result = verify(app, [kms_call(run.new_key_arn, "Decrypt")])

    checks = checks_by_subject(result)
    assert result.run.state == "verified"
    assert checks["S3 bucket pipeline-enriched"]["status"] == "passed"
    assert checks["Kinesis stream good"]["status"] == "skipped"
    assert (
        "not among the components requested"
        in (checks["Kinesis stream good"]["reason"])
    )
    assert checks[f"SQS queue {names['queue']}"]["status"] == "skipped"


def test_verify_fails_with_only_unrequested_components(app: App) -> None:
    drive_onboarding(app, "policy_applied")
    app.step(ONBOARDING, "share", "prod", {"ticket": "SUP-4", "components": "s3"})
    app.step(ONBOARDING, "confirm", "prod", {"ticket": "SUP-4", "confirmed_by": "Sam"})
    run = app.store.open_run("prod")
    assert run is not None and run.new_key_arn
    names = make_resources(
        app.aws(), {"s3": run.new_key_arn, "kinesis": run.new_key_arn, "sqs": "x"}
    )
    set_environment_resources(app, "prod", kinesis_streams=[names["stream"]])

    refused = refused_verify(app, [kms_call(run.new_key_arn, "Decrypt")])

    checks = checks_of(refused)
    reason = checks["pipeline resources"]["reason"]
    assert checks["pipeline resources"]["status"] == "failed"
    assert checks["Kinesis stream good"]["status"] == "skipped"
    assert "lists no resource of the components requested from support (s3)" in (reason)
    assert (
        "`kmsguard env set-resources prod --s3-bucket NAME --kinesis-stream good`"
        in reason
    )


def test_verify_passes_with_every_resource_encrypted(app: App) -> None:
    key = onboarded_key(app)
    names = make_resources(app.aws(), {"s3": key, "kinesis": key, "sqs": key})
    list_resources(app, names)

    result = verify(app, [kms_call(key, "Decrypt")])

    statuses = [c["status"] for c in checks_by_subject(result).values()]
    assert result.run.state == "verified"
    assert statuses == ["passed", "passed", "passed", "passed"]
    assert result.event.outcome == "applied"


@pytest.mark.parametrize(
    "resources",
    [{"s3_buckets": ["prod-missing-bucket"]}, None],
    ids=["missing-bucket", "no-resources"],
)
def test_verify_failure_records_only_refusal(
    app: App, db_path: Path, resources: dict[str, list[str]] | None
) -> None:
    key = onboarded_key(app, list_bucket=False)
    if resources:
        set_environment_resources(app, "prod", **resources)  # type: ignore[arg-type]
    run = app.store.open_run("prod")
    assert run is not None
    events_before = app.store.run_events(run.id)
    before = snapshot(db_path)

    refused_verify(app, [kms_call(key, "Decrypt")])

    after = snapshot(db_path)
    stored = app.store.get_run(run.id)
    events = app.store.run_events(run.id)
    # A refusal appends one event, so the run's head hash and the chain head
    # follow it. Nothing else changes.
    unchanged = [t for t in before if t not in ("events", "runs", "chain_head")]
    assert replace(stored, head_hash="") == replace(run, head_hash="")
    assert events[:-1] == events_before
    assert len(after["events"]) == len(before["events"]) + 1
    assert events[-1].step == "verify"
    assert events[-1].outcome == "refused"
    assert events[-1].evidence["verification"]["passed"] is False
    assert stored.head_hash == events[-1].hash
    assert after["chain_head"] == [(1, events[-1].id, events[-1].hash)]
    assert [after[t] for t in unchanged] == [before[t] for t in unchanged]
    assert app.verify()["ok"] is True
