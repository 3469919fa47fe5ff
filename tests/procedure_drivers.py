"""Helpers that drive procedure runs, in process or through the installed command.

moto 5.2 does not implement CloudTrail LookupEvents, so `stub_cloudtrail`
wraps the shared session's CloudTrail client in botocore.stub.Stubber, which
checks the response shapes against the service model. The helpers that take
the `cli` fixture run each step as its own `kmsguard` subprocess.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from botocore.stub import Stubber
from conftest import (
    OWN_ACCOUNT,
    PIPELINE_ACCOUNT,
    REGION,
    Cli,
    create_key,
    step_along,
)

from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App
from kmsguard.workflow.aws import AwsSession
from kmsguard.workflow.environment_resources import set_environment_resources
from kmsguard.workflow.procedure import Procedure

ONBOARDING = PROCEDURES["onboarding"]
DISABLEMENT = PROCEDURES["disablement"]

ONBOARDING_PARAMS: dict[str, dict[str, Any]] = {
    "new_key": {"create": True},
    "apply_policy": {"pipeline_principal": "root", "admin_roles": []},
    "share": {"ticket": "SUP-10", "components": "all"},
    "confirm": {
        "ticket": "SUP-10",
        "confirmed_by": "Sam (vendor support)",
        "message": "configuration applied",
    },
    "verify": {},
    "complete": {},
    "cancel": {"reason": "testing"},
}
ONBOARDING_PATH = (
    ("started", None),
    ("key_ready", "new_key"),
    ("policy_applied", "apply_policy"),
    ("shared_with_support", "share"),
    ("configured", "confirm"),
    ("verified", "verify"),
)

DISABLEMENT_PARAMS: dict[str, dict[str, Any]] = {
    "request_removal": {"ticket": "SUP-20"},
    "confirm": {
        "ticket": "SUP-20",
        "confirmed_by": "Sam (vendor support)",
        "message": "redeployed without the key",
    },
    "disable_key": {},
    # A test cannot wait out the observation period after the disable, so the
    # risk is accepted.
    "schedule_deletion": {
        "window_days": 7,
        "accept_risk": "test: the key was disabled moments ago",
    },
    "complete": {},
    "cancel": {"reason": "testing"},
    "re_enable": {},
    "cancel_deletion": {},
    "cancel_deletion_and_enable": {},
}
DISABLEMENT_PATH = (
    ("started", None),
    ("removal_requested", "request_removal"),
    ("removal_confirmed", "confirm"),
    ("key_disabled", "disable_key"),
    ("key_deletion_scheduled", "schedule_deletion"),
    ("completed", "complete"),
)


def kms_call(
    key_arn: str,
    name: str,
    *,
    account: str = PIPELINE_ACCOUNT,
    when: datetime | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """Return one LookupEvents entry for a KMS call on `key_arn` by `account`."""
    moment = when or datetime.now(UTC)
    record: dict[str, Any] = {
        "eventVersion": "1.08",
        "eventID": f"{name}-{account}-{moment.timestamp()}",
        "eventTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "kms.amazonaws.com",
        "eventName": name,
        "userIdentity": {
            "type": "AssumedRole",
            "accountId": account,
            "arn": f"arn:aws:sts::{account}:assumed-role/sp-enrich/i-1",
        },
        "recipientAccountId": OWN_ACCOUNT,
        "userAgent": "aws-sdk-java/2.20",
        "requestParameters": {"keyId": key_arn},
        "readOnly": True,
    }
    if error:
        record["errorCode"] = error
    return {
        "EventId": record["eventID"],
        "EventName": name,
        "EventTime": moment,
        "EventSource": "kms.amazonaws.com",
        "Resources": [{"ResourceType": "AWS::KMS::Key", "ResourceName": key_arn}],
        "CloudTrailEvent": json.dumps(record),
    }


@contextmanager
def stub_cloudtrail(aws: AwsSession, events: list[dict[str, Any]]) -> Iterator[Stubber]:
    """Answer DescribeTrails with no trail and LookupEvents with `events`, once."""
    stubber = Stubber(aws.client("cloudtrail", REGION))
    stubber.add_response("describe_trails", {"trailList": []})
    stubber.add_response("lookup_events", {"Events": events})
    stubber.activate()
    try:
        yield stubber
    finally:
        stubber.deactivate()


def pipeline_calls(app: App, env: str = "prod") -> list[dict[str, Any]]:
    """Return a Decrypt and a GenerateDataKey by the pipeline on the run's key."""
    run = app.store.open_run(env)
    assert run is not None and run.new_key_arn
    # Support confirmed before this call, so these calls come after it.
    now = datetime.now(UTC)
    return [
        kms_call(run.new_key_arn, "Decrypt", when=now),
        kms_call(run.new_key_arn, "GenerateDataKey", when=now),
    ]


