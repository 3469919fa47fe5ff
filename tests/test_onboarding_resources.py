"""The pipeline resources an environment lists: set, replaced, cleared, validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import snapshot

from kmsguard.workflow.app import App
from kmsguard.workflow.environment_resources import (
    resources_of,
    set_environment_resources,
)
from kmsguard.workflow.errors import InvalidInput

QUEUE = "https://sqs.eu-west-1.amazonaws.com/210987654321/good"
STREAM_ARN = "arn:aws:kinesis:eu-west-1:210987654321:stream/enriched"


def test_set_resources_stores_every_list(app: App) -> None:
    updated = set_environment_resources(
        app,
        "prod",
        s3_buckets=["sp-batch-archive", "sp-enriched"],
        kinesis_streams=["good", STREAM_ARN],
        sqs_queues=[QUEUE],
        profile="pipeline-readonly",
    )

    resources = resources_of(updated)
    assert resources.s3_buckets == ("sp-batch-archive", "sp-enriched")
    assert resources.kinesis_streams == ("good", STREAM_ARN)
    assert resources.sqs_queues == (QUEUE,)
    assert resources.profile == "pipeline-readonly"


def test_set_resources_records_event(app: App) -> None:
    set_environment_resources(app, "prod", s3_buckets=["sp-enriched"])

    event = app.store.environment_events("prod")[-1]

    assert event.step == "env_set_resources"
    assert event.outcome == "recorded"
    assert event.operator == "alice"
    assert event.evidence["resources"]["s3_buckets"] == ["sp-enriched"]


def test_set_resources_replaces_previous_lists(app: App) -> None:
    set_environment_resources(app, "prod", s3_buckets=["sp-old"], sqs_queues=[QUEUE])

    updated = set_environment_resources(app, "prod", kinesis_streams=["good"])

    resources = resources_of(updated)
    assert resources.s3_buckets == ()
    assert resources.sqs_queues == ()
    assert resources.kinesis_streams == ("good",)


def test_set_resources_drops_duplicates(app: App) -> None:
    updated = set_environment_resources(
        app, "prod", s3_buckets=["sp-enriched", "sp-enriched"]
    )

    assert resources_of(updated).s3_buckets == ("sp-enriched",)


def test_clear_lists_no_resources(app: App) -> None:
    set_environment_resources(app, "prod", s3_buckets=["sp-enriched"])

    updated = set_environment_resources(app, "prod", clear=True)

    assert resources_of(updated).s3_buckets == ()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"s3_buckets": ["Bad_Bucket"]}, "invalid S3 bucket name"),
        ({"s3_buckets": ["ab"]}, "invalid S3 bucket name"),
        ({"kinesis_streams": ["bad stream"]}, "invalid Kinesis stream"),
        ({"sqs_queues": ["good-queue"]}, "invalid SQS queue URL"),
        (
            {"s3_buckets": ["sp-enriched"], "profile": "two words"},
            "invalid --resource-profile",
        ),
        ({}, "no resources given"),
        ({"profile": "pipeline-readonly"}, "no resources given"),
        ({"s3_buckets": ["sp-enriched"], "clear": True}, "--clear"),
    ],
)
def test_set_resources_rejects_bad_input(
    app: App, db_path: Path, options: dict[str, object], message: str
) -> None:
    before = snapshot(db_path)

    with pytest.raises(InvalidInput) as invalid:
        set_environment_resources(app, "prod", **options)  # type: ignore[arg-type]

    assert message in str(invalid.value)
    assert snapshot(db_path) == before


def test_set_resources_rejects_unknown_environment(app: App) -> None:
    with pytest.raises(InvalidInput) as invalid:
        set_environment_resources(app, "staging", s3_buckets=["sp-enriched"])

    assert "unknown environment 'staging'" in str(invalid.value)


def test_environment_without_resources_lists_none(app: App) -> None:
    resources = resources_of(app.environment("prod"))

    assert resources.s3_buckets == ()
    assert resources.kinesis_streams == ()
    assert resources.sqs_queues == ()
    assert resources.profile is None
