"""Tests of the local CloudTrail fixture server, driven by a real boto3 client.

The server replaces CloudTrail LookupEvents, which moto 5.2 does not
implement. Every request goes to 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cloudtrail_server import start_server

from kmsguard.workflow.aws import AwsSession, AwsSettings
from kmsguard.workflow.evidence import events_since

REGION = "eu-west-1"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY_ARN = f"arn:aws:kms:{REGION}:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY_ARN = (
    f"arn:aws:kms:{REGION}:123456789012:key/9999abcd-12ab-34cd-56ef-1234567890ab"
)
TRAIL_ARN = f"arn:aws:cloudtrail:{REGION}:123456789012:trail/audit"
SERVER_SCRIPT = Path(__file__).with_name("cloudtrail_server.py")


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDTRAIL"):
        monkeypatch.delenv(name, raising=False)


def record(
    event_id: str, minutes_ago: int, key_arn: str = KEY_ARN, name: str = "Decrypt"
) -> dict[str, Any]:
    """Return a raw CloudTrail record of a KMS call, as a fixture event."""
    when = NOW - timedelta(minutes=minutes_ago)
    return {
        "CloudTrailEvent": {
            "eventID": event_id,
            "eventName": name,
            "eventSource": "kms.amazonaws.com",
            "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "userIdentity": {"accountId": "111122223333", "type": "AWSService"},
            "resources": [{"ARN": key_arn, "type": "AWS::KMS::Key"}],
        }
    }


@pytest.fixture
def server() -> Iterator[str]:
    url, stop = start_server([record("e1", 30)])
    yield url
    stop()


def client(url: str) -> Any:
    # One attempt only, so a throttled request shows as an error at once.
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    return boto3.client(
        "cloudtrail", region_name=REGION, endpoint_url=url, config=config
    )


def lookup(url: str, key_arn: str = KEY_ARN, **options: Any) -> dict[str, Any]:
    attribute = {"AttributeKey": "ResourceName", "AttributeValue": key_arn}
    answer: dict[str, Any] = client(url).lookup_events(
        LookupAttributes=[attribute], **options
    )
    return answer


def set_fixture(url: str, fixture: Any) -> None:
    request = urllib.request.Request(
        f"{url}/fixture", data=json.dumps(fixture).encode(), method="POST"
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 204


def received(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/requests") as response:
        answer: list[dict[str, Any]] = json.load(response)
        return answer


def ids(page: dict[str, Any]) -> list[str]:
    return [event["EventId"] for event in page["Events"]]


def test_lookup_filters_by_resource_name(server: str) -> None:
    set_fixture(server, [record("mine", 10), record("other", 20, OTHER_KEY_ARN)])

    page = lookup(server)

    assert ids(page) == ["mine"]
    assert page["Events"][0]["Resources"][0]["ResourceName"] == KEY_ARN


def test_lookup_filters_by_time_window(server: str) -> None:
    set_fixture(server, [record("new", 10), record("middle", 60), record("old", 600)])

    page = lookup(
        server,
        StartTime=NOW - timedelta(minutes=120),
        EndTime=NOW - timedelta(minutes=20),
    )

    assert ids(page) == ["middle"]


def test_lookup_pages_newest_first(server: str) -> None:
    set_fixture(server, [record(f"e{minutes}", minutes) for minutes in range(1, 6)])
    paginator = client(server).get_paginator("lookup_events")
    attribute = {"AttributeKey": "ResourceName", "AttributeValue": KEY_ARN}

    pages = list(
        paginator.paginate(
            LookupAttributes=[attribute], PaginationConfig={"PageSize": 2}
        )
    )

    assert [ids(page) for page in pages] == [["e1", "e2"], ["e3", "e4"], ["e5"]]


def test_next_token_of_other_query_rejected(server: str) -> None:
    set_fixture(server, [record("a", 1), record("b", 2), record("c", 3, OTHER_KEY_ARN)])
    token = lookup(server, MaxResults=1)["NextToken"]

    with pytest.raises(ClientError) as caught:
        lookup(server, OTHER_KEY_ARN, MaxResults=1, NextToken=token)

    assert caught.value.response["Error"]["Code"] == "InvalidNextTokenException"


def test_start_after_end_rejected(server: str) -> None:
    with pytest.raises(ClientError) as caught:
        lookup(server, StartTime=NOW, EndTime=NOW - timedelta(hours=1))

    assert caught.value.response["Error"]["Code"] == "InvalidTimeRangeException"


def test_fixture_file_read_on_each_request(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps([record("first", 5)]))
    url, stop = start_server(events_file=path)
    try:
        before = ids(lookup(url))
        path.write_text(json.dumps({"events": [record("second", 5)]}))
        after = ids(lookup(url))
    finally:
        stop()

    assert before == ["first"]
    assert after == ["second"]


def test_throttle_requests_then_answers(server: str) -> None:
    set_fixture(server, {"events": [record("e1", 5)], "throttle_requests": 1})

    with pytest.raises(ClientError) as caught:
        lookup(server)
    page = lookup(server)

    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert ids(page) == ["e1"]


def test_trails_and_event_selectors_served(server: str) -> None:
    selector = {
        "ReadWriteType": "All",
        "IncludeManagementEvents": True,
        "ExcludeManagementEventSources": ["kms.amazonaws.com"],
    }
    trail = {"Name": "audit", "TrailARN": TRAIL_ARN, "HomeRegion": REGION}
    set_fixture(
        server,
        {
            "trails": [trail],
            "event_selectors": {"audit": {"EventSelectors": [selector]}},
        },
    )

    trails = client(server).describe_trails(includeShadowTrails=True)["trailList"]
    selectors = client(server).get_event_selectors(TrailName=TRAIL_ARN)

    assert [t["Name"] for t in trails] == ["audit"]
    assert selectors["EventSelectors"][0]["ExcludeManagementEventSources"] == [
        "kms.amazonaws.com"
    ]


def test_unknown_trail_not_found(server: str) -> None:
    with pytest.raises(ClientError) as caught:
        client(server).get_event_selectors(TrailName="missing")

    assert caught.value.response["Error"]["Code"] == "TrailNotFoundException"


def test_injected_error_returned(server: str) -> None:
    set_fixture(server, {"errors": {"DescribeTrails": "AccessDeniedException"}})

    with pytest.raises(ClientError) as caught:
        client(server).describe_trails()

    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"


def test_command_line_prints_url(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps([record("from-file", 5)]))
    process = subprocess.Popen(
        [sys.executable, str(SERVER_SCRIPT), "--port", "0", "--events", str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        page = lookup(url)
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert url.startswith("http://127.0.0.1:")
    assert ids(page) == ["from-file"]


def test_events_since_reads_server_by_endpoint_variable(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDTRAIL", server)
    set_fixture(server, [record("use", 60), record("describe", 90, name="DescribeKey")])
    since = NOW - timedelta(hours=3)

    scan = events_since(
        AwsSession(AwsSettings()),
        region=REGION,
        key_arn=KEY_ARN,
        since=since,
        now=NOW,
        sleep=lambda seconds: None,
    )

    lookups = [r for r in received(server) if r["operation"] == "LookupEvents"]
    assert scan.complete
    assert [event.event_id for event in scan.events] == ["use"]
    assert scan.events_read == 2
    assert lookups[0]["parameters"]["StartTime"] == since.timestamp()
