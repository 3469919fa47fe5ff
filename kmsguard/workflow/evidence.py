"""Evidence that a key is still in use, gathered from every source into one report.

The sources are the listed resources' key references, the S3 objects
themselves, the grants on the key, the retention of the streams and queues,
and CloudTrail. Each is reported separately. The outcome is "in_use" when any
source shows use, "insufficient_evidence" when none shows use but one could
not be read completely, and "no_use_seen" only after a complete look.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from kmsguard.workflow.aws import AwsSession
from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.evidence_cloudtrail import (
    CloudTrailScan,
    cloudtrail_source,
    delivery_delay,
    events_since,
    read_key_events,
    require_aware,
)
from kmsguard.workflow.evidence_events import KeyUseEvent, KeyUseGroup
from kmsguard.workflow.evidence_keys import (
    KeyResolver,
    aws_errors,
    failure_text,
    validate_key_arn,
)
from kmsguard.workflow.evidence_report import (
    OUTCOME_IN_USE,
    OUTCOME_INSUFFICIENT,
    OUTCOME_NO_USE_SEEN,
    SourceReport,
    UsageReport,
    format_report_lines,
)
from kmsguard.workflow.evidence_resources import (
    ResourceReading,
    Resources,
    longest_retention,
    read_resources,
    references_source,
    retention_source,
)
from kmsguard.workflow.evidence_s3 import scan_objects

__all__ = [
    "OUTCOME_INSUFFICIENT",
    "OUTCOME_IN_USE",
    "OUTCOME_NO_USE_SEEN",
    "CloudTrailScan",
    "KeyUseEvent",
    "KeyUseGroup",
    "Resources",
    "SourceReport",
    "UsageReport",
    "events_since",
    "format_report_lines",
    "gather_usage_report",
    "grants_source",
]

Progress = Callable[[str, int, int | None], None]

DEFAULT_LOOKBACK = timedelta(days=7)
DEFAULT_MAX_OBJECTS = 10_000
DEFAULT_WORKERS = 8


def gather_usage_report(
    aws: AwsSession,
    *,
    region: str,
    key_arn: str,
    resources: Resources,
    lookback: timedelta = DEFAULT_LOOKBACK,
    now: datetime | None = None,
    confirmed_at: datetime | None = None,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    own_caller_arns: Collection[str] = (),
    progress: Progress | None = None,
    workers: int = DEFAULT_WORKERS,
    sleep: Callable[[float], None] = time.sleep,
) -> UsageReport:
    """Read every evidence source for `key_arn` and combine them into one report.

    Args:
        confirmed_at: when support confirmed the switch to the new key; the
            retention periods count from it, and the CloudTrail source is
            incomplete until the delivery delay (`delivery_delay()`) has passed
            since it. Without it, only a look-back shorter than the delay is a
            gap, because no moment marks when use should have stopped.
        max_objects: the most S3 objects listed and read, over all buckets.
        own_caller_arns: caller ARNs whose CloudTrail events are kmsguard's own.
        progress: called with (source, done, total or None) as sources are
            read, one call at a time, possibly from a worker thread.
        sleep: waits between CloudTrail pages and back-offs; tests pass a fake.

    Raises:
        InvalidInput: a malformed argument, an AWS profile that does not exist,
            or an invalid KMSGUARD_CLOUDTRAIL_DELAY.
    """
    now = now or datetime.now(UTC)
    _validate(region, key_arn, resources, lookback, now, confirmed_at)
    _validate_limits(max_objects, workers)
    delay = delivery_delay()
    progress = _one_call_at_a_time(progress)

    # CloudTrail pages are rate limited, so the scan runs beside the other reads.
    with ThreadPoolExecutor(max_workers=1) as background:
        pending_scan = background.submit(
            read_key_events,
            aws,
            region=region,
            key_arn=key_arn,
            start=now - lookback,
            now=now,
            own_caller_arns=own_caller_arns,
            sleep=sleep,
            delay=delay,
            confirmed_at=confirmed_at,
            progress=progress,
        )
        grants, readings, objects = _read_account_sources(
            aws,
            region=region,
            key_arn=key_arn,
            resources=resources,
            max_objects=max_objects,
            workers=workers,
            progress=progress,
        )
        scan = pending_scan.result()

    return _combine(
        key_arn,
        now,
        confirmed_at,
        grants=grants,
        readings=readings,
        objects=objects,
        scan=scan,
        resources=resources,
    )


def _read_account_sources(
    aws: AwsSession,
    *,
    region: str,
    key_arn: str,
    resources: Resources,
    max_objects: int,
    workers: int,
    progress: Progress | None,
) -> tuple[SourceReport, list[ResourceReading], SourceReport]:
    """Read the grants, the listed resources and their S3 objects."""
    resolver = KeyResolver(aws, resources.profile)
    grants = grants_source(aws, region, key_arn)
    readings = read_resources(
        aws,
        region=region,
        resources=resources,
        resolver=resolver,
        workers=workers,
        progress=progress,
    )
    objects = scan_objects(
        aws,
        region=region,
        profile=resources.profile,
        buckets=resources.s3_buckets,
        key_arn=key_arn,
        resolver=resolver,
        max_objects=max_objects,
        workers=workers,
        inventory=resources.s3_inventory,
        progress=progress,
    )
    return grants, readings, objects


def _combine(
    key_arn: str,
    now: datetime,
    confirmed_at: datetime | None,
    *,
    grants: SourceReport,
    readings: list[ResourceReading],
    objects: SourceReport,
    scan: CloudTrailScan,
    resources: Resources,
) -> UsageReport:
    references = references_source(readings, resources, key_arn)
    retention, earliest = retention_source(readings, confirmed_at=confirmed_at, now=now)
    longest = longest_retention(readings)
    cloudtrail = cloudtrail_source(
        scan,
        (longest.label, longest.retention) if longest and longest.retention else None,
    )
    return UsageReport(
        key_arn=key_arn,
        checked_at=now.isoformat(),
        sources=[references, objects, grants, retention, cloudtrail],
        earliest_out_of_use=earliest.isoformat() if earliest else None,
    )


def _validate(
    region: str,
    key_arn: str,
    resources: Resources,
    lookback: timedelta,
    now: datetime,
    confirmed_at: datetime | None,
) -> None:
    validate_key_arn(key_arn, region)
    resources.validate()
    require_aware(now, "now")
    if confirmed_at is not None:
        require_aware(confirmed_at, "confirmed_at")
    if lookback <= timedelta():
        raise InvalidInput(
            f"invalid lookback {lookback}: give a positive period, for example 7 days"
        )


def _validate_limits(max_objects: int, workers: int) -> None:
    if max_objects < 0:
        raise InvalidInput(
            f"invalid max_objects {max_objects}: give 0 or more (0 reads no objects)"
        )
    if workers < 1:
        raise InvalidInput(f"invalid workers {workers}: give 1 or more threads")


def _one_call_at_a_time(progress: Progress | None) -> Progress | None:
    """Wrap `progress` so that calls from the CloudTrail thread never overlap others."""
    if progress is None:
        return None
    lock = threading.Lock()
    callback = progress

    def report(source: str, done: int, total: int | None) -> None:
        with lock:
            callback(source, done, total)

    return report


def grants_source(aws: AwsSession, region: str, key_arn: str) -> SourceReport:
    """Build the grants source: every grant on the key counts as use.

    Disabling a key does not retire its grants, and the services holding them
    use the key until the grants are retired or revoked.
    """
    source = SourceReport("grants")
    paginator = aws.client("kms", region).get_paginator("list_grants")
    grants: list[dict[str, Any]] = []
    try:
        for page in paginator.paginate(KeyId=key_arn):
            grants.extend(page.get("Grants", []))
    except aws_errors() as exc:
        text = failure_text(exc, "kms:ListGrants", key_arn)
        source.gaps.append(f"grants on the key could not be listed: {text}")
        return source

    if not grants:
        source.note("no grants on the key")
    for grant in grants:
        source.findings.append(_grant_finding(grant))
        source.reasons.append(_grant_reason(grant))
    return source


def _grant_finding(grant: dict[str, Any]) -> dict[str, Any]:
    created = grant.get("CreationDate")
    return {
        "grant_id": grant.get("GrantId"),
        "name": grant.get("Name") or None,
        "grantee_principal": grant.get("GranteePrincipal"),
        "retiring_principal": grant.get("RetiringPrincipal"),
        "operations": list(grant.get("Operations", [])),
        "constraints": grant.get("Constraints") or {},
        "created": created.isoformat() if isinstance(created, datetime) else created,
    }


def _grant_reason(grant: dict[str, Any]) -> str:
    name = grant.get("Name") or grant.get("GrantId")
    operations = ", ".join(grant.get("Operations", [])) or "no operations"
    return (
        f"grant {name} lets {grant.get('GranteePrincipal')} call {operations}; the "
        "service holding it uses the key until the grant is retired or revoked"
    )
