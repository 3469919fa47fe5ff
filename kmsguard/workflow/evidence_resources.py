"""Reading the pipeline's resources: which key each names, and how long it keeps data.

One read per resource serves two sources: the key references (S3 default
encryption, Kinesis KeyId, SQS KmsMasterKeyId) and the retention periods
(Kinesis RetentionPeriodHours, SQS MessageRetentionPeriod).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from kmsguard.workflow.aws import AwsSession, error_code
from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.evidence_keys import (
    KeyResolver,
    Resolution,
    aws_errors,
    failure_text,
)
from kmsguard.workflow.evidence_report import SourceReport
from kmsguard.workflow.rate_limit import RateLimits

log = logging.getLogger(__name__)

S3_BUCKET = "s3_bucket"
KINESIS_STREAM = "kinesis_stream"
SQS_QUEUE = "sqs_queue"

KIND_TITLES = {
    S3_BUCKET: "S3 bucket",
    KINESIS_STREAM: "Kinesis stream",
    SQS_QUEUE: "SQS queue",
}

# The AWS error codes that mean the resource itself does not exist. For a
# missing queue SQS sends the error type QueueDoesNotExist and the older
# query-protocol code AWS.SimpleQueueService.NonExistentQueue, and botocore
# reports the second as the code whenever AWS includes it.
NOT_FOUND_CODES = {
    S3_BUCKET: frozenset({"NoSuchBucket"}),
    KINESIS_STREAM: frozenset({"ResourceNotFoundException"}),
    SQS_QUEUE: frozenset(
        {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
    ),
}

Progress = Callable[[str, int, int | None], None]

STREAM_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream/[\w.-]+$")

# Kinesis allows DescribeStreamSummary 20 times a second per account (Kinesis
# API reference). kmsguard takes at most half, leaving the rest to the
# pipeline and other tools, so a long list of streams does not get throttled.
DESCRIBE_STREAM_RATE = RateLimits(per_second=10)


@dataclass(frozen=True)
class Resources:
    """The pipeline resources of one environment, and the profile that can read them.

    `sqs_queues` are queue URLs. `kinesis_streams` are stream names or ARNs.
    `s3_inventory` is an s3://bucket/prefix of an S3 Inventory manifest.
    """

    s3_buckets: tuple[str, ...] = ()
    kinesis_streams: tuple[str, ...] = ()
    sqs_queues: tuple[str, ...] = ()
    profile: str | None = None
    s3_inventory: str | None = None

    def validate(self) -> None:
        """Raise InvalidInput for a malformed queue URL or inventory location."""
        for url in self.sqs_queues:
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise InvalidInput(
                    f"invalid SQS queue URL {url!r}: give the queue URL, for "
                    "example https://sqs.eu-west-1.amazonaws.com/123456789012/good"
                )
        for stream in self.kinesis_streams:
            if stream.startswith("arn:") and not STREAM_ARN_RE.match(stream):
                raise InvalidInput(
                    f"invalid Kinesis stream ARN {stream!r}: give the stream name "
                    "or arn:aws:kinesis:REGION:ACCOUNT_ID:stream/NAME"
                )
        if self.s3_inventory and not self.s3_inventory.startswith("s3://"):
            raise InvalidInput(
                f"invalid S3 Inventory location {self.s3_inventory!r}: give "
                "s3://BUCKET/PREFIX of the inventory manifest"
            )


@dataclass(frozen=True)
class ResourceReading:
    """The result of one resource read: key references, retention, or an error.

    `missing` is true when the read failed because AWS reports that the
    resource does not exist, rather than for another reason such as access.
    """

    kind: str
    name: str
    region: str
    resolutions: tuple[Resolution, ...] = ()
    retention: timedelta | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    missing: bool = False

    @property
    def label(self) -> str:
        return f"{KIND_TITLES[self.kind]} {self.name}"


def failed_reading(
    kind: str, name: str, region: str, exc: Exception, action: str
) -> ResourceReading:
    """Return the reading of a resource whose read call raised `exc`."""
    return ResourceReading(
        kind,
        name,
        region,
        error=failure_text(exc, action, name),
        missing=error_code(exc) in NOT_FOUND_CODES[kind],
    )


def queue_region(url: str, default: str) -> str:
    """Return the region named in an SQS queue URL's host, or `default`.

    Hosts are sqs.REGION.amazonaws.com, the older REGION.queue.amazonaws.com,
    or queue.amazonaws.com for us-east-1. Any other host, such as a local
    endpoint, names no region.
    """
    host = (urlparse(url).hostname or "").lower()
    parts = host.split(".")
    if len(parts) >= 4 and parts[0] == "sqs":
        return parts[1]
    if len(parts) >= 4 and parts[1] == "queue":
        return parts[0]
    if host == "queue.amazonaws.com":
        return "us-east-1"
    return default


def read_resources(
    aws: AwsSession,
    *,
    region: str,
    resources: Resources,
    resolver: KeyResolver,
    workers: int,
    progress: Progress | None = None,
) -> list[ResourceReading]:
    """Read every listed resource in a thread pool; return readings in input order."""
    tasks: list[tuple[Callable[..., ResourceReading], str]] = []
    tasks.extend((_read_bucket, name) for name in resources.s3_buckets)
    tasks.extend((_read_stream, name) for name in resources.kinesis_streams)
    tasks.extend((_read_queue, url) for url in resources.sqs_queues)

    def run(task: tuple[Callable[..., ResourceReading], str]) -> ResourceReading:
        reader, name = task
        return reader(aws, name, region, resources.profile, resolver)

    readings: list[ResourceReading] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for reading in pool.map(run, tasks):
            readings.append(reading)
            if progress:
                progress("resources", len(readings), len(tasks))
    return readings


def _read_bucket(
    aws: AwsSession,
    bucket: str,
    region: str,
    profile: str | None,
    resolver: KeyResolver,
) -> ResourceReading:
    s3 = aws.client("s3", region, profile)
    try:
        answer = s3.get_bucket_encryption(Bucket=bucket)
    except aws_errors() as exc:
        if error_code(exc) == "ServerSideEncryptionConfigurationNotFoundError":
            return ResourceReading(S3_BUCKET, bucket, region, details={"sse": "none"})
        action = "s3:GetBucketEncryption"
        return failed_reading(S3_BUCKET, bucket, region, exc, action)

    references = []
    for rule in answer["ServerSideEncryptionConfiguration"].get("Rules", []):
        default = rule.get("ApplyServerSideEncryptionByDefault", {})
        if default.get("KMSMasterKeyID"):
            references.append(default["KMSMasterKeyID"])
        elif str(default.get("SSEAlgorithm", "")).startswith("aws:kms"):
            # SSE-KMS without a key ID means the AWS managed key aws/s3.
            references.append("alias/aws/s3")
    resolutions = tuple(resolver.resolve(ref, region) for ref in references)
    return ResourceReading(S3_BUCKET, bucket, region, resolutions=resolutions)


def _read_stream(
    aws: AwsSession,
    stream: str,
    region: str,
    profile: str | None,
    resolver: KeyResolver,
) -> ResourceReading:
    is_arn = stream.startswith("arn:")
    stream_region = stream.split(":")[3] if is_arn else region
    kinesis = aws.client("kinesis", stream_region, profile)
    DESCRIBE_STREAM_RATE.wait((profile, stream_region))
    try:
        if is_arn:
            answer = kinesis.describe_stream_summary(StreamARN=stream)
        else:
            answer = kinesis.describe_stream_summary(StreamName=stream)
    except aws_errors() as exc:
        action = "kinesis:DescribeStreamSummary"
        return failed_reading(KINESIS_STREAM, stream, stream_region, exc, action)

    summary = answer["StreamDescriptionSummary"]
    resolutions: tuple[Resolution, ...] = ()
    if summary.get("EncryptionType") == "KMS" and summary.get("KeyId"):
        resolutions = (resolver.resolve(summary["KeyId"], stream_region),)
    return ResourceReading(
        KINESIS_STREAM,
        stream,
        stream_region,
        resolutions=resolutions,
        retention=timedelta(hours=int(summary["RetentionPeriodHours"])),
    )


def _read_queue(
    aws: AwsSession, url: str, region: str, profile: str | None, resolver: KeyResolver
) -> ResourceReading:
    url_region = queue_region(url, region)
    sqs = aws.client("sqs", url_region, profile)
    names = ["KmsMasterKeyId", "MessageRetentionPeriod"]
    try:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
    except aws_errors() as exc:
        action = "sqs:GetQueueAttributes"
        return failed_reading(SQS_QUEUE, url, url_region, exc, action)

    values = attributes.get("Attributes", {})
    resolutions: tuple[Resolution, ...] = ()
    if values.get("KmsMasterKeyId"):
        resolutions = (resolver.resolve(values["KmsMasterKeyId"], url_region),)
    return ResourceReading(
        SQS_QUEUE,
        url,
        url_region,
        resolutions=resolutions,
        retention=timedelta(seconds=int(values["MessageRetentionPeriod"])),
    )


def references_source(
    readings: list[ResourceReading], resources: Resources, key_arn: str
) -> SourceReport:
    """Build the resource-references source: which listed resources name the key."""
    source = SourceReport("resource_references")
    _note_empty_lists(source, resources)
    for reading in readings:
        if reading.error:
            source.gaps.append(f"{reading.label} could not be read: {reading.error}")
            continue
        source.findings.append(_reference_finding(reading, key_arn))
        for resolution in reading.resolutions:
            if resolution.error:
                source.gaps.append(f"{reading.label}: {resolution.error}")
            elif resolution.matches(key_arn):
                source.reasons.append(_reference_reason(reading, resolution))
    return source


def _note_empty_lists(source: SourceReport, resources: Resources) -> None:
    # An empty list counts as clear, because the operator chose which resources
    # to list. The note keeps the report honest about what was not looked at.
    if not resources.s3_buckets:
        source.note("no S3 buckets listed for the environment")
    if not resources.kinesis_streams:
        source.note("no Kinesis streams listed for the environment")
    if not resources.sqs_queues:
        source.note("no SQS queues listed for the environment")


def _reference_finding(reading: ResourceReading, key_arn: str) -> dict[str, Any]:
    return {
        "resource": reading.name,
        "type": reading.kind,
        "region": reading.region,
        "key_references": [r.to_dict() for r in reading.resolutions],
        "uses_key": any(r.matches(key_arn) for r in reading.resolutions),
        **reading.details,
    }


def _reference_reason(reading: ResourceReading, resolution: Resolution) -> str:
    if resolution.reference == resolution.key_arn:
        named = "by its key ARN"
    else:
        named = f"as {resolution.reference!r}, which resolves to it"
    setting = {
        S3_BUCKET: "default encryption",
        KINESIS_STREAM: "stream encryption",
        SQS_QUEUE: "server-side encryption",
    }[reading.kind]
    return f"{reading.label}: its {setting} names the key {named}"


def retention_source(
    readings: list[ResourceReading],
    *,
    confirmed_at: datetime | None,
    now: datetime,
) -> tuple[SourceReport, datetime | None]:
    """Build the retention source and the earliest time retained data is gone.

    Every listed stream and queue counts, whichever key it names now, because
    any of them may hold records written under the old key before the switch.
    """
    source = SourceReport("retention")
    retaining = [r for r in readings if r.kind in (KINESIS_STREAM, SQS_QUEUE)]
    if not retaining:
        source.note("no Kinesis streams or SQS queues listed, so no data ages out")
        return source, None

    for reading in retaining:
        if reading.retention is None:
            source.gaps.append(
                f"{reading.label}: retention period unknown, because the "
                "resource could not be read"
            )
        else:
            source.findings.append(_retention_finding(reading))

    longest = longest_retention(retaining)
    if longest is None:
        return source, None
    return source, _retention_verdict(source, longest, confirmed_at, now)


def longest_retention(readings: list[ResourceReading]) -> ResourceReading | None:
    """Return the stream or queue with the longest retention period, if any is known."""
    known = [r for r in readings if r.retention is not None]
    return max(known, key=lambda r: r.retention or timedelta()) if known else None


def _retention_finding(reading: ResourceReading) -> dict[str, Any]:
    retention = reading.retention or timedelta()
    return {
        "resource": reading.name,
        "type": reading.kind,
        "retention_hours": round(retention.total_seconds() / 3600, 2),
    }


def _retention_verdict(
    source: SourceReport,
    longest: ResourceReading,
    confirmed_at: datetime | None,
    now: datetime,
) -> datetime | None:
    retention = longest.retention or timedelta()
    hours = f"{retention.total_seconds() / 3600:g} h"
    if confirmed_at is None:
        source.gaps.append(
            f"no confirmation time is recorded, so it is unknown when records "
            f"written under the old key age out of {longest.label} (retention "
            f"{hours}); record support's confirmation with `kmsguard rotation "
            "confirm` first"
        )
        return None

    earliest = confirmed_at + retention
    if now < earliest:
        source.reasons.append(
            f"{longest.label} keeps records for {hours}, so records written under "
            f"the key before support's confirmation at {confirmed_at.isoformat()} "
            f"remain until {earliest.isoformat()}"
        )
    else:
        source.note(
            f"the longest retention ({hours}, {longest.label}) ended at "
            f"{earliest.isoformat()}"
        )
    return earliest
