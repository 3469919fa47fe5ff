"""Tests of `kmsguard doctor`: keys, policies, failed calls, stuck runs, permissions.

KMS and STS run in moto's mock_aws. moto 5.2 does not implement CloudTrail
LookupEvents, so in process the session's CloudTrail client is wrapped in
botocore.stub.Stubber, which returns DescribeTrails and LookupEvents (or an
AccessDeniedException) as AWS would, and checks the time window requested.
The subprocess tests use the local CloudTrail server of tests/conftest.py.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber
from conftest import (
    OWN_ACCOUNT,
    PIPELINE_ACCOUNT,
    REGION,
    Cli,
    create_key,
    drive_rotation,
    snapshot,
)
from procedure_drivers import add_environment

from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App
from kmsguard.workflow.aws import AwsSession
from kmsguard.workflow.doctor import DoctorReport, diagnose
from kmsguard.workflow.doctor_findings import (
    ACCESS_DENIED,
    KEY_UNUSABLE,
    PARTIAL_ENCRYPTION,
    PERMISSIONS,
    STUCK_RUN,
    DoctorFinding,
)
from kmsguard.workflow.doctor_runs import STATE_EXPECTATIONS, stuck_run
from kmsguard.workflow.environment_resources import set_environment_resources
from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.policy import render_key_policy

TERMINAL = ("completed", "cancelled")


class CloudTrailStub:
    """Queue the CloudTrail responses one doctor run reads, key by key."""

    def __init__(self, aws: AwsSession, now: datetime) -> None:
        self.now = now
        self.stubber = Stubber(aws.client("cloudtrail", REGION))
        self.active = False

    def activate(self) -> None:
        # Activated only once the test has driven its run, because the steps
        # read CloudTrail too, from the local CloudTrail server.
        if not self.active:
            self.stubber.activate()
            self.active = True

    def key(self, key_arn: str, events: list[dict[str, Any]] | None = None) -> None:
        self.activate()
        self.stubber.add_response(
            "describe_trails", {"trailList": []}, {"includeShadowTrails": True}
        )
        self.stubber.add_response(
            "lookup_events", {"Events": events or []}, self._lookup(key_arn)
        )

    def denied(self, key_arn: str) -> None:
        self.activate()
        self.stubber.add_response(
            "describe_trails", {"trailList": []}, {"includeShadowTrails": True}
        )
        self.stubber.add_client_error(
            "lookup_events",
            "AccessDeniedException",
            "not authorized to perform cloudtrail:LookupEvents",
            400,
            expected_params=self._lookup(key_arn),
        )

    def _lookup(self, key_arn: str) -> dict[str, Any]:
        return {
            "LookupAttributes": [
                {"AttributeKey": "ResourceName", "AttributeValue": key_arn}
            ],
            "StartTime": self.now - timedelta(hours=1),
            "EndTime": self.now,
            "MaxResults": 50,
        }


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def trail(aws: AwsSession, now: datetime) -> Iterator[CloudTrailStub]:
    stub = CloudTrailStub(aws, now)
    yield stub
    if stub.active:
        stub.stubber.deactivate()
    stub.stubber.assert_no_pending_responses()


def failed_call(
    key_arn: str,
    when: datetime,
    *,
    name: str = "Decrypt",
    error: str = "DisabledException",
    account: str = PIPELINE_ACCOUNT,
) -> dict[str, Any]:
    """Return one LookupEvents entry of a failed KMS call on `key_arn`."""
    record = {
        "eventID": f"{name}-{when.timestamp()}",
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "kms.amazonaws.com",
        "eventName": name,
        "errorCode": error,
        "userIdentity": {
            "type": "AssumedRole",
            "accountId": account,
            "arn": f"arn:aws:sts::{account}:assumed-role/sp-enrich/i-1",
        },
        "userAgent": "aws-sdk-java/2.20",
        "requestParameters": {"keyId": key_arn},
        "resources": [{"ARN": key_arn, "type": "AWS::KMS::Key"}],
    }
    return {
        "EventId": record["eventID"],
        "EventName": name,
        "EventTime": when,
        "EventSource": "kms.amazonaws.com",
        "Resources": [{"ResourceType": "AWS::KMS::Key", "ResourceName": key_arn}],
        "CloudTrailEvent": json.dumps(record),
    }


def give_pipeline_policy(kms: Any, key_arn: str) -> None:
    document = render_key_policy(
        key_account=OWN_ACCOUNT, pipeline_account=PIPELINE_ACCOUNT
    )
    kms.put_key_policy(KeyId=key_arn, PolicyName="default", Policy=json.dumps(document))


def started_key(app: App, kms: Any) -> str:
    """Start a rotation on a key whose policy allows the pipeline; return the key."""
    old_key = drive_rotation(app, kms, "started")
    give_pipeline_policy(kms, old_key)
    return old_key


def needing_action(report: DoctorReport) -> dict[str, DoctorFinding]:
    return {f.check: f for f in report.findings if f.needs_action}


def run_doctor(app: App, now: datetime, **options: Any) -> DoctorReport:
    return diagnose(app, "prod", now=now, sleep=lambda seconds: None, **options)


def test_doctor_reports_disabled_key_and_failed_decrypts(
    app: App, kms: Any, trail: CloudTrailStub, now: datetime
) -> None:
    key = started_key(app, kms)
    kms.disable_key(KeyId=key.split("/")[-1])
    trail.key(
        key,
        [
            failed_call(key, now - timedelta(minutes=25)),
            failed_call(key, now - timedelta(minutes=40)),
        ],
    )

    report = run_doctor(app, now)

    finding = needing_action(report)["key_enabled"]
    assert set(needing_action(report)) == {"key_enabled"}
    assert finding.severity == "error"
    assert finding.subject == key
    assert f"key {key} is Disabled" in finding.message
    assert (
        f"Decrypt by account {PIPELINE_ACCOUNT} failed with DisabledException "
        "2 time(s)" in finding.message
    )
    assert finding.details["failed_calls"][0]["events"] == 2
    assert report.problem_status()[KEY_UNUSABLE] == "found"


def test_doctor_healthy_environment_needs_nothing(
    app: App, kms: Any, trail: CloudTrailStub, now: datetime
) -> None:
    key = started_key(app, kms)
    trail.key(key)

    report = run_doctor(app, now)

    assert needing_action(report) == {}
    assert report.needs_action is False
    assert report.problem_status() == {
        KEY_UNUSABLE: "not found",
        ACCESS_DENIED: "not found",
        PARTIAL_ENCRYPTION: "not checked",
        STUCK_RUN: "not found",
        PERMISSIONS: "not found",
    }


def test_doctor_changes_nothing(
    app: App, kms: Any, trail: CloudTrailStub, now: datetime
) -> None:
    key = started_key(app, kms)
    kms.disable_key(KeyId=key.split("/")[-1])
    trail.key(key)
    before = snapshot(app.settings.db_path)

    run_doctor(app, now)

    assert snapshot(app.settings.db_path) == before
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Disabled"


def test_doctor_pipeline_account_missing_in_policy(
    app: App, kms: Any, trail: CloudTrailStub, now: datetime
) -> None:
    key = drive_rotation(app, kms, "started")
    trail.key(key)

    report = run_doctor(app, now)

    rules = {f.details["rule"] for f in report.findings if f.check == "key_policy"}
    assert rules == {"pipeline-use-missing", "pipeline-grant-missing"}
    assert report.problem_status()[ACCESS_DENIED] == "found"


def test_doctor_wrong_pipeline_account_in_policy(
    app: App, kms: Any, trail: CloudTrailStub, now: datetime
) -> None:
    key = drive_rotation(app, kms, "started")
    document = render_key_policy(
        key_account=OWN_ACCOUNT, pipeline_account="210987654312"
    )
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(document))
    trail.key(key)

    report = run_doctor(app, now)

    rules = {f.details["rule"] for f in report.findings if f.check == "key_policy"}
    assert "pipeline-account-mismatch" in rules
    assert "pipeline-use-missing" in rules


def test_doctor_access_denied_calls_on_enabled_key(
    app: App, kms: Any, trail: CloudTrailStub, now: datetime
) -> None:
    key = started_key(app, kms)
    denied = failed_call(
        key, now - timedelta(minutes=30), error="AccessDeniedException"
    )
    trail.key(key, [denied])

    report = run_doctor(app, now)

    finding = needing_action(report)["cloudtrail_access_denied"]
    assert finding.problem == ACCESS_DENIED
    assert "AccessDeniedException" in finding.message
    assert f"kmsguard check policy --key {key} --env prod" in finding.fix


def test_doctor_retired_key_still_called(
    app: App, kms: Any, trail: CloudTrailStub, now: datetime
) -> None:
    old_key = drive_rotation(app, kms, "old_key_disabled")
    run = app.store.open_run("prod")
    assert run is not None and run.new_key_arn is not None
    trail.key(old_key, [failed_call(old_key, now - timedelta(minutes=30))])
    trail.key(run.new_key_arn)

    report = run_doctor(app, now)

    finding = needing_action(report)["retired_key_in_use"]
    assert set(needing_action(report)) == {"retired_key_in_use"}
    assert finding.subject == old_key
    assert "`kmsguard recover re-enable prod`" in finding.fix
    assert [t.role for t in report.keys] == ["retired", "pipeline"]


def test_doctor_retired_key_without_calls_is_fine(
    app: App, kms: Any, trail: CloudTrailStub, now: datetime
) -> None:
    old_key = drive_rotation(app, kms, "old_key_disabled")
    run = app.store.open_run("prod")
    assert run is not None and run.new_key_arn is not None
    trail.key(old_key)
    trail.key(run.new_key_arn)

    report = run_doctor(app, now)

    assert needing_action(report) == {}


def test_doctor_stuck_waiting_for_support(
    app: App, kms: Any, trail: CloudTrailStub
) -> None:
    old_key = drive_rotation(app, kms, "support_contacted")
    give_pipeline_policy(kms, old_key)
    run = app.store.open_run("prod")
    assert run is not None and run.new_key_arn is not None
    later = datetime.now(UTC) + timedelta(days=8)
    trail.now = later
    trail.key(old_key)
    trail.key(run.new_key_arn)

    report = run_doctor(app, later)

    finding = needing_action(report)["run_progress"]
    assert set(needing_action(report)) == {"run_progress"}
    assert finding.severity == "warning"
    assert "support_contacted for 8d" in finding.message
    assert "ticket SUP-1" in finding.fix
    assert "kmsguard rotation confirm prod --ticket SUP-1" in finding.fix


def test_stuck_run_limit_is_exclusive(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "support_contacted")
    run = app.store.open_run("prod")
    assert run is not None
    since = datetime.fromisoformat(run.updated_at)
    limit = STATE_EXPECTATIONS["support_contacted"].limit

    assert stuck_run(run, since + limit) is None
    assert stuck_run(run, since + limit + timedelta(seconds=1)) is not None


def test_stuck_run_ignores_closed_run(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "started")
    run = app.store.open_run("prod")
    assert run is not None
    closed = dataclasses.replace(run, closed_at=run.updated_at)

    assert stuck_run(closed, datetime.now(UTC) + timedelta(days=400)) is None


@pytest.mark.parametrize("procedure", sorted(PROCEDURES))
def test_every_open_state_has_expectation(procedure: str) -> None:
    states = set(PROCEDURES[procedure].states) - set(TERMINAL)

    assert states - set(STATE_EXPECTATIONS) == set()


def test_doctor_reports_denied_lookup_events(
    app: App, kms: Any, trail: CloudTrailStub, now: datetime
) -> None:
    key = started_key(app, kms)
    trail.denied(key)

    report = run_doctor(app, now)

    assert report.permissions is not None
    finding = needing_action(report)["permission_denied"]
    assert finding.subject == "cloudtrail:LookupEvents"
    assert "AccessDeniedException" in finding.message
    assert "cloudtrail:LookupEvents" in report.permissions.denied
    assert "kms:DescribeKey" in report.permissions.allowed
    assert "kms:PutKeyPolicy" in report.permissions.not_tested


def test_doctor_says_what_was_not_tested(
    app: App, kms: Any, trail: CloudTrailStub, now: datetime
) -> None:
    key = started_key(app, kms)
    trail.key(key)

    report = run_doctor(app, now)

    note = next(f for f in report.findings if f.check == "permissions_not_tested")
    assert note.severity == "info"
    assert "iam:SimulatePrincipalPolicy" in note.message
    assert "kms:DisableKey" in note.message


def test_doctor_key_in_other_region(
    app: App, aws: AwsSession, trail: CloudTrailStub, now: datetime
) -> None:
    key = create_key(aws.client("kms", "us-east-1"))

    report = run_doctor(app, now, key=key)

    finding = needing_action(report)["key_region"]
    assert finding.problem == ACCESS_DENIED
    assert "us-east-1" in finding.message


def test_doctor_given_key_replaces_run_keys(
    app: App, kms: Any, trail: CloudTrailStub, now: datetime
) -> None:
    drive_rotation(app, kms, "started")
    other = create_key(kms)
    give_pipeline_policy(kms, other)
    trail.key(other)

    report = run_doctor(app, now, key=other)

    assert [t.arn for t in report.keys] == [other]


def test_doctor_without_runs_asks_for_key(
    app: App, trail: CloudTrailStub, now: datetime
) -> None:
    report = run_doctor(app, now)

    finding = needing_action(report)["key_known"]
    assert finding.severity == "warning"
    assert "kmsguard doctor prod --key KEY" in finding.fix
    assert report.problem_status()[KEY_UNUSABLE] == "not checked"
    assert report.problem_status()[ACCESS_DENIED] == "not checked"


def make_stream(aws: AwsSession, name: str, key_id: str | None) -> None:
    kinesis = aws.client("kinesis", REGION)
    kinesis.create_stream(StreamName=name, ShardCount=1)
    if key_id:
        kinesis.start_stream_encryption(
            StreamName=name, EncryptionType="KMS", KeyId=key_id
        )


def make_bucket(aws: AwsSession, name: str, key_arn: str) -> None:
    s3 = aws.client("s3", REGION)
    s3.create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": default}]
        },
    )


def test_doctor_some_streams_not_encrypted(
    app: App, aws: AwsSession, kms: Any, trail: CloudTrailStub, now: datetime
) -> None:
    key = started_key(app, kms)
    make_stream(aws, "good", key)
    make_stream(aws, "bad", None)
    set_environment_resources(app, "prod", kinesis_streams=["good", "bad"])
    trail.key(key)

    report = run_doctor(app, now)

    finding = needing_action(report)["resources_partial"]
    assert set(needing_action(report)) == {"resources_partial"}
    assert "Kinesis stream bad (no KMS key)" in finding.message
    assert "good" not in finding.message
    assert report.problem_status()[PARTIAL_ENCRYPTION] == "found"


def test_doctor_resources_all_use_key(
    app: App, aws: AwsSession, kms: Any, trail: CloudTrailStub, now: datetime
) -> None:
    key = started_key(app, kms)
    make_stream(aws, "good", key.split("/")[-1])
    make_bucket(aws, "archive", key)
    set_environment_resources(
        app, "prod", kinesis_streams=["good"], s3_buckets=["archive"]
    )
    trail.key(key)

    report = run_doctor(app, now)

    assert needing_action(report) == {}
    assert report.problem_status()[PARTIAL_ENCRYPTION] == "not found"
    assert report.permissions is not None
    assert "s3:GetEncryptionConfiguration" in report.permissions.allowed


def test_doctor_resource_names_retired_key(
    app: App, aws: AwsSession, kms: Any, trail: CloudTrailStub, now: datetime
) -> None:
    old_key = drive_rotation(app, kms, "old_key_disabled")
    run = app.store.open_run("prod")
    assert run is not None and run.new_key_arn is not None
    make_bucket(aws, "archive", old_key)
    set_environment_resources(app, "prod", s3_buckets=["archive"])
    trail.key(old_key)
    trail.key(run.new_key_arn)

    report = run_doctor(app, now)

    finding = needing_action(report)["resources_name_retired_key"]
    assert finding.severity == "error"
    assert "S3 bucket archive" in finding.message


@pytest.mark.parametrize(
    "lookback", [timedelta(0), timedelta(days=91)], ids=["zero", "over-90-days"]
)
def test_doctor_rejects_bad_lookback(app: App, lookback: timedelta) -> None:
    with pytest.raises(InvalidInput, match="invalid lookback"):
        diagnose(app, "prod", lookback=lookback)


def test_doctor_unknown_environment(app: App) -> None:
    with pytest.raises(InvalidInput, match="unknown environment 'qa9'"):
        diagnose(app, "qa9")


# The installed command, against the moto server and the CloudTrail fixture server.


def cli_key(cli: Cli, disabled: bool) -> str:
    kms = cli.kms()
    key = create_key(kms)
    give_pipeline_policy(kms, key)
    if disabled:
        kms.disable_key(KeyId=key.split("/")[-1])
    add_environment(cli)
    return key


def serve(cli: Cli, fixture: dict[str, Any]) -> None:
    assert cli.cloudtrail is not None
    cli.cloudtrail.serve(fixture)


@pytest.mark.e2e
def test_doctor_command_disabled_key_exits_3(cli: Cli) -> None:
    key = cli_key(cli, disabled=True)
    call = failed_call(key, datetime.now(UTC) - timedelta(minutes=30))
    record = json.loads(call["CloudTrailEvent"])
    serve(cli, {"events": [{"CloudTrailEvent": record}], "trails": []})

    data = cli.json("doctor", "prod", "--key", key, check=3)

    finding = next(f for f in data["findings"] if f["check"] == "key_enabled")
    assert finding["details"]["failed_calls"][0]["error_code"] == "DisabledException"
    assert data["problems"][KEY_UNUSABLE] == "found"
    assert "doctor found problems in prod" in data["error"]


@pytest.mark.e2e
def test_doctor_command_healthy_key_exits_0(cli: Cli) -> None:
    key = cli_key(cli, disabled=False)

    result = cli.run("doctor", "prod", "--key", key, check=0)

    assert f"key {key}: pipeline key, given with --key" in result.stdout
    assert "not found: data stops flowing" in result.stdout


@pytest.mark.e2e
def test_doctor_command_reports_denied_lookup(cli: Cli) -> None:
    key = cli_key(cli, disabled=False)
    serve(cli, {"events": [], "errors": {"LookupEvents": "AccessDeniedException"}})

    data = cli.json("doctor", "prod", "--key", key, check=3)

    assert list(data["permissions"]["denied"]) == ["cloudtrail:LookupEvents"]
    assert data["problems"][PERMISSIONS] == "found"
