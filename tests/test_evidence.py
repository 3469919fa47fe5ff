"""Tests of the key-usage evidence report.

S3, Kinesis, SQS and KMS run in moto's mock_aws. moto 5.2 does not implement
CloudTrail LookupEvents, so the CloudTrail client is wrapped in
botocore.stub.Stubber: each test queues the DescribeTrails, GetEventSelectors
and LookupEvents responses (and throttling errors) that AWS would return, and
Stubber checks the request parameters and the response shapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber
from moto import mock_aws

from kmsguard.workflow.aws import AwsSession, AwsSettings
from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.evidence import (
    OUTCOME_IN_USE,
    OUTCOME_INSUFFICIENT,
    OUTCOME_NO_USE_SEEN,
    Resources,
    UsageReport,
    events_since,
    format_report_lines,
    gather_usage_report,
)
from kmsguard.workflow.evidence_cloudtrail import delivery_delay, retry_after
from kmsguard.workflow.evidence_resources import queue_region

REGION = "eu-west-1"
KEY_ACCOUNT = "123456789012"  # moto's account
PIPELINE_ACCOUNT = "111122223333"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIRMED = NOW - timedelta(days=30)
TRAIL_ARN = f"arn:aws:cloudtrail:{REGION}:{KEY_ACCOUNT}:trail/audit"
STREAM_GOOD = f"arn:aws:kinesis:{REGION}:{PIPELINE_ACCOUNT}:stream/good"
STREAM_ENRICHED = f"arn:aws:kinesis:{REGION}:{PIPELINE_ACCOUNT}:stream/enriched"


@dataclass(frozen=True)
class Keys:
    old_arn: str
    old_id: str
    new_arn: str


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDTRAIL"):
        monkeypatch.delenv(name, raising=False)
    # The tests assume CloudTrail's default delivery delay of 20 minutes.
    monkeypatch.delenv("KMSGUARD_CLOUDTRAIL_DELAY", raising=False)


@pytest.fixture(scope="module")
def shared_aws() -> Iterator[AwsSession]:
    # One session, and so one set of boto3 clients, for the whole module,
    # because building a client takes about 0.1 s with boto3 1.44. mock_aws
    # still resets the AWS state for each test.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield AwsSession(AwsSettings())


@pytest.fixture
def aws(shared_aws: AwsSession) -> Iterator[AwsSession]:
    with mock_aws():
        yield shared_aws


@pytest.fixture
def keys(aws: AwsSession) -> Keys:
    kms = aws.client("kms", REGION)
    old = kms.create_key(Description="old")["KeyMetadata"]
    new = kms.create_key(Description="new")["KeyMetadata"]
    kms.create_alias(AliasName="alias/pipeline-old", TargetKeyId=old["KeyId"])
    return Keys(old["Arn"], old["KeyId"], new["Arn"])


class CloudTrailStub:
    """Queue CloudTrail responses on the session's cached CloudTrail client."""

    def __init__(self, aws: AwsSession, key_arn: str) -> None:
        self.key_arn = key_arn
        self.stubber = Stubber(aws.client("cloudtrail", REGION))
        self.stubber.activate()

    def no_trails(self) -> None:
        self.stubber.add_response(
            "describe_trails", {"trailList": []}, {"includeShadowTrails": True}
        )

    def trail(self, selector: dict[str, Any]) -> None:
        trail = {"Name": "audit", "TrailARN": TRAIL_ARN, "HomeRegion": REGION}
        self.stubber.add_response(
            "describe_trails", {"trailList": [trail]}, {"includeShadowTrails": True}
        )
        self.stubber.add_response(
            "get_event_selectors",
            {"TrailARN": TRAIL_ARN, "EventSelectors": [selector]},
            {"TrailName": TRAIL_ARN},
        )

    def page(
        self,
        events: list[dict[str, Any]],
        *,
        token: str | None = None,
        next_token: str | None = None,
        start: datetime = NOW - timedelta(days=7),
    ) -> None:
        expected: dict[str, Any] = {
            "LookupAttributes": [
                {"AttributeKey": "ResourceName", "AttributeValue": self.key_arn}
            ],
            "StartTime": start,
            # The scan reads up to now: events of the last 20 minutes count
            # as use when they have arrived.
            "EndTime": NOW,
            "MaxResults": 50,
        }
        if token:
            expected["NextToken"] = token
        response: dict[str, Any] = {"Events": events}
        if next_token:
            response["NextToken"] = next_token
        self.stubber.add_response("lookup_events", response, expected)

    def throttle(self, times: int) -> None:
        for _ in range(times):
            self.stubber.add_client_error(
                "lookup_events", "ThrottlingException", "Rate exceeded", 400
            )


