"""Guards that refuse to retire a key the pipeline may still use.

A disable step needs the usage report to show "no use seen", and the report
cannot show it until CloudTrail has had time to deliver the calls made since
support's confirmation (20 minutes unless KMSGUARD_CLOUDTRAIL_DELAY sets
another delay). A scheduled deletion needs the key disabled for an
observation period, no use of it in CloudTrail since the disable, and no S3
objects left under it. Each guard stores what it read in
ctx.facts["evidence"], which the engine puts on the step's refused or applied
audit event.

`--accept-risk REASON` overrides an in-use or insufficient result and the
observation period. S3 objects under a deleted key are lost for good, so only
`--accept-data-loss REASON` overrides that guard.

A library caller may pass two callables in the step params: `progress`, called
as the evidence sources are read, and `cloudtrail_sleep`, which replaces the
waits between CloudTrail pages and back-offs (tests pass a fake).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from kmsguard.workflow.context import Guard, StepContext
from kmsguard.workflow.environment_resources import resources_of
from kmsguard.workflow.errors import GuardResult
from kmsguard.workflow.evidence import (
    DEFAULT_WORKERS,
    OUTCOME_IN_USE,
    OUTCOME_INSUFFICIENT,
    OUTCOME_NO_USE_SEEN,
    CloudTrailScan,
    KeyUseGroup,
    UsageReport,
    events_since,
    gather_usage_report,
)
from kmsguard.workflow.evidence_cloudtrail import retry_after
from kmsguard.workflow.evidence_environment import (
    Progress,
    confirmation_time,
    lookback,
    max_objects,
    observation_days,
)
from kmsguard.workflow.evidence_keys import KeyResolver
from kmsguard.workflow.evidence_report import SOURCE_CLEAR, SOURCE_INCOMPLETE
from kmsguard.workflow.evidence_s3 import scan_objects
from kmsguard.workflow.key_users import runs_source
from kmsguard.workflow.records import parse_time

KEY_OUT_OF_USE = "key_out_of_use"
OBSERVATION_PERIOD_PASSED = "observation_period_passed"
NO_EVENTS_SINCE_DISABLE = "no_events_since_disable"
NO_OBJECTS_UNDER_KEY = "no_objects_under_key"

# Continuation lines of a reason, indented under the engine's "  - guard:" line.
INDENT = "\n      "
MAX_GROUPS = 10  # groups of key use named in a reason; the evidence lists all


def key_out_of_use(ctx: StepContext) -> GuardResult:
    """Pass only when the usage report on the step's key is "no use seen"."""
    report = usage_report(ctx)
    if report.outcome == OUTCOME_NO_USE_SEEN:
        return GuardResult(
            KEY_OUT_OF_USE,
            True,
            f"no use seen of key {report.key_arn}: every evidence source was read "
            "completely",
        )

    return GuardResult(
        KEY_OUT_OF_USE,
        False,
        _report_reason(report),
        _report_next(ctx, report),
        overridable=True,
        details={"outcome": report.outcome},
    )


def _report_next(ctx: StepContext, report: UsageReport) -> str:
    cloudtrail = report.source("cloudtrail")
    retry = retry_after(cloudtrail)
    hint = f"check again with `kmsguard evidence {ctx.env_name}`"
    # --since cannot close the wait for delivery, so only other gaps get the hint.
    other_gaps = len(cloudtrail.gaps) - (1 if retry else 0)
    if cloudtrail.status == SOURCE_INCOMPLETE and other_gaps:
        hint += " (--since sets the CloudTrail look-back)"
    action = "stop the use listed"
    if retry and report.outcome == OUTCOME_INSUFFICIENT:
        action = f"run the step again after {retry}"
    return f"{action}, {hint}, or override: {_override(ctx, 'accept-risk')}"


def usage_report(ctx: StepContext) -> UsageReport:
    """Gather the usage report of the step's key once per step attempt."""
    cached = ctx.facts.get("usage_report")
    if isinstance(cached, UsageReport):
        return cached

    report = gather_usage_report(
        ctx.aws,
        region=ctx.environment.region,
        key_arn=ctx.target_key(),
        resources=resources_of(ctx.environment),
        lookback=lookback(ctx.params),
        confirmed_at=confirmation_time(ctx.store, ctx.run),
        max_objects=max_objects(ctx.params),
        own_caller_arns=(ctx.identify_caller(),),
        progress=_progress(ctx),
        sleep=_sleep(ctx),
    )
    # Another environment's run that records the key is use that the AWS
    # sources of this environment need not show.
    report.sources.append(runs_source(ctx.store, report.key_arn, ctx.env_name))
    ctx.facts["usage_report"] = report
    _record(ctx, "usage_report", report.to_dict())
    return report


