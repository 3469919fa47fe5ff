"""Onboarding verification: does the pipeline use the key it was given?

Each check is passed, failed or not checked, with the reason. CloudTrail must
show Decrypt or GenerateDataKey calls on the key by the pipeline account since
support's confirmation. Every listed pipeline resource that the operator can
read must name the key in its encryption settings. A resource that cannot be
read is "not checked", which is shown but does not fail the verification.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kmsguard.workflow.aws import AwsSession
from kmsguard.workflow.evidence import KeyUseEvent, Resources, events_since
from kmsguard.workflow.evidence_keys import KeyResolver
from kmsguard.workflow.evidence_resources import (
    KIND_TITLES,
    KINESIS_STREAM,
    S3_BUCKET,
    SQS_QUEUE,
    ResourceReading,
    read_resources,
)

PASSED = "passed"
FAILED = "failed"
NOT_CHECKED = "not_checked"

# The components as `--components` names them, with the Resources field that
# lists them and the kind of resource.
COMPONENT_RESOURCES = {
    "s3": ("s3_buckets", S3_BUCKET),
    "kinesis": ("kinesis_streams", KINESIS_STREAM),
    "sqs": ("sqs_queues", SQS_QUEUE),
}
ENCRYPTION_SETTING = {
    S3_BUCKET: "default encryption",
    KINESIS_STREAM: "stream encryption",
    SQS_QUEUE: "server-side encryption",
}
RESOURCE_WORKERS = 4


@dataclass(frozen=True)
class VerifyCheck:
    """One check of the verification: what was checked, its status and why."""

    subject: str
    kind: str
    status: str
    reason: str

    def line(self) -> str:
        label = self.status.replace("_", " ")
        return f"{label}: {self.subject}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class OnboardingVerification:
    """Every check of one verification, and whether the step may pass."""

    key_arn: str
    since: str
    checked_at: str
    cloudtrail: VerifyCheck
    resources: tuple[VerifyCheck, ...]

    @property
    def checks(self) -> list[VerifyCheck]:
        return [self.cloudtrail, *self.resources]

    @property
    def failed_resources(self) -> list[VerifyCheck]:
        return [check for check in self.resources if check.status == FAILED]

    @property
    def passed(self) -> bool:
        return self.cloudtrail.status == PASSED and not self.failed_resources

    def lines(self) -> list[str]:
        return [check.line() for check in self.checks]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_arn": self.key_arn,
            "since": self.since,
            "checked_at": self.checked_at,
            "passed": self.passed,
            "checks": [check.to_dict() for check in self.checks],
        }


def verify_onboarding(
    aws: AwsSession,
    *,
    environment: str,
    region: str,
    key_arn: str,
    pipeline_account: str,
    since: str | datetime,
    resources: Resources,
    components: Collection[str],
    own_caller_arns: Collection[str] = (),
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> OnboardingVerification:
    """Run every check of the onboarding verification for `key_arn`.

    Args:
        since: when support confirmed the configuration. Only later calls count.
        components: the components requested from support (s3, kinesis, sqs).
            Resources of other components are not checked.
    """
    now = now or datetime.now(UTC)
    start = since if isinstance(since, datetime) else datetime.fromisoformat(since)
    cloudtrail = check_pipeline_use(
        aws,
        environment=environment,
        region=region,
        key_arn=key_arn,
        pipeline_account=pipeline_account,
        since=start,
        now=now,
        own_caller_arns=own_caller_arns,
        sleep=sleep,
    )
    checks = check_resources(
        aws,
        environment=environment,
        region=region,
        key_arn=key_arn,
        resources=resources,
        components=components,
    )
    return OnboardingVerification(
        key_arn=key_arn,
        since=start.isoformat(),
        checked_at=now.isoformat(),
        cloudtrail=cloudtrail,
        resources=tuple(checks),
    )


def check_pipeline_use(
    aws: AwsSession,
    *,
    environment: str,
    region: str,
    key_arn: str,
    pipeline_account: str,
    since: datetime,
    now: datetime,
    own_caller_arns: Collection[str],
    sleep: Callable[[float], None],
) -> VerifyCheck:
    """Check CloudTrail for the pipeline account's Decrypt and GenerateDataKey calls."""
    # Only the presence of calls that have arrived matters here, so a window
    # younger than CloudTrail's delivery delay is not a gap.
    scan = events_since(
        aws,
        region=region,
        key_arn=key_arn,
        since=since,
        now=now,
        presence_only=True,
        own_caller_arns=own_caller_arns,
        sleep=sleep,
    )
    calls = [e for e in scan.events if _is_verify_call(e) and e.event_time >= since]
    window = f"since {since.isoformat(timespec='seconds')}"
    status, reason = _judge_calls(calls, pipeline_account, window, environment)
    if status == FAILED and not calls and scan.gaps:
        reason += "; the CloudTrail look was incomplete: " + "; ".join(scan.gaps)
    return VerifyCheck("CloudTrail", "cloudtrail", status, reason)