@pytest.fixture
def cloudtrail(aws: AwsSession, keys: Keys) -> Iterator[CloudTrailStub]:
    stub = CloudTrailStub(aws, keys.old_arn)
    yield stub
    stub.stubber.deactivate()
    stub.stubber.assert_no_pending_responses()


def kms_event(
    key_arn: str,
    name: str,
    *,
    minutes_ago: int = 60,
    account: str = PIPELINE_ACCOUNT,
    context: dict[str, str] | None = None,
    error: str | None = None,
    user_agent: str = "aws-sdk-java/2.20",
    caller_arn: str | None = None,
) -> dict[str, Any]:
    """Return one LookupEvents entry for a KMS call on `key_arn`."""
    when = NOW - timedelta(minutes=minutes_ago)
    record: dict[str, Any] = {
        "eventVersion": "1.08",
        "eventID": f"{name}-{minutes_ago}",
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "kms.amazonaws.com",
        "eventName": name,
        "userIdentity": {
            "type": "AssumedRole",
            "accountId": account,
            "arn": caller_arn or f"arn:aws:sts::{account}:assumed-role/sp-enrich/i-1",
        },
        "recipientAccountId": KEY_ACCOUNT,
        "userAgent": user_agent,
        "requestParameters": {"keyId": key_arn, "encryptionContext": context or {}},
        "readOnly": True,
    }
    if error:
        record["errorCode"] = error
    return {
        "EventId": record["eventID"],
        "EventName": name,
        "EventTime": when,
        "EventSource": "kms.amazonaws.com",
        "Resources": [{"ResourceType": "AWS::KMS::Key", "ResourceName": key_arn}],
        "CloudTrailEvent": json.dumps(record),
    }


def gather(
    aws: AwsSession, keys: Keys, resources: Resources | None = None, **options: Any
) -> UsageReport:
    options.setdefault("confirmed_at", CONFIRMED)
    options.setdefault("sleep", lambda seconds: None)
    return gather_usage_report(
        aws,
        region=REGION,
        key_arn=keys.old_arn,
        resources=resources or Resources(),
        now=NOW,
        **options,
    )


def make_bucket(aws: AwsSession, name: str, default_key_arn: str) -> None:
    s3 = aws.client("s3", REGION)
    s3.create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": default_key_arn,
                    }
                }
            ]
        },
    )


def put_object(aws: AwsSession, bucket: str, key: str, key_id: str, size: int) -> None:
    aws.client("s3", REGION).put_object(
        Bucket=bucket,
        Key=key,
        Body=b"x" * size,
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=key_id,
    )


def make_stream(aws: AwsSession, name: str, key_id: str) -> None:
    kinesis = aws.client("kinesis", REGION)
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key_id)


def make_queue(
    aws: AwsSession, name: str, key_id: str, retention_s: int = 345600
) -> str:
    attributes = {"KmsMasterKeyId": key_id, "MessageRetentionPeriod": str(retention_s)}
    answer = aws.client("sqs", REGION).create_queue(
        QueueName=name, Attributes=attributes
    )
    return str(answer["QueueUrl"])


