"""Onboarding, disablement and recovery through the installed command.

Each step runs in its own subprocess against a moto server on 127.0.0.1, and
CloudTrail LookupEvents, which moto lacks, comes from tests/cloudtrail_server.py
through AWS_ENDPOINT_URL_CLOUDTRAIL.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from conftest import PIPELINE_ACCOUNT, REGION, Cli, CloudTrailFixture, create_key
from procedure_drivers import (
    add_environment,
    confirm_args,
    drive_rotation_cli,
    key_state,
    schedule_deletion_args,
)

pytestmark = pytest.mark.e2e


def client(cli: Cli, service: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=cli.server.url)


def new_key(cli: Cli) -> str:
    return create_key(cli.kms(), Description="pipeline key")


def pipeline_decrypt(key_arn: str, account: str = PIPELINE_ACCOUNT) -> dict[str, Any]:
    """Return a fixture event for a Decrypt on the key, timed now to the microsecond."""
    now = time.time()
    record = {
        "eventID": f"decrypt-{now}",
        "eventName": "Decrypt",
        "eventSource": "kms.amazonaws.com",
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "userIdentity": {
            "type": "AssumedRole",
            "accountId": account,
            "arn": f"arn:aws:sts::{account}:assumed-role/sp-enrich/i-1",
        },
        "userAgent": "aws-sdk-java/2.20",
        "requestParameters": {"keyId": key_arn},
        "resources": [{"ARN": key_arn, "type": "AWS::KMS::Key"}],
        "readOnly": True,
    }
    return {"EventTime": now, "CloudTrailEvent": record}


def make_resources(cli: Cli, key_arn: str) -> dict[str, str]:
    """Create a bucket, a stream and a queue naming the key three different ways."""
    s3 = client(cli, "s3")
    s3.create_bucket(
        Bucket="prod-enriched", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    s3.put_bucket_encryption(
        Bucket="prod-enriched",
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": "alias/prod-pipeline",
                    }
                }
            ]
        },
    )
    kinesis = client(cli, "kinesis")
    kinesis.create_stream(StreamName="prod-good", ShardCount=1)
    kinesis.start_stream_encryption(
        StreamName="prod-good", EncryptionType="KMS", KeyId=key_arn.split("/")[-1]
    )
    queue = client(cli, "sqs").create_queue(
        QueueName="prod-good", Attributes={"KmsMasterKeyId": key_arn}
    )["QueueUrl"]
    return {"bucket": "prod-enriched", "stream": "prod-good", "queue": str(queue)}


def test_onboarding_whole_path(cli: Cli, cloudtrail: CloudTrailFixture) -> None:
    add_environment(cli)
    cli.run("onboarding", "start", "prod", check=0)
    created = cli.json(
        "onboarding", "new-key", "prod", "--create", "--alias", "alias/prod-pipeline"
    )
    key = created["new_key_arn"]
    names = make_resources(cli, key)
    cli.run(
        "env",
        "set-resources",
        "prod",
        "--s3-bucket",
        names["bucket"],
        "--kinesis-stream",
        names["stream"],
        "--sqs-queue",
        names["queue"],
        check=0,
    )
    cli.run("onboarding", "apply-policy", "prod", check=0)
    shared = cli.run(
        "onboarding",
        "share",
        "prod",
        "--ticket",
        "SUP-1",
        "--components",
        "all",
        check=0,
    )
    early = cli.run("onboarding", "verify", "prod", check=3)
    cli.run(*confirm_args("onboarding", "SUP-1"), check=0)
    unseen = cli.run("onboarding", "verify", "prod", check=3)
    cloudtrail.serve({"events": [pipeline_decrypt(key)]})
    verified = cli.run("onboarding", "verify", "prod", check=0)
    done = cli.json("onboarding", "complete", "prod")

    assert key in shared.stdout
    assert "Environment: prod" in shared.stdout
    assert "Cross-account access: configured" in shared.stdout
    assert "all pipeline components" in shared.stdout
    assert "state_order" in early.stderr
    assert "in state shared_with_support" in early.stderr
    assert "pipeline_use_seen" in unseen.stderr
    assert "failed: CloudTrail" in unseen.stderr
    assert "passed: S3 bucket prod-enriched" in unseen.stderr
    assert "passed: CloudTrail" in verified.stdout
    assert "passed: Kinesis stream prod-good" in verified.stdout
    assert f"passed: SQS queue {names['queue']}" in verified.stdout
    assert done["state"] == "completed"
    assert done["procedure"] == "onboarding"
    assert key_state(cli, key) == "Enabled"
    status = cli.json("status", "prod")["environments"][0]
    assert status["next"] == f"kmsguard rotation start prod --current-key {key}"
    outcomes = [
        (e["step"], e["outcome"]) for e in cli.json("history", "prod")["events"]
    ]
    assert ("verify", "refused") in outcomes
    assert ("verify", "applied") in outcomes
    cli.run("audit", "verify", check=0)


def test_onboarding_verify_json_lists_checks(
    cli: Cli, cloudtrail: CloudTrailFixture
) -> None:
    add_environment(cli)
    cli.run("onboarding", "start", "prod", check=0)
    key = cli.json("onboarding", "new-key", "prod", "--create")["new_key_arn"]
    cli.run("onboarding", "apply-policy", "prod", check=0)
    cli.run("onboarding", "share", "prod", "--ticket", "SUP-1", check=0)
    cli.run(*confirm_args("onboarding", "SUP-1"), check=0)
    cloudtrail.serve({"events": [pipeline_decrypt(key, account="999988887777")]})

    refused = cli.json("onboarding", "verify", "prod", check=3)

    checks = {check["subject"]: check for check in refused["checks"]}
    assert refused["unmet"][0]["guard"] == "pipeline_use_seen"
    assert checks["CloudTrail"]["status"] == "failed"
    assert "999988887777" in checks["CloudTrail"]["reason"]
    assert checks["pipeline resources"]["status"] == "failed"


def test_disablement_whole_path_and_recovery(cli: Cli) -> None:
    add_environment(cli)
    key = new_key(cli)
    cli.run("disablement", "start", "prod", "--key", key, check=0)
    request = cli.run(
        "disablement", "request-removal", "prod", "--ticket", "SUP-2", check=0
    )
    early = cli.json("disablement", "disable-key", "prod", "--yes", check=3)
    cli.run(*confirm_args("disablement", "SUP-2"), check=0)
    cli.run("disablement", "disable-key", "prod", "--yes", check=0)
    cli.run(*schedule_deletion_args("disablement"), check=0)
    done = cli.json("disablement", "complete", "prod")

    assert key in request.stdout
    assert "no longer references the key" in request.stdout
    assert early["unmet"][0]["guard"] == "state_order"
    assert done["state"] == "completed"
    assert key_state(cli, key) == "PendingDeletion"

    cancelled = cli.run("recover", "cancel-deletion", "prod", "--yes", check=0)
    assert key_state(cli, key) == "Disabled"
    assert "still fail" in cancelled.stdout
    assert "reopened" in cancelled.stdout
    assert cli.json("status", "prod")["environments"][0]["state"] == "key_disabled"

    enabled = cli.json("recover", "re-enable", "prod", "--yes")
    assert enabled["state"] == "removal_requested"
    assert key_state(cli, key) == "Enabled"

    again = cli.json("disablement", "disable-key", "prod", "--yes", check=3)
    assert again["unmet"][0]["guard"] == "state_order"
    assert key_state(cli, key) == "Enabled"
    cli.run(*confirm_args("disablement", "SUP-2"), check=0)
    cli.run("disablement", "disable-key", "prod", "--yes", check=0)
    assert key_state(cli, key) == "Disabled"

    outcomes = [
        (e["step"], e["outcome"]) for e in cli.json("history", "prod")["events"]
    ]
    assert ("cancel_deletion", "applied") in outcomes
    assert ("re_enable", "applied") in outcomes
    assert ("disable_key", "refused") in outcomes
    cli.run("audit", "verify", check=0)


def test_rotation_cancel_deletion_with_enable(cli: Cli) -> None:
    add_environment(cli)
    old_key = drive_rotation_cli(cli, "old_key_deletion_scheduled")

    result = cli.json("recover", "cancel-deletion", "prod", "--enable", "--yes")

    assert result["state"] == "support_contacted"
    assert key_state(cli, old_key) == "Enabled"
    status = cli.json("status", "prod")["environments"][0]
    assert status["next"] == (
        "kmsguard rotation confirm prod --ticket SUP-3 --confirmed-by NAME"
    )


def test_rotation_re_enable_refused_while_deletion_pending(cli: Cli) -> None:
    add_environment(cli)
    old_key = drive_rotation_cli(cli, "old_key_deletion_scheduled")

    refused = cli.json("recover", "re-enable", "prod", "--yes", check=3)

    assert refused["unmet"][0]["guard"] == "state_order"
    assert key_state(cli, old_key) == "PendingDeletion"


def test_recover_without_yes_or_terminal_exits_2(cli: Cli) -> None:
    add_environment(cli)
    old_key = drive_rotation_cli(cli, "old_key_deletion_scheduled")

    result = cli.run("recover", "cancel-deletion", "prod", input_text="")

    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert key_state(cli, old_key) == "PendingDeletion"


def test_recover_with_nothing_to_recover_exits_3(cli: Cli) -> None:
    add_environment(cli)

    result = cli.run("recover", "re-enable", "prod", "--yes")

    assert result.returncode == 3
    assert "nothing to recover" in result.stderr


def test_disablement_start_refused_while_rotation_open(cli: Cli) -> None:
    add_environment(cli)
    cli.run("rotation", "start", "prod", "--current-key", new_key(cli), check=0)
    other = new_key(cli)

    disablement = cli.run("disablement", "start", "prod", "--key", other)
    onboarding = cli.run("onboarding", "start", "prod")

    assert disablement.returncode == 3
    assert "already has an open rotation run" in disablement.stderr
    assert onboarding.returncode == 3
    assert key_state(cli, other) == "Enabled"


def test_status_lists_every_environment(cli: Cli) -> None:
    add_environment(cli, "prod")
    add_environment(cli, "qa1")
    cli.run("disablement", "start", "prod", "--key", new_key(cli), check=0)

    rows = {row["environment"]: row for row in cli.json("status")["environments"]}

    assert rows["prod"]["procedure"] == "disablement"
    assert rows["prod"]["state"] == "started"
    assert rows["prod"]["state_age"]
    assert rows["prod"]["next"] == (
        "kmsguard disablement request-removal prod --ticket ID"
    )
    assert rows["qa1"]["state"] is None
    assert rows["qa1"]["next"] == "kmsguard onboarding start qa1"


def test_history_shows_every_run_of_environment(cli: Cli) -> None:
    add_environment(cli)
    cli.run("onboarding", "start", "prod", check=0)
    cli.run("onboarding", "share", "prod", "--ticket", "SUP-1", check=3)
    cli.run("onboarding", "cancel", "prod", "--reason", "wrong account", check=0)
    cli.run("disablement", "start", "prod", "--key", new_key(cli), check=0)

    events = cli.json("history", "prod")["events"]
    text = cli.run("history", "prod", check=0).stdout

    assert {e["procedure"] for e in events if e["run_id"]} == {
        "onboarding",
        "disablement",
    }
    assert ("share", "refused") in [(e["step"], e["outcome"]) for e in events]
    assert "refused" in text
    assert "RUN" in text.split("\n")[0]


def test_diagram_highlights_open_run(cli: Cli) -> None:
    add_environment(cli)
    cli.run("onboarding", "start", "prod", check=0)

    result = cli.run("diagram", "onboarding", "prod", check=0)

    assert result.stdout.startswith("stateDiagram-v2\n")
    assert "    class started current" in result.stdout


def test_set_resources_through_cli(cli: Cli) -> None:
    add_environment(cli)

    shown = cli.json(
        "env",
        "set-resources",
        "prod",
        "--s3-bucket",
        "sp-enriched",
        "--kinesis-stream",
        "good",
        "--resource-profile",
        "pipeline-readonly",
    )
    bad = cli.run("env", "set-resources", "prod", "--sqs-queue", "not-a-url")

    assert shown["resources"]["s3_buckets"] == ["sp-enriched"]
    assert shown["resources"]["profile"] == "pipeline-readonly"
    assert bad.returncode == 2
    assert "invalid SQS queue URL" in bad.stderr
    env = json.loads(cli.run("--output", "json", "env", "show", "prod").stdout)
    assert env["resources"]["kinesis_streams"] == ["good"]
