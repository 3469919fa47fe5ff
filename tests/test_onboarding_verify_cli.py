"""`kmsguard onboarding verify` through the installed command: resources it must find.

Each step runs in its own subprocess against a moto server on 127.0.0.1, and
CloudTrail LookupEvents, which moto lacks, comes from tests/cloudtrail_server.py.
The fixture serves one Decrypt by the pipeline account, so only the resource
checks can fail.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest
from conftest import (
    OWN_ACCOUNT,
    REGION,
    Cli,
    CloudTrailFixture,
    kms_use_record,
)
from procedure_drivers import add_environment

pytestmark = pytest.mark.e2e

REFUSAL_SCHEMA = (
    Path(__file__).resolve().parent.parent / "docs" / "json-schema" / "refusal.json"
)
MISSING_QUEUE = f"https://sqs.{REGION}.amazonaws.com/{OWN_ACCOUNT}/prod-missing-queue"


def configured_onboarding(cli: Cli, cloudtrail: CloudTrailFixture) -> str:
    """Step an onboarding of prod to `configured` and return its new key.

    CloudTrail then serves one Decrypt of the key by the pipeline account.
    """
    add_environment(cli)
    cli.run("onboarding", "start", "prod", check=0)
    key = str(cli.json("onboarding", "new-key", "prod", "--create")["new_key_arn"])
    cli.run("onboarding", "apply-policy", "prod", check=0)
    cli.run("onboarding", "share", "prod", "--ticket", "SUP-1", check=0)
    confirm = ["--ticket", "SUP-1", "--confirmed-by", "Sam"]
    cli.run("onboarding", "confirm", "prod", *confirm, check=0)
    # Verify counts only calls after the confirmation, so the event is timed
    # now to the microsecond rather than to CloudTrail's whole second.
    decrypt = {**kms_use_record(key, minutes_ago=0), "EventTime": time.time()}
    cloudtrail.serve({"events": [decrypt]})
    return key


def encrypted_bucket(cli: Cli, key_arn: str) -> str:
    """Create a bucket on the moto server whose default encryption names the key."""
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=cli.server.url)
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
                        "KMSMasterKeyID": key_arn,
                    }
                }
            ]
        },
    )
    return "prod-enriched"


def list_resources(cli: Cli, *options: str) -> None:
    cli.run("env", "set-resources", "prod", *options, check=0)


def history_outcomes(cli: Cli) -> list[tuple[str, str]]:
    events = cli.json("history", "prod")["events"]
    return [(event["step"], event["outcome"]) for event in events]


def test_verify_cli_fails_for_missing_resources(
    cli: Cli, cloudtrail: CloudTrailFixture
) -> None:
    key = configured_onboarding(cli, cloudtrail)
    bucket = encrypted_bucket(cli, key)
    list_resources(
        cli,
        "--s3-bucket",
        bucket,
        "--s3-bucket",
        "prod-missing-bucket",
        "--kinesis-stream",
        "prod-missing-stream",
        "--sqs-queue",
        MISSING_QUEUE,
    )

    result = cli.run("onboarding", "verify", "prod", check=3)

    assert "passed: S3 bucket prod-enriched" in result.stderr
    assert "failed: S3 bucket prod-missing-bucket: not found" in result.stderr
    assert "failed: Kinesis stream prod-missing-stream: not found" in result.stderr
    assert f"failed: SQS queue {MISSING_QUEUE}: not found" in result.stderr
    assert "NoSuchBucket" in result.stderr
    assert "kmsguard env set-resources prod --s3-bucket prod-enriched" in (
        result.stderr
    )
    assert "resources_name_key" in result.stderr
    assert cli.json("status", "prod")["environments"][0]["state"] == "configured"
    assert history_outcomes(cli)[-1] == ("verify", "refused")


def test_verify_cli_json_matches_schema(
    cli: Cli, cloudtrail: CloudTrailFixture
) -> None:
    key = configured_onboarding(cli, cloudtrail)
    bucket = encrypted_bucket(cli, key)
    list_resources(cli, "--s3-bucket", bucket, "--kinesis-stream", "prod-missing")

    refused = cli.json("onboarding", "verify", "prod", check=3)

    checks = {check["subject"]: check for check in refused["checks"]}
    schema: dict[str, Any] = json.loads(REFUSAL_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.validate(refused, schema)
    assert [u["guard"] for u in refused["unmet"]] == ["resources_name_key"]
    assert checks["Kinesis stream prod-missing"]["status"] == "failed"
    assert (
        "ResourceNotFoundException" in checks["Kinesis stream prod-missing"]["reason"]
    )
    assert "Kinesis stream prod-missing" in refused["error"]


def test_verify_cli_fails_without_listed_resources(
    cli: Cli, cloudtrail: CloudTrailFixture
) -> None:
    configured_onboarding(cli, cloudtrail)

    result = cli.run("onboarding", "verify", "prod", check=3)

    assert "failed: pipeline resources: environment prod lists no pipeline" in (
        result.stderr
    )
    assert "kmsguard env set-resources prod --s3-bucket NAME" in result.stderr
    assert "passed: CloudTrail" in result.stderr
    assert cli.json("status", "prod")["environments"][0]["state"] == "configured"
    assert history_outcomes(cli)[-1] == ("verify", "refused")
    cli.run("audit", "verify", check=0)


def test_verify_cli_passes_with_encrypted_bucket(
    cli: Cli, cloudtrail: CloudTrailFixture
) -> None:
    key = configured_onboarding(cli, cloudtrail)
    list_resources(cli, "--s3-bucket", encrypted_bucket(cli, key))

    result = cli.json("onboarding", "verify", "prod", check=0)

    assert result["state"] == "verified"
    assert history_outcomes(cli)[-1] == ("verify", "applied")