def test_bucket_old_object_under_new_default_in_use(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    make_bucket(aws, "pipeline-archive", keys.new_arn)
    put_object(aws, "pipeline-archive", "enriched/2026/01/part-1.gz", keys.old_arn, 10)
    put_object(aws, "pipeline-archive", "enriched/2026/01/part-2.gz", keys.old_id, 5)
    put_object(aws, "pipeline-archive", "enriched/2026/03/part-3.gz", keys.new_arn, 7)
    cloudtrail.no_trails()
    cloudtrail.page([])

    report = gather(aws, keys, Resources(s3_buckets=("pipeline-archive",)))

    objects = report.source("s3_objects")
    prefix = next(f for f in objects.findings if f.get("prefix") == "enriched/")
    assert report.outcome == OUTCOME_IN_USE
    assert report.source("resource_references").status == "clear"
    assert objects.status == "in_use"
    assert prefix["objects_under_key"] == 2
    assert prefix["bytes_under_key"] == 15
    assert any("pipeline-archive" in line for line in format_report_lines(report))


def test_sqs_queue_alias_name_reference_in_use(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    url = make_queue(aws, "good", "alias/pipeline-old")
    cloudtrail.no_trails()
    cloudtrail.page([])

    report = gather(aws, keys, Resources(sqs_queues=(url,)))

    references = report.source("resource_references")
    finding = next(f for f in references.findings if "resource" in f)
    assert report.outcome == OUTCOME_IN_USE
    assert references.status == "in_use"
    assert finding["key_references"][0]["key_arn"] == keys.old_arn
    assert "alias/pipeline-old" in references.reasons[0]


def test_kinesis_stream_key_id_reference_in_use(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    make_stream(aws, "enriched", keys.old_id)
    cloudtrail.no_trails()
    cloudtrail.page([])

    report = gather(aws, keys, Resources(kinesis_streams=("enriched",)))

    references = report.source("resource_references")
    assert report.outcome == OUTCOME_IN_USE
    assert references.status == "in_use"
    assert "Kinesis stream enriched" in references.reasons[0]


def test_clean_environment_no_use_seen(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    make_bucket(aws, "pipeline-archive", keys.new_arn)
    put_object(aws, "pipeline-archive", "enriched/part-1.gz", keys.new_arn, 3)
    make_stream(aws, "good", keys.new_arn)
    url = make_queue(aws, "good", keys.new_arn)
    describe = kms_event(keys.old_arn, "DescribeKey")
    cloudtrail.no_trails()
    cloudtrail.page([describe], next_token="page-2")
    cloudtrail.page([], token="page-2")
    sleeps: list[float] = []
    resources = Resources(
        s3_buckets=("pipeline-archive",), kinesis_streams=("good",), sqs_queues=(url,)
    )

    report = gather(aws, keys, resources, sleep=sleeps.append)

    assert report.outcome == OUTCOME_NO_USE_SEEN
    assert [s.status for s in report.sources] == ["clear"] * 5
    assert report.gaps == []
    assert sleeps == [0.5]
    assert report.earliest_out_of_use == (CONFIRMED + timedelta(days=4)).isoformat()
    assert json.loads(json.dumps(report.to_dict()))["outcome"] == "no_use_seen"


def test_empty_resource_lists_clear_with_notes(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    cloudtrail.no_trails()
    cloudtrail.page([])

    report = gather(aws, keys)

    notes = [f["note"] for f in report.source("resource_references").findings]
    assert report.outcome == OUTCOME_NO_USE_SEEN
    assert "no S3 buckets listed for the environment" in notes
    assert "no SQS queues listed for the environment" in notes


def test_throttled_cloudtrail_scan_insufficient(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    cloudtrail.no_trails()
    cloudtrail.page([], next_token="page-2")
    cloudtrail.throttle(6)
    sleeps: list[float] = []

    report = gather(aws, keys, sleep=sleeps.append)

    trail = report.source("cloudtrail")
    assert report.outcome == OUTCOME_INSUFFICIENT
    assert trail.status == "incomplete"
    assert "stopped after 1 page(s)" in trail.gaps[0]
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]


def test_throttled_page_retried_then_complete(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    cloudtrail.no_trails()
    cloudtrail.throttle(2)
    cloudtrail.page([])
    sleeps: list[float] = []

    report = gather(aws, keys, sleep=sleeps.append)

    assert report.outcome == OUTCOME_NO_USE_SEEN
    assert sleeps == [1.0, 2.0]


def test_trail_excluding_kms_events_insufficient(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    cloudtrail.trail(
        {
            "ReadWriteType": "All",
            "IncludeManagementEvents": True,
            "ExcludeManagementEventSources": ["kms.amazonaws.com"],
        }
    )
    cloudtrail.page([])

    report = gather(aws, keys)

    trail = report.source("cloudtrail")
    assert report.outcome == OUTCOME_INSUFFICIENT
    assert trail.status == "incomplete"
    assert "trail audit excludes KMS events" in trail.gaps[0]


def test_trail_logging_kms_events_complete(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    cloudtrail.trail({"ReadWriteType": "All", "IncludeManagementEvents": True})
    cloudtrail.page([])

    report = gather(aws, keys)

    assert report.outcome == OUTCOME_NO_USE_SEEN


def test_write_only_trail_insufficient(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    cloudtrail.trail({"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True})
    cloudtrail.page([])

    report = gather(aws, keys)

    assert report.outcome == OUTCOME_INSUFFICIENT
    assert "write events only" in report.source("cloudtrail").gaps[0]


def test_describe_trails_failure_only_noted(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    cloudtrail.stubber.add_client_error(
        "describe_trails", "AccessDeniedException", "not allowed", 400
    )
    cloudtrail.page([])

    report = gather(aws, keys)

    notes = [f.get("note", "") for f in report.source("cloudtrail").findings]
    assert report.outcome == OUTCOME_NO_USE_SEEN
    assert any("trail settings were not checked" in note for note in notes)


def test_lookback_shorter_than_retention_insufficient(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    fourteen_days = 14 * 24 * 3600
    url = make_queue(aws, "bad", keys.new_arn, retention_s=fourteen_days)
    cloudtrail.no_trails()
    cloudtrail.page([])

    report = gather(aws, keys, Resources(sqs_queues=(url,)))

    trail = report.source("cloudtrail")
    assert report.outcome == OUTCOME_INSUFFICIENT
    assert report.source("retention").status == "clear"
    assert trail.status == "incomplete"
    assert "keeps records for 336 h" in trail.gaps[0]


def test_lookback_over_90_days_insufficient(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    cloudtrail.no_trails()
    cloudtrail.page([], start=NOW - timedelta(days=90))

    report = gather(aws, keys, lookback=timedelta(days=120))

    assert report.outcome == OUTCOME_INSUFFICIENT
    assert "keeps only 90 days" in report.source("cloudtrail").gaps[0]


def test_decrypt_grouped_by_encryption_context(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    good = {"aws:kinesis:arn": STREAM_GOOD}
    enriched = {"aws:kinesis:arn": STREAM_ENRICHED}
    cloudtrail.no_trails()
    cloudtrail.page(
        [
            kms_event(keys.old_arn, "Decrypt", minutes_ago=30, context=good),
            kms_event(keys.old_arn, "Decrypt", minutes_ago=90, context=enriched),
            kms_event(keys.old_arn, "Decrypt", minutes_ago=120, context=good),
            kms_event(keys.old_arn, "GenerateDataKey", minutes_ago=150, context=good),
        ]
    )

    report = gather(aws, keys)

    groups = [f for f in report.source("cloudtrail").findings if "event_name" in f]
    newest = groups[0]
    lines = format_report_lines(report)
    assert report.outcome == OUTCOME_IN_USE
    assert len(groups) == 3
    assert newest["event_name"] == "Decrypt"
    assert newest["account"] == PIPELINE_ACCOUNT
    assert newest["encryption_context"] == good
    assert newest["events"] == 2
    assert newest["latest"] == (NOW - timedelta(minutes=30)).isoformat()
    assert STREAM_GOOD in lines[lines.index("CloudTrail: in_use") + 1]


def test_own_calls_ignored(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    operator_arn = f"arn:aws:sts::{KEY_ACCOUNT}:assumed-role/KeyAdmin/alice"
    cloudtrail.no_trails()
    cloudtrail.page(
        [
            kms_event(keys.old_arn, "Encrypt", user_agent="Boto3/1.44 kmsguard"),
            kms_event(keys.old_arn, "Decrypt", caller_arn=operator_arn),
        ]
    )

    report = gather(aws, keys, own_caller_arns={operator_arn})

    summary = report.source("cloudtrail").findings[0]
    assert report.outcome == OUTCOME_NO_USE_SEEN
    assert summary["own_calls_ignored"] == 2


def test_disabled_exception_counts_as_use(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    cloudtrail.no_trails()
    cloudtrail.page([kms_event(keys.old_arn, "Decrypt", error="DisabledException")])

    report = gather(aws, keys)

    group = report.source("cloudtrail").findings[1]
    assert report.outcome == OUTCOME_IN_USE
    assert group["error_codes"] == {"DisabledException": 1}
    assert "DisabledException" in report.reasons[0]


def test_max_objects_cut_short_insufficient(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    make_bucket(aws, "pipeline-archive", keys.new_arn)
    for index in range(3):
        put_object(aws, "pipeline-archive", f"batch/{index}", keys.new_arn, 1)
    cloudtrail.no_trails()
    cloudtrail.page([])

    report = gather(
        aws, keys, Resources(s3_buckets=("pipeline-archive",)), max_objects=2
    )

    objects = report.source("s3_objects")
    assert report.outcome == OUTCOME_INSUFFICIENT
    assert objects.status == "incomplete"
    assert "max_objects (2)" in objects.gaps[0]


def test_max_objects_exactly_reached_complete(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    make_bucket(aws, "pipeline-archive", keys.new_arn)
    for index in range(2):
        put_object(aws, "pipeline-archive", f"batch/{index}", keys.new_arn, 1)
    cloudtrail.no_trails()
    cloudtrail.page([])

    report = gather(
        aws, keys, Resources(s3_buckets=("pipeline-archive",)), max_objects=2
    )

    assert report.outcome == OUTCOME_NO_USE_SEEN


def test_grant_on_key_in_use(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    aws.client("kms", REGION).create_grant(
        KeyId=keys.old_arn,
        GranteePrincipal=f"arn:aws:iam::{PIPELINE_ACCOUNT}:root",
        Operations=["Decrypt", "GenerateDataKey"],
        Name="kinesis-enriched",
    )
    cloudtrail.no_trails()
    cloudtrail.page([])

    report = gather(aws, keys)

    grants = report.source("grants")
    assert report.outcome == OUTCOME_IN_USE
    assert grants.findings[0]["name"] == "kinesis-enriched"
    assert grants.findings[0]["operations"] == ["Decrypt", "GenerateDataKey"]


def test_retention_after_recent_confirmation_in_use(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    make_stream(aws, "good", keys.new_arn)
    confirmed = NOW - timedelta(hours=1)
    cloudtrail.no_trails()
    cloudtrail.page([])

    report = gather(
        aws, keys, Resources(kinesis_streams=("good",)), confirmed_at=confirmed
    )

    earliest = (confirmed + timedelta(hours=24)).isoformat()
    assert report.outcome == OUTCOME_IN_USE
    assert report.source("retention").status == "in_use"
    assert report.earliest_out_of_use == earliest
    assert earliest in report.source("retention").reasons[0]
    assert earliest in format_report_lines(report)[-1]


def test_retention_without_confirmation_insufficient(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    make_stream(aws, "good", keys.new_arn)
    cloudtrail.no_trails()
    cloudtrail.page([])

    report = gather(aws, keys, Resources(kinesis_streams=("good",)), confirmed_at=None)

    assert report.outcome == OUTCOME_INSUFFICIENT
    assert report.source("retention").status == "incomplete"
    assert report.earliest_out_of_use is None


def test_unreadable_resources_are_gaps(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    missing_queue = f"https://sqs.{REGION}.amazonaws.com/{KEY_ACCOUNT}/missing"
    cloudtrail.no_trails()
    cloudtrail.page([])
    resources = Resources(
        s3_buckets=("no-such-bucket",),
        kinesis_streams=("no-such-stream",),
        sqs_queues=(missing_queue,),
    )

    report = gather(aws, keys, resources)

    references = report.source("resource_references")
    assert report.outcome == OUTCOME_INSUFFICIENT
    assert references.status == "incomplete"
    assert len(references.gaps) == 3
    assert "NoSuchBucket" in references.gaps[0]


def test_progress_reports_each_source(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    make_bucket(aws, "pipeline-archive", keys.new_arn)
    put_object(aws, "pipeline-archive", "a", keys.new_arn, 1)
    cloudtrail.no_trails()
    cloudtrail.page([])
    calls: list[tuple[str, int, int | None]] = []

    gather(
        aws,
        keys,
        Resources(s3_buckets=("pipeline-archive",)),
        progress=lambda *call: calls.append(call),
    )

    assert ("resources", 1, 1) in calls
    assert ("s3_objects", 1, 1) in calls
    assert ("cloudtrail", 1, None) in calls


def test_key_in_other_region_rejected(aws: AwsSession, keys: Keys) -> None:
    with pytest.raises(InvalidInput, match="us-east-1"):
        gather_usage_report(
            aws, region="us-east-1", key_arn=keys.old_arn, resources=Resources()
        )


def test_malformed_queue_url_rejected(aws: AwsSession, keys: Keys) -> None:
    with pytest.raises(InvalidInput, match="invalid SQS queue URL"):
        gather(aws, keys, Resources(sqs_queues=("good-queue",)))


def test_events_since_returns_use(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    since = NOW - timedelta(hours=3)
    cloudtrail.no_trails()
    cloudtrail.page(
        [kms_event(keys.old_arn, "Decrypt", error="DisabledException")], start=since
    )

    scan = events_since(aws, region=REGION, key_arn=keys.old_arn, since=since, now=NOW)

    assert scan.complete
    assert [event.event_name for event in scan.events] == ["Decrypt"]
    assert scan.events[0].error_code == "DisabledException"


def test_events_since_undelivered_window_incomplete(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    cloudtrail.no_trails()

    scan = events_since(
        aws,
        region=REGION,
        key_arn=keys.old_arn,
        since=NOW - timedelta(minutes=5),
        now=NOW,
    )

    assert not scan.complete
    assert scan.pages == 0
    assert "may not have reached CloudTrail yet" in scan.gaps[0]


# CloudTrail's delivery delay after support's confirmation


def test_recent_confirmation_insufficient(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    """Calls in the 5 minutes since the confirmation may not be delivered yet."""
    cloudtrail.no_trails()
    cloudtrail.page([])
    retry = (NOW + timedelta(minutes=15)).isoformat()

    report = gather(aws, keys, confirmed_at=NOW - timedelta(minutes=5))

    trail = report.source("cloudtrail")
    assert report.outcome == OUTCOME_INSUFFICIENT
    assert trail.status == "incomplete"
    assert "may not have reached CloudTrail yet" in trail.gaps[0]
    assert f"wait until {retry} before disabling the key" in trail.gaps[0]
    assert retry_after(trail) == retry


def test_recent_confirmation_use_delivered_in_use(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    """A call since the confirmation that has arrived counts as use at once."""
    cloudtrail.no_trails()
    cloudtrail.page([kms_event(keys.old_arn, "Decrypt", minutes_ago=1)])

    report = gather(aws, keys, confirmed_at=NOW - timedelta(minutes=5))

    assert report.outcome == OUTCOME_IN_USE
    assert report.source("cloudtrail").status == "in_use"


def test_confirmation_older_than_delay_complete(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    """At `now` 20 minutes after the confirmation, no wait is left."""
    cloudtrail.no_trails()
    cloudtrail.page([])

    report = gather(aws, keys, confirmed_at=NOW - timedelta(minutes=20))

    assert report.outcome == OUTCOME_NO_USE_SEEN
    assert retry_after(report.source("cloudtrail")) is None


def test_no_confirmation_no_delivery_gap(
    aws: AwsSession, keys: Keys, cloudtrail: CloudTrailStub
) -> None:
    """`kmsguard evidence` with no confirmation waits for no delivery."""
    cloudtrail.no_trails()
    cloudtrail.page([])

    report = gather(aws, keys, confirmed_at=None)

    assert report.source("cloudtrail").status == "clear"
    assert retry_after(report.source("cloudtrail")) is None


def test_zero_delay_variable_recent_confirmation_complete(
    aws: AwsSession,
    keys: Keys,
    cloudtrail: CloudTrailStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KMSGUARD_CLOUDTRAIL_DELAY", "0")
    cloudtrail.no_trails()
    cloudtrail.page([])

    report = gather(aws, keys, confirmed_at=NOW - timedelta(seconds=1))

    findings = report.source("cloudtrail").findings
    assert report.outcome == OUTCOME_NO_USE_SEEN
    assert findings[0]["delivery_delay_seconds"] == 0
    assert findings[0]["retry_after"] is None


def test_delay_variable_sets_wait(
    aws: AwsSession,
    keys: Keys,
    cloudtrail: CloudTrailStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KMSGUARD_CLOUDTRAIL_DELAY", "90")
    cloudtrail.no_trails()
    cloudtrail.page([])

    report = gather(aws, keys, confirmed_at=NOW - timedelta(seconds=60))

    gap = report.source("cloudtrail").gaps[0]
    assert "up to 90 seconds late" in gap
    assert f"until {(NOW + timedelta(seconds=30)).isoformat()}" in gap


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("", 1200), ("0", 0), (" 90 ", 90), ("3600", 3600)],
    ids=["unset", "zero", "spaces", "maximum"],
)
def test_delay_variable_accepted(
    monkeypatch: pytest.MonkeyPatch, value: str, seconds: int
) -> None:
    monkeypatch.setenv("KMSGUARD_CLOUDTRAIL_DELAY", value)

    assert delivery_delay() == timedelta(seconds=seconds)


@pytest.mark.parametrize("value", ["soon", "-1", "3601", "1.5", "20m", "1e3"])
def test_delay_variable_rejected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("KMSGUARD_CLOUDTRAIL_DELAY", value)

    with pytest.raises(InvalidInput) as rejected:
        delivery_delay()

    assert f"KMSGUARD_CLOUDTRAIL_DELAY={value!r}" in str(rejected.value)
    assert "from 0 to 3600 (default 1200)" in str(rejected.value)


def test_bad_delay_variable_rejects_report(
    aws: AwsSession, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMSGUARD_CLOUDTRAIL_DELAY", "soon")

    with pytest.raises(InvalidInput, match="KMSGUARD_CLOUDTRAIL_DELAY='soon'"):
        gather(aws, keys)


def test_presence_only_scan_ignores_delay_variable(
    aws: AwsSession,
    keys: Keys,
    cloudtrail: CloudTrailStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scan that looks only for arrived calls needs no delay."""
    since = NOW - timedelta(minutes=5)
    monkeypatch.setenv("KMSGUARD_CLOUDTRAIL_DELAY", "soon")
    cloudtrail.no_trails()
    cloudtrail.page([], start=since)

    scan = events_since(
        aws,
        region=REGION,
        key_arn=keys.old_arn,
        since=since,
        now=NOW,
        presence_only=True,
    )

    assert scan.complete


@pytest.mark.parametrize(
    ("url", "region"),
    [
        (
            "https://sqs.ap-southeast-2.amazonaws.com/111122223333/good",
            "ap-southeast-2",
        ),
        ("https://us-west-2.queue.amazonaws.com/111122223333/good", "us-west-2"),
        ("https://queue.amazonaws.com/111122223333/good", "us-east-1"),
        ("http://127.0.0.1:5000/111122223333/good", REGION),
    ],
    ids=["sqs-host", "legacy-host", "legacy-us-east-1", "local-endpoint"],
)
def test_queue_region_from_url(url: str, region: str) -> None:
    assert queue_region(url, REGION) == region


def test_malformed_stream_arn_rejected(aws: AwsSession, keys: Keys) -> None:
    with pytest.raises(InvalidInput, match="invalid Kinesis stream ARN"):
        gather(aws, keys, Resources(kinesis_streams=("arn:aws:kinesis:good",)))
