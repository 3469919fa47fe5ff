"""Tests of `watch`: calls on a retired key since kmsguard disabled it.

moto 5.2 has no CloudTrail LookupEvents. In the library tests, CloudTrail
responses come from botocore.stub.Stubber, which also checks the LookupEvents
window, or from the local CloudTrail server of conftest.py. The command tests
use that server too. KMS runs in moto.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from conftest import (
    PIPELINE_ACCOUNT,
    REGION,
    Cli,
    CloudTrailFixture,
    MotoServer,
    drive_rotation,
    kms_use_record,
)

from kmsguard.workflow.app import App, Settings
from kmsguard.workflow.aws import AwsSession
from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.records import parse_time
from kmsguard.workflow.watch import watch_environment


def disabled_at(app: App) -> datetime:
    run = app.store.runs("prod")[-1]
    return parse_time(str(run.data["disabled_at"]))


def later(app: App, minutes: float = 60) -> datetime:
    """Return a time `minutes` after the disable step, for the end of the window."""
    return disabled_at(app) + timedelta(minutes=minutes)


def record_at(key_arn: str, when: datetime, error: str | None) -> dict[str, Any]:
    minutes_ago = (datetime.now(UTC) - when).total_seconds() / 60
    return kms_use_record(key_arn, "Decrypt", minutes_ago=minutes_ago, error=error)


@pytest.fixture
def cloudtrail_stub(aws: AwsSession) -> Iterator[Stubber]:
    # Activated by the test once the rotation, which reads CloudTrail too, is
    # driven to the state it needs.
    stub = Stubber(aws.client("cloudtrail", REGION))
    yield stub
    stub.deactivate()


def lookup_entry(key_arn: str, when: datetime, error: str) -> dict[str, Any]:
    """Return one LookupEvents entry of a failed Decrypt by the pipeline."""
    record = {
        "eventID": "decrypt-1",
        "eventName": "Decrypt",
        "eventSource": "kms.amazonaws.com",
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "errorCode": error,
        "userIdentity": {
            "type": "AssumedRole",
            "accountId": PIPELINE_ACCOUNT,
            "arn": f"arn:aws:sts::{PIPELINE_ACCOUNT}:assumed-role/enrich/i-1",
        },
        "userAgent": "aws-sdk-java/2.20",
        "requestParameters": {"keyId": key_arn},
    }
    return {
        "EventId": "decrypt-1",
        "EventName": "Decrypt",
        "EventTime": when,
        "EventSource": "kms.amazonaws.com",
        "CloudTrailEvent": json.dumps(record),
    }


def test_watch_reports_disabled_exception(
    app: App, kms: Any, cloudtrail_stub: Stubber
) -> None:
    old_key = drive_rotation(app, kms, "old_key_disabled")
    start, end = disabled_at(app), later(app)
    cloudtrail_stub.activate()
    cloudtrail_stub.add_response(
        "describe_trails", {"trailList": []}, {"includeShadowTrails": True}
    )
    entry = lookup_entry(old_key, start + timedelta(minutes=5), "DisabledException")
    cloudtrail_stub.add_response(
        "lookup_events",
        {"Events": [entry]},
        {
            "LookupAttributes": [
                {"AttributeKey": "ResourceName", "AttributeValue": old_key}
            ],
            "StartTime": start,
            "EndTime": end,
            "MaxResults": 50,
        },
    )

    report = watch_environment(app, "prod", now=end)

    cloudtrail_stub.assert_no_pending_responses()
    assert [e.error_code for e in report.events] == ["DisabledException"]
    assert report.problems is True
    assert report.recover_command == "kmsguard recover re-enable prod"
    assert "kmsguard recover re-enable prod" in report.message()


def test_watch_reports_pending_deletion_errors(
    app: App, kms: Any, cloudtrail: CloudTrailFixture
) -> None:
    old_key = drive_rotation(app, kms, "old_key_deletion_scheduled")
    when = disabled_at(app) + timedelta(minutes=10)
    cloudtrail.serve([record_at(old_key, when, "KMSInvalidStateException")])

    report = watch_environment(app, "prod", now=later(app))

    assert [e.error_code for e in report.events] == ["KMSInvalidStateException"]
    assert report.to_dict()["events"][0]["meaning"] == "the key is pending deletion"
    assert report.recover_command == "kmsguard recover cancel-deletion prod"


def test_watch_ignores_calls_before_disable(
    app: App, kms: Any, cloudtrail: CloudTrailFixture
) -> None:
    old_key = drive_rotation(app, kms, "old_key_disabled")
    when = disabled_at(app) - timedelta(minutes=10)
    cloudtrail.serve([record_at(old_key, when, None)])

    report = watch_environment(app, "prod", now=later(app))

    assert report.events == []
    assert report.problems is False


def test_watch_since_skips_older_calls(
    app: App, kms: Any, cloudtrail: CloudTrailFixture
) -> None:
    old_key = drive_rotation(app, kms, "old_key_disabled")
    when = disabled_at(app) + timedelta(minutes=5)
    cloudtrail.serve([record_at(old_key, when, "DisabledException")])

    report = watch_environment(
        app, "prod", since=when + timedelta(minutes=1), now=later(app)
    )

    assert report.events == []
    assert report.since == when + timedelta(minutes=1)


def test_watch_since_never_before_disable(
    app: App, kms: Any, cloudtrail: CloudTrailFixture
) -> None:
    drive_rotation(app, kms, "old_key_disabled")

    report = watch_environment(
        app, "prod", since=disabled_at(app) - timedelta(days=1), now=later(app)
    )

    assert report.since == disabled_at(app)


def test_watch_incomplete_scan_is_a_problem(
    app: App, kms: Any, cloudtrail: CloudTrailFixture
) -> None:
    drive_rotation(app, kms, "old_key_disabled")
    cloudtrail.serve(
        {"events": [], "errors": {"LookupEvents": "AccessDeniedException"}}
    )

    report = watch_environment(app, "prod", now=later(app))

    assert report.events == []
    assert report.problems is True
    assert "could not read every event" in report.message()
    assert "AccessDeniedException" in report.message()


def test_watch_without_retired_key(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "rotation_confirmed")

    report = watch_environment(app, "prod")

    assert report.run is None
    assert report.problems is False
    assert "nothing to watch" in report.lines()[0]


def test_watch_since_without_time_zone_rejected(app: App) -> None:
    with pytest.raises(InvalidInput, match="time zone"):
        watch_environment(app, "prod", since=datetime(2026, 1, 1))


def test_watch_unknown_environment_rejected(app: App) -> None:
    with pytest.raises(InvalidInput, match="unknown environment"):
        watch_environment(app, "staging")


# The installed command


@pytest.fixture
def server_app(cli: Cli, moto_server: MotoServer) -> Iterator[App]:
    """An in-process App on the moto server and database the command uses."""
    settings = Settings(
        db_path=Path(cli.db_path), operator="alice", endpoint_url=moto_server.url
    )
    application = App(settings)
    application.add_environment("prod", REGION, PIPELINE_ACCOUNT)
    yield application
    application.close()


def wait_for_next_second(moment: datetime) -> datetime:
    """Return the first whole second after `moment`, once the clock has passed it.

    CloudTrail records event times in whole seconds, so a call seen after the
    disable step has a time at least this late.
    """
    whole = datetime.fromtimestamp(math.floor(moment.timestamp()) + 1, UTC)
    while datetime.now(UTC) <= whole:
        time.sleep(0.05)
    return whole


@pytest.mark.e2e
def test_watch_command_exits_3_on_disabled_exception(cli: Cli, server_app: App) -> None:
    old_key = drive_rotation(server_app, cli.kms(), "old_key_disabled")
    when = wait_for_next_second(disabled_at(server_app))
    assert cli.cloudtrail is not None
    cli.cloudtrail.serve([record_at(old_key, when, "DisabledException")])

    result = cli.run("watch", "prod", check=3)
    data = cli.json("watch", "prod", check=3)

    assert "DisabledException" in result.stdout
    assert "kmsguard recover re-enable prod" in result.stderr
    assert data["events"][0]["error_code"] == "DisabledException"
    assert data["recover"] == "kmsguard recover re-enable prod"


@pytest.mark.e2e
def test_watch_command_exits_0_without_calls(cli: Cli, server_app: App) -> None:
    drive_rotation(server_app, cli.kms(), "old_key_disabled")

    data = cli.json("watch", "prod", check=0)

    assert data["events"] == []
    assert data["complete"] is True


@pytest.mark.e2e
def test_watch_command_invalid_since(cli: Cli, server_app: App) -> None:
    result = cli.run("watch", "prod", "--since", "yesterday", check=2)

    assert "--since" in result.stderr