def _report_reason(report: UsageReport) -> str:
    if report.outcome == OUTCOME_IN_USE:
        head = f"key {report.key_arn} is still in use:"
    else:
        head = (
            f"insufficient evidence that key {report.key_arn} is out of use, "
            "because not every source was read completely:"
        )
    lines = [head]
    lines.extend(f"in use: {reason}" for reason in report.reasons)
    lines.extend(f"gap: {gap}" for gap in report.gaps)
    return INDENT.join(lines)


def observation_period_passed(ctx: StepContext) -> GuardResult:
    """Pass once the key has stayed disabled for the observation period."""
    days = observation_days(ctx.params)
    disabled_at = _disabled_at(ctx)
    if disabled_at is None:
        return _no_disable_time(ctx, OBSERVATION_PERIOD_PASSED)

    ends = disabled_at + timedelta(days=days)
    _record(
        ctx,
        "observation",
        {
            "disabled_at": disabled_at.isoformat(),
            "days": days,
            "ends_at": ends.isoformat(),
        },
    )
    if datetime.now(UTC) >= ends:
        return GuardResult(
            OBSERVATION_PERIOD_PASSED,
            True,
            f"the key was disabled at {disabled_at.isoformat()}, and the {days}-day "
            f"observation period ended at {ends.isoformat()}",
        )
    return GuardResult(
        OBSERVATION_PERIOD_PASSED,
        False,
        f"the key was disabled at {disabled_at.isoformat()}, and the {days}-day "
        f"observation period ends at {ends.isoformat()}; a component that uses "
        "the key rarely may not have failed yet",
        f"run the step again after {ends.isoformat()}, or override: "
        f"{_override(ctx, 'accept-risk')}",
        overridable=True,
    )


def no_events_since_disable(ctx: StepContext) -> GuardResult:
    """Pass when a complete CloudTrail scan shows no use since the disable.

    A call that failed with DisabledException counts, because it shows a
    caller that still depends on the key.
    """
    disabled_at = _disabled_at(ctx)
    if disabled_at is None:
        return _no_disable_time(ctx, NO_EVENTS_SINCE_DISABLE)

    scan = events_since(
        ctx.aws,
        region=ctx.environment.region,
        key_arn=ctx.target_key(),
        since=disabled_at,
        own_caller_arns=(ctx.identify_caller(),),
        sleep=_sleep(ctx),
    )
    groups = scan.groups()
    _record(ctx, "events_since_disable", _scan_evidence(scan, groups))
    if not groups and scan.complete:
        return GuardResult(
            NO_EVENTS_SINCE_DISABLE,
            True,
            f"no use of the key in CloudTrail from the disable at "
            f"{disabled_at.isoformat()} to {scan.end.isoformat()} "
            f"({scan.events_read} event(s) read)",
        )
    return GuardResult(
        NO_EVENTS_SINCE_DISABLE,
        False,
        _scan_reason(scan, groups, disabled_at),
        _scan_next(ctx, groups),
        overridable=True,
    )


def _scan_reason(
    scan: CloudTrailScan, groups: list[KeyUseGroup], disabled_at: datetime
) -> str:
    if groups:
        head = (
            f"key {scan.key_arn} was called after it was disabled at "
            f"{disabled_at.isoformat()}, so a caller still depends on it:"
        )
    else:
        head = (
            "the CloudTrail record since the disable at "
            f"{disabled_at.isoformat()} is incomplete:"
        )
    lines = [head]
    lines.extend(f"in use: {group.describe()}" for group in groups[:MAX_GROUPS])
    if len(groups) > MAX_GROUPS:
        lines.append(f"and {len(groups) - MAX_GROUPS} more groups, in the evidence")
    lines.extend(f"gap: {gap}" for gap in scan.gaps)
    return INDENT.join(lines)


