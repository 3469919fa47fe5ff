"""Onboarding verification: does the pipeline use the key it was given?

Each check is passed, failed, not checked or skipped, with the reason.
CloudTrail must show Decrypt or GenerateDataKey calls on the key by the
pipeline account since support's confirmation. Every listed pipeline resource
of a requested component must exist and name the key in its encryption
settings, and at least one must be listed. A resource that cannot be read is
"not checked", which is shown and stops the verification from passing.
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
from kmsguard.workflow.verify_checks import BLOCKING, FAILED, PASSED, VerifyCheck
from kmsguard.workflow.verify_resources import check_resources


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
    def blocking_resources(self) -> list[VerifyCheck]:
        """Return the resource checks that failed or could not be made."""
        return [check for check in self.resources if check.status in BLOCKING]

    @property
    def passed(self) -> bool:
        return self.cloudtrail.status == PASSED and not self.blocking_resources

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
            Resources of other components are skipped.
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