def list_encrypted_bucket(app: App, env: str = "prod") -> str:
    """Create a bucket encrypted with the run's new key and list it; return its name.

    `onboarding verify` fails while the environment lists no resource, so a
    run that is to pass it needs one.
    """
    run = app.store.open_run(env)
    assert run is not None and run.new_key_arn
    bucket = f"{env}-pipeline-archive"
    s3 = app.aws().client("s3", REGION)
    s3.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": run.new_key_arn,
                    }
                }
            ]
        },
    )
    set_environment_resources(app, env, s3_buckets=[bucket])
    return bucket


def drive_onboarding(app: App, state: str, env: str = "prod") -> None:
    """Start an onboarding and step it to `state`, stubbing CloudTrail for verify.

    Before verify it lists a bucket encrypted with the run's new key.
    """

    def run_step(
        procedure: Procedure, step: str, environment: str, params: dict[str, Any]
    ) -> None:
        if step == "verify":
            list_encrypted_bucket(app, environment)
            with stub_cloudtrail(app.aws(), pipeline_calls(app, environment)):
                app.step(procedure, step, environment, params)
        else:
            app.step(procedure, step, environment, params)

    app.start(ONBOARDING, env, {})
    step_along(
        app, ONBOARDING, ONBOARDING_PATH, ONBOARDING_PARAMS, state, env, run_step
    )


def drive_disablement(app: App, kms: Any, state: str, env: str = "prod") -> str:
    """Start a disablement on a fresh key and step it to `state`; return the key ARN.

    `completed` is reached from `key_deletion_scheduled`.
    """
    key = create_key(kms, Description="pipeline key to retire")
    app.start(DISABLEMENT, env, {"key": key})
    step_along(app, DISABLEMENT, DISABLEMENT_PATH, DISABLEMENT_PARAMS, state, env)
    return key


# Driving runs through the installed command

# A test cannot wait out the observation period after a disable, so the
# schedule-deletion commands accept the risk.
ACCEPT_RISK = ("--accept-risk", "test: the key was disabled moments ago")


def add_environment(cli: Cli, name: str = "prod") -> None:
    """Add environment `name` in REGION for PIPELINE_ACCOUNT with `env add`."""
    cli.run(
        "env",
        "add",
        name,
        "--region",
        REGION,
        "--pipeline-account",
        PIPELINE_ACCOUNT,
        check=0,
    )


def key_state(cli: Cli, arn: str) -> str:
    """Return the KeyState that the moto server reports for `arn`."""
    return str(cli.kms().describe_key(KeyId=arn)["KeyMetadata"]["KeyState"])


def confirm_args(procedure: str, ticket: str) -> list[str]:
    """Return the arguments that record Sam's confirmation of `ticket` in prod."""
    return [procedure, "confirm", "prod", "--ticket", ticket, "--confirmed-by", "Sam"]


def schedule_deletion_args(procedure: str) -> list[str]:
    """Return the arguments that schedule the disabled key's deletion in 7 days."""
    return [
        procedure,
        "schedule-deletion",
        "prod",
        "--window-days",
        "7",
        "--yes",
        *ACCEPT_RISK,
    ]


def drive_rotation_cli(cli: Cli, state: str, ticket: str = "SUP-3") -> str:
    """Start a rotation in prod on a fresh key and step it to `state` by command.

    Each step runs in its own subprocess, and environment prod must exist.
    Return the old key ARN.
    """
    path = [
        ("new_key_ready", ["rotation", "new-key", "prod", "--create"]),
        ("policy_applied", ["rotation", "apply-policy", "prod"]),
        (
            "support_contacted",
            ["rotation", "contact-support", "prod", "--ticket", ticket],
        ),
        ("rotation_confirmed", confirm_args("rotation", ticket)),
        ("old_key_disabled", ["rotation", "disable-old-key", "prod", "--yes"]),
        ("old_key_deletion_scheduled", schedule_deletion_args("rotation")),
    ]
    old_key = create_key(cli.kms(), Description="pipeline key")
    cli.run("rotation", "start", "prod", "--current-key", old_key, check=0)
    reached = "started"
    for dest, args in path:
        if reached == state:
            break
        cli.run(*args, check=0)
        reached = dest
    assert reached == state, f"the rotation path has no state {state!r}"
    return old_key
