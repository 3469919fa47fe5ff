"""Onboarding verify: CloudTrail evidence of pipeline use, and the resources' keys.

moto 5.2 does not implement CloudTrail LookupEvents, so every test answers
DescribeTrails and LookupEvents with botocore.stub.Stubber on the session's
CloudTrail client (it checks the response shapes). S3, Kinesis, SQS and KMS run
in moto. One test also stubs S3 with Stubber, to return the AccessDenied that
an operator without read access gets.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber
from conftest import REGION, create_key
from procedure_drivers import ONBOARDING, drive_onboarding, kms_call, stub_cloudtrail

from kmsguard.workflow.app import App
from kmsguard.workflow.engine import StepResult
from kmsguard.workflow.environment_resources import set_environment_resources
from kmsguard.workflow.errors import Refused

OTHER_ACCOUNT = "999988887777"


def onboarded_key(app: App) -> str:
    drive_onboarding(app, "configured")
    run = app.store.open_run("prod")
    assert run is not None and run.new_key_arn
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


def test_verify_passes_with_pipeline_calls(app: App) -> None:
    key = onboarded_key(app)

    result = verify(app, [kms_call(key, "Decrypt"), kms_call(key, "GenerateDataKey")])

    checks = checks_by_subject(result)
    assert result.run.state == "verified"
    assert checks["CloudTrail"]["status"] == "passed"
    assert "Decrypt x1, GenerateDataKey x1" in checks["CloudTrail"]["reason"]
    assert "210987654321" in checks["CloudTrail"]["reason"]


def test_verify_shows_unlisted_resources_as_not_checked(app: App) -> None:
    key = onboarded_key(app)

    result = verify(app, [kms_call(key, "Decrypt")])

    checks = checks_by_subject(result)
    assert checks["pipeline resources"]["status"] == "not_checked"
    assert "env set-resources prod" in checks["pipeline resources"]["reason"]
    assert any(line.startswith("not checked: ") for line in result.outcome.notes)


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


def test_verify_reports_unreadable_resource_not_checked(app: App) -> None:
    key = onboarded_key(app)
    set_environment_resources(app, "prod", s3_buckets=["pipeline-bad"])

    with s3_access_denied(app):
        result = verify(app, [kms_call(key, "Decrypt")])

    check = checks_by_subject(result)["S3 bucket pipeline-bad"]
    assert result.run.state == "verified"
    assert check["status"] == "not_checked"
    assert "AccessDenied" in check["reason"]


def test_verify_reports_missing_stream_not_checked(app: App) -> None:
    key = onboarded_key(app)
    set_environment_resources(app, "prod", kinesis_streams=["no-such-stream"])

    result = verify(app, [kms_call(key, "Decrypt")])

    check = checks_by_subject(result)["Kinesis stream no-such-stream"]
    assert check["status"] == "not_checked"
    assert "could not be read" in check["reason"]


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
    assert checks["S3 bucket pipeline-enriched"]["status"] == "passed"
    assert checks["Kinesis stream good"]["status"] == "not_checked"
    assert (
        "not among the components requested"
        in (checks["Kinesis stream good"]["reason"])
    )
    assert checks[f"SQS queue {names['queue']}"]["status"] == "not_checked"