def _scan_next(ctx: StepContext, groups: list[KeyUseGroup]) -> str:
    override = _override(ctx, "accept-risk")
    if groups:
        return (
            "find and stop the caller listed (if the pipeline needs the key, "
            f"`kmsguard recover re-enable {ctx.env_name}`), or override: {override}"
        )
    return f"run the step again once the gaps are closed, or override: {override}"


def _scan_evidence(scan: CloudTrailScan, groups: list[KeyUseGroup]) -> dict[str, Any]:
    """Summarise a scan for the audit log: its window, gaps and groups of use."""
    return {
        "start": scan.start.isoformat(),
        "end": scan.end.isoformat(),
        "complete": scan.complete,
        "pages": scan.pages,
        "events_read": scan.events_read,
        "own_calls_ignored": scan.own_calls_ignored,
        "gaps": list(scan.gaps),
        "notes": list(scan.notes),
        "groups": [group.to_dict() for group in groups],
    }


def no_objects_under_key(ctx: StepContext) -> GuardResult:
    """Pass when no S3 object in the listed buckets is encrypted under the key.

    Deleting the key makes such objects unreadable for good, so an incomplete
    scan fails too, and only --accept-data-loss overrides this guard.
    """
    resources = resources_of(ctx.environment)
    resources.validate()
    key_arn = ctx.target_key()
    source = scan_objects(
        ctx.aws,
        region=ctx.environment.region,
        profile=resources.profile,
        buckets=resources.s3_buckets,
        key_arn=key_arn,
        resolver=KeyResolver(ctx.aws, resources.profile),
        max_objects=max_objects(ctx.params),
        workers=DEFAULT_WORKERS,
        inventory=resources.s3_inventory,
        progress=_progress(ctx),
    )
    _record(ctx, "s3_objects", source.to_dict())
    if source.status == SOURCE_CLEAR:
        checked = ", ".join(resources.s3_buckets)
        return GuardResult(
            NO_OBJECTS_UNDER_KEY,
            True,
            f"no S3 object under key {key_arn} in {checked}"
            if checked
            else "no S3 buckets listed for the environment, so no objects were read",
        )

    if source.reasons:
        head = (
            f"S3 objects remain under key {key_arn}; they become unreadable for "
            "good once it is deleted:"
        )
    else:
        head = (
            f"the S3 objects under key {key_arn} could not all be read, so some "
            "may remain and become unreadable for good once it is deleted:"
        )
    lines = [head, *(f"in use: {r}" for r in source.reasons)]
    lines.extend(f"gap: {gap}" for gap in source.gaps)
    return GuardResult(
        NO_OBJECTS_UNDER_KEY,
        False,
        INDENT.join(lines),
        "copy those objects in place under the new key or delete them, or accept "
        f"the loss: {_override(ctx, 'accept-data-loss')}",
        override="accept_data_loss",
    )


# Shared parts


def _disabled_at(ctx: StepContext) -> datetime | None:
    assert ctx.run is not None
    text = ctx.run.data.get("disabled_at")
    return parse_time(str(text)) if text else None


def _no_disable_time(ctx: StepContext, guard: str) -> GuardResult:
    return GuardResult(
        guard,
        False,
        "the run records no time at which kmsguard disabled the key, so neither "
        "the observation period nor the use since the disable can be checked",
        f"kmsguard history {ctx.env_name}; to go on anyway: "
        f"{_override(ctx, 'accept-risk')}",
        overridable=True,
    )


def _override(ctx: StepContext, option: str) -> str:
    return f'{ctx.command(ctx.step.name)} --{option} "REASON"'


def _record(ctx: StepContext, name: str, value: Any) -> None:
    evidence = ctx.facts.get("evidence")
    if not isinstance(evidence, dict):
        evidence = {}
        ctx.facts["evidence"] = evidence
    evidence[name] = value


def _progress(ctx: StepContext) -> Progress | None:
    value = ctx.params.get("progress")
    return cast(Progress, value) if callable(value) else None


def _sleep(ctx: StepContext) -> Callable[[float], None]:
    value = ctx.params.get("cloudtrail_sleep")
    return cast(Callable[[float], None], value) if callable(value) else time.sleep


EVIDENCE_GUARDS: dict[str, Guard] = {
    KEY_OUT_OF_USE: key_out_of_use,
    OBSERVATION_PERIOD_PASSED: observation_period_passed,
    NO_EVENTS_SINCE_DISABLE: no_events_since_disable,
    NO_OBJECTS_UNDER_KEY: no_objects_under_key,
}