def _judge_calls(
    calls: list[KeyUseEvent], pipeline_account: str, window: str, environment: str
) -> tuple[str, str]:
    """Return the status and reason of the CloudTrail check for these calls."""
    by_pipeline = [e for e in calls if e.account == pipeline_account]
    succeeded = [e for e in by_pipeline if not e.error_code]
    if succeeded:
        return PASSED, (
            f"{len(succeeded)} call(s) by pipeline account {pipeline_account} "
            f"{window} ({_count(e.event_name for e in succeeded)}), latest at "
            f"{_latest(succeeded)}"
        )
    if by_pipeline:
        return FAILED, _failed_calls(by_pipeline, window)
    if calls:
        return FAILED, _other_accounts(calls, pipeline_account, window, environment)
    return FAILED, (
        f"no Decrypt or GenerateDataKey call on the key by pipeline account "
        f"{pipeline_account} {window}. CloudTrail shows calls up to about 20 "
        "minutes late, so send test events through the pipeline, then run "
        f"`kmsguard onboarding verify {environment}` again"
    )


def _is_verify_call(event: KeyUseEvent) -> bool:
    return event.event_name == "Decrypt" or event.event_name.startswith(
        "GenerateDataKey"
    )


def _count(names: Iterable[str]) -> str:
    """Return each distinct name with its count, for example "Decrypt x2"."""
    counts = Counter(names)
    return ", ".join(f"{name} x{count}" for name, count in sorted(counts.items()))


def _latest(events: list[KeyUseEvent]) -> str:
    return max(e.event_time for e in events).isoformat(timespec="seconds")


def _failed_calls(events: list[KeyUseEvent], window: str) -> str:
    codes = _count(str(event.error_code) for event in events)
    return (
        f"every one of the pipeline account's {len(events)} call(s) {window} "
        f"failed ({codes}), latest at {_latest(events)}. Check that the key "
        "policy allows the pipeline account and that the key is Enabled"
    )


def _other_accounts(
    events: list[KeyUseEvent], pipeline_account: str, window: str, environment: str
) -> str:
    accounts = ", ".join(sorted({event.account for event in events}))
    return (
        f"{len(events)} call(s) on the key {window} came only from account(s) "
        f"{accounts}, none from pipeline account {pipeline_account}; check the "
        f"pipeline account of the environment with `kmsguard env show {environment}`"
    )


def check_resources(
    aws: AwsSession,
    *,
    environment: str,
    region: str,
    key_arn: str,
    resources: Resources,
    components: Collection[str],
) -> list[VerifyCheck]:
    """Check that each listed resource of a requested component names the key."""
    wanted, skipped = _split_by_component(resources, components)
    if not (resources.s3_buckets or resources.kinesis_streams or resources.sqs_queues):
        return [
            VerifyCheck(
                "pipeline resources",
                "resources",
                NOT_CHECKED,
                "the environment lists no pipeline resources; list them with "
                f"`kmsguard env set-resources {environment} --s3-bucket NAME "
                "--kinesis-stream NAME --sqs-queue URL`",
            )
        ]

    readings = read_resources(
        aws,
        region=region,
        resources=wanted,
        resolver=KeyResolver(aws, resources.profile),
        workers=RESOURCE_WORKERS,
    )
    return [_reading_check(r, key_arn) for r in readings] + skipped


def _split_by_component(
    resources: Resources, components: Collection[str]
) -> tuple[Resources, list[VerifyCheck]]:
    """Split the resources into those of requested components and "not checked"."""
    requested = ", ".join(sorted(components)) or "none"
    skipped: list[VerifyCheck] = []
    kept: dict[str, tuple[str, ...]] = {}
    for component, (field, kind) in COMPONENT_RESOURCES.items():
        names: tuple[str, ...] = getattr(resources, field)
        if component in components:
            kept[field] = names
            continue
        kept[field] = ()
        skipped.extend(
            VerifyCheck(
                f"{KIND_TITLES[kind]} {name}",
                kind,
                NOT_CHECKED,
                f"{component} is not among the components requested from "
                f"support ({requested})",
            )
            for name in names
        )
    wanted = Resources(
        s3_buckets=kept["s3_buckets"],
        kinesis_streams=kept["kinesis_streams"],
        sqs_queues=kept["sqs_queues"],
        profile=resources.profile,
    )
    return wanted, skipped


def _reading_check(reading: ResourceReading, key_arn: str) -> VerifyCheck:
    what = ENCRYPTION_SETTING[reading.kind]

    def check(status: str, reason: str) -> VerifyCheck:
        return VerifyCheck(reading.label, reading.kind, status, reason)

    if reading.error:
        return check(NOT_CHECKED, f"could not be read: {reading.error}")
    if not reading.resolutions:
        return check(FAILED, f"its {what} names no KMS key")
    for resolution in reading.resolutions:
        if resolution.key_arn == key_arn:
            how = (
                "by its key ARN"
                if resolution.reference == key_arn
                else f"as {resolution.reference!r}, which resolves to it"
            )
            return check(PASSED, f"its {what} names the key {how}")
    unresolved = [r for r in reading.resolutions if r.error]
    if unresolved:
        return check(
            NOT_CHECKED,
            f"its {what} names {unresolved[0].reference!r}, which could not be "
            f"resolved: {unresolved[0].error}",
        )
    named = ", ".join(
        _describe_other(r.reference, r.key_arn) for r in reading.resolutions
    )
    return check(FAILED, f"its {what} names {named}, not {key_arn}")


def _describe_other(reference: str, key_arn: str | None) -> str:
    if key_arn is None:
        return f"the AWS managed key {reference!r}"
    if reference == key_arn:
        return f"key {key_arn}"
    return f"{reference!r} (key {key_arn})"
