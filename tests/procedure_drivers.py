"""Helpers that drive onboarding and disablement runs in process, and stub CloudTrail.

moto 5.2 does not implement CloudTrail LookupEvents, so `stub_cloudtrail`
wraps the shared session's CloudTrail client in botocore.stub.Stubber, which
checks the response shapes against the service model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from botocore.stub import Stubber
from conftest import OWN_ACCOUNT, PIPELINE_ACCOUNT, REGION, create_key

from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App
from kmsguard.workflow.aws import AwsSession

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


def drive_onboarding(app: App, state: str, env: str = "prod") -> None:
    """Start an onboarding and step it to `state`, stubbing CloudTrail for verify."""
    app.start(ONBOARDING, env, {})
    for reached, step in ONBOARDING_PATH[1:]:
        if app.store.open_run(env).state == state:  # type: ignore[union-attr]
            break
        assert step is not None
        params = dict(ONBOARDING_PARAMS[step])
        if step == "verify":
            with stub_cloudtrail(app.aws(), pipeline_calls(app, env)):
                app.step(ONBOARDING, step, env, params)
        else:
            app.step(ONBOARDING, step, env, params)
        assert app.store.open_run(env).state == reached  # type: ignore[union-attr]


def drive_disablement(app: App, kms: Any, state: str, env: str = "prod") -> str:
    """Start a disablement on a fresh key and step it to `state`; return the key ARN.

    `completed` is reached from `key_deletion_scheduled`.
    """
    key = create_key(kms, Description="pipeline key to retire")
    app.start(DISABLEMENT, env, {"key": key})
    for reached, step in DISABLEMENT_PATH[1:]:
        run = app.store.runs(env)[-1]
        if run.state == state:
            break
        assert step is not None
        app.step(DISABLEMENT, step, env, dict(DISABLEMENT_PARAMS[step]))
        assert app.store.runs(env)[-1].state == reached
    return key
