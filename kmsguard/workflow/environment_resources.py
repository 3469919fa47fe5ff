"""The pipeline resources an environment lists, stored with the environment.

The stored form is a JSON object with the lists `s3_buckets` (bucket names),
`kinesis_streams` (stream names or ARNs) and `sqs_queues` (queue URLs). Its
`profile` names the AWS profile that can read them, for resources that live in
an account that needs other credentials.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.evidence_resources import Resources
from kmsguard.workflow.identifiers import check_text_params
from kmsguard.workflow.records import Environment, NewEvent

if TYPE_CHECKING:
    from kmsguard.workflow.app import App

log = logging.getLogger(__name__)

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
STREAM_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
STREAM_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream/[A-Za-z0-9_.-]{1,128}$"
)
PROFILE_RE = re.compile(r"^[\w.+@-]{1,128}$")


def resources_of(environment: Environment) -> Resources:
    """Return the resources an environment lists (none when it lists none)."""
    stored = environment.resources
    return Resources(
        s3_buckets=tuple(stored.get("s3_buckets") or ()),
        kinesis_streams=tuple(stored.get("kinesis_streams") or ()),
        sqs_queues=tuple(stored.get("sqs_queues") or ()),
        profile=stored.get("profile") or None,
    )


def validate_resources(
    s3_buckets: Sequence[str],
    kinesis_streams: Sequence[str],
    sqs_queues: Sequence[str],
    profile: str | None,
) -> dict[str, Any]:
    """Check every name and return the JSON object to store.

    Raises:
        InvalidInput: a malformed bucket name, stream, queue URL or profile.
    """
    check_text_params(
        {
            "s3_bucket": list(s3_buckets),
            "kinesis_stream": list(kinesis_streams),
            "sqs_queue": list(sqs_queues),
            "resource_profile": profile or "",
        },
        allowed="",
    )
    buckets = _unique([_bucket(name) for name in s3_buckets])
    streams = _unique([_stream(name) for name in kinesis_streams])
    queues = _unique([url.strip() for url in sqs_queues])
    Resources(sqs_queues=tuple(queues)).validate()
    if profile is not None and not PROFILE_RE.match(profile.strip()):
        raise InvalidInput(
            f"invalid --resource-profile {profile!r}: give the name of a profile "
            "in your AWS config, for example pipeline-readonly"
        )
    return {
        "s3_buckets": buckets,
        "kinesis_streams": streams,
        "sqs_queues": queues,
        "profile": profile.strip() if profile else None,
    }


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _bucket(name: str) -> str:
    name = name.strip()
    if not BUCKET_RE.match(name) or ".." in name:
        raise InvalidInput(
            f"invalid S3 bucket name {name!r} for --s3-bucket: a bucket name has 3 "
            "to 63 lower-case letters, digits, dots and hyphens, and starts and "
            "ends with a letter or digit"
        )
    return name


def _stream(name: str) -> str:
    name = name.strip()
    if not (STREAM_NAME_RE.match(name) or STREAM_ARN_RE.match(name)):
        raise InvalidInput(
            f"invalid Kinesis stream {name!r} for --kinesis-stream: give a stream "
            "name (letters, digits, '_', '.' and '-') or a stream ARN"
        )
    return name


def set_environment_resources(
    app: App,
    name: str,
    *,
    s3_buckets: Sequence[str] = (),
    kinesis_streams: Sequence[str] = (),
    sqs_queues: Sequence[str] = (),
    profile: str | None = None,
    clear: bool = False,
) -> Environment:
    """Replace the resources an environment lists, recording an audit event.

    Raises:
        InvalidInput: an unknown environment, a malformed value, no resource
            given without `clear`, or resources given with `clear`.
    """
    app.environment(name)
    listed = bool(s3_buckets or kinesis_streams or sqs_queues)
    if clear and (listed or profile):
        raise InvalidInput(
            "--clear removes every listed resource and takes no other option; "
            "give either --clear or the resources"
        )
    if not clear and not listed:
        raise InvalidInput(
            f"no resources given for environment {name!r}: give them with "
            "--s3-bucket, --kinesis-stream and --sqs-queue (each may be repeated), "
            "or --clear to list none"
        )
    resources = validate_resources(s3_buckets, kinesis_streams, sqs_queues, profile)
    event = NewEvent(
        step="env_set_resources",
        outcome="recorded",
        operator=app.settings.operator,
        message=f"pipeline resources of environment {name} set",
        evidence={"resources": resources},
    )
    app.store.set_environment_resources(name, resources, event)
    log.info("set the resources of environment %s by %s", name, app.settings.operator)
    return app.environment(name)
