"""The CloudTrail source: cryptographic calls on the key in the account's event history.

LookupEvents reads at most the last 90 days, allows 2 requests per second per
account and region, and events reach it up to about 15 to 20 minutes late.
kmsguard assumes 20 minutes unless KMSGUARD_CLOUDTRAIL_DELAY sets another
delay, for an AWS simulator that delivers at once. kmsguard's own calls never
count as use.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kmsguard.workflow.aws import AwsSession, error_code
from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.evidence_events import (
    KeyUseEvent,
    KeyUseGroup,
    group_key_use,
    parse_event,
)
from kmsguard.workflow.evidence_keys import aws_errors, failure_text, validate_key_arn
from kmsguard.workflow.evidence_report import SourceReport
from kmsguard.workflow.evidence_trails import check_trails

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]
Sleep = Callable[[float], None]

SOURCE = "cloudtrail"
EVENT_HISTORY = timedelta(days=90)
DELIVERY_DELAY = timedelta(minutes=20)  # unless KMSGUARD_CLOUDTRAIL_DELAY is set
DELAY_VARIABLE = "KMSGUARD_CLOUDTRAIL_DELAY"
MAX_DELAY_SECONDS = 3600
PAGE_INTERVAL = 0.5  # seconds between pages: LookupEvents allows 2 requests a second
PAGE_SIZE = 50  # the most LookupEvents returns in one page
MAX_ATTEMPTS = 6  # one request and five retries when throttled
FIRST_BACKOFF = 1.0  # seconds, doubled after each throttled attempt
THROTTLING_CODES = ("ThrottlingException", "Throttling", "TooManyRequestsException")
OWN_USER_AGENT = "kmsguard"  # AwsSession adds it to every request's User-Agent
MAX_REASONS = 10  # groups of key use named as reasons; the findings list them all


@dataclass
class CloudTrailScan:
    """The key-use events found in one LookupEvents window, and what was not read."""

    key_arn: str
    region: str
    start: datetime
    end: datetime
    events: list[KeyUseEvent] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pages: int = 0
    events_read: int = 0
    own_calls_ignored: int = 0
    delivery_delay: timedelta = DELIVERY_DELAY
    # The time by which every call since support's confirmation will have
    # been delivered, while that is still to come.
    retry_after: datetime | None = None

    @property
    def complete(self) -> bool:
        return not self.gaps

    def groups(self) -> list[KeyUseGroup]:
        """Group the events by name, account and encryption context, newest first."""
        return group_key_use(self.events)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_arn": self.key_arn,
            "region": self.region,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "complete": self.complete,
            "pages": self.pages,
            "events_read": self.events_read,
            "own_calls_ignored": self.own_calls_ignored,
            "events": [event.to_dict() for event in self.events],
            "gaps": list(self.gaps),
            "notes": list(self.notes),
        }


def delivery_delay() -> timedelta:
    """Return the CloudTrail delivery delay: KMSGUARD_CLOUDTRAIL_DELAY, else 20 min.

    Raises:
        InvalidInput: the variable is not a whole number of seconds from 0 to 3600.
    """
    text = os.environ.get(DELAY_VARIABLE, "").strip()
    if not text:
        return DELIVERY_DELAY
    seconds = int(text) if re.fullmatch(r"[0-9]+", text) else -1
    if not 0 <= seconds <= MAX_DELAY_SECONDS:
        raise InvalidInput(
            f"invalid {DELAY_VARIABLE}={text!r}: give the whole seconds CloudTrail "
            f"may take to deliver an event, from 0 to {MAX_DELAY_SECONDS} (default "
            f"{int(DELIVERY_DELAY.total_seconds())}); set 0 only for an AWS "
            "simulator that delivers events at once"
        )
    return timedelta(seconds=seconds)


def require_aware(value: datetime, name: str) -> None:
    """Raise InvalidInput for a datetime without a time zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(
            f"{name} {value.isoformat()} has no time zone; give an aware datetime, "
            "for example datetime.now(UTC)"
        )


def events_since(
    aws: AwsSession,
    *,
    region: str,
    key_arn: str,
    since: datetime,
    now: datetime | None = None,
    own_caller_arns: Collection[str] = (),
    sleep: Sleep = time.sleep,
    presence_only: bool = False,
) -> CloudTrailScan:
    """Scan CloudTrail for use of the key from `since` up to `now`.

    With `presence_only`, the caller looks only for calls that have arrived,
    so a window younger than the delivery delay is not reported as a gap.

    The scan is incomplete when `since` is less than the delivery delay
    (`delivery_delay()`) before `now`, so that its events may not have arrived
    yet. It is also incomplete when the window reaches past the 90 days of
    event history, was cut short, or a trail drops KMS events.

    Raises:
        InvalidInput: a malformed argument, or an invalid
            KMSGUARD_CLOUDTRAIL_DELAY when `presence_only` is false.
    """
    now = now or datetime.now(UTC)
    validate_key_arn(key_arn, region)
    require_aware(since, "since")
    require_aware(now, "now")
    # A presence-only scan treats every window as delivered, as if delivery
    # took no time, so it does not read the variable.
    return read_key_events(
        aws,
        region=region,
        key_arn=key_arn,
        start=since,
        now=now,
        own_caller_arns=own_caller_arns,
        sleep=sleep,
        delay=timedelta() if presence_only else delivery_delay(),
    )


def read_key_events(
    aws: AwsSession,
    *,
    region: str,
    key_arn: str,
    start: datetime,
    now: datetime,
    own_caller_arns: Collection[str],
    sleep: Sleep,
    delay: timedelta,
    confirmed_at: datetime | None = None,
    progress: Progress | None = None,
) -> CloudTrailScan:
    """Check the trails, then scan the event history from `start` up to `now`.

    Events younger than `delay` count as use when they have arrived, but their
    absence proves nothing, because CloudTrail delivers them up to `delay`
    late. So the scan is incomplete while `start` is less than `delay` before
    `now`, and also while support's confirmation at `confirmed_at` is, because
    a call after the confirmation that has not arrived yet would show a caller
    that still uses the key.
    """
    oldest = now - EVENT_HISTORY
    scan = CloudTrailScan(key_arn, region, max(start, oldest), now)
    scan.delivery_delay = delay
    if start < oldest:
        scan.gaps.append(
            f"the window starts at {start.isoformat()}, but LookupEvents keeps only "
            f"90 days of events, so events before {oldest.isoformat()} were not "
            "read; use a lookback of at most 90 days"
        )

    trail_gaps, trail_notes = check_trails(aws, region)
    scan.gaps.extend(trail_gaps)
    scan.notes.extend(trail_notes)

    _check_delivery(scan, start, confirmed_at)
    _scan_pages(
        aws.client("cloudtrail", region), scan, own_caller_arns, sleep, progress
    )
    return scan


def _check_delivery(
    scan: CloudTrailScan, start: datetime, confirmed_at: datetime | None
) -> None:
    """Add a gap when the part of the window that matters is not delivered yet."""
    delay = scan.delivery_delay
    delivered_until = scan.end - delay
    # NOTE: once the delay has passed since the confirmation, the scan counts
    # as complete although the last `delay` of the window is not delivered.
    # A caller that made no call from the confirmation until `delay` before
    # the scan, and started calling the key in that last stretch, is missed.
    if confirmed_at is not None and confirmed_at > max(start, delivered_until):
        scan.retry_after = confirmed_at + delay
        scan.gaps.append(
            f"support's confirmation is from {confirmed_at.isoformat()}, and "
            f"CloudTrail delivers events up to {_span(delay)} late, so a call on "
            "the key after the confirmation may not have reached CloudTrail yet; "
            f"wait until {scan.retry_after.isoformat()} before disabling the key"
        )
    elif start > delivered_until:
        scan.gaps.append(
            f"events after {start.isoformat()} may not have reached CloudTrail "
            f"yet, because delivery takes up to {_span(delay)}; run the check "
            f"again after {(start + delay).isoformat()}"
        )


def _span(delay: timedelta) -> str:
    """Write a delay in whole minutes where it has them, else in seconds."""
    seconds = int(delay.total_seconds())
    if seconds and seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _scan_pages(
    client: Any,
    scan: CloudTrailScan,
    own_caller_arns: Collection[str],
    sleep: Sleep,
    progress: Progress | None,
) -> None:
    request: dict[str, Any] = {
        "LookupAttributes": [
            {"AttributeKey": "ResourceName", "AttributeValue": scan.key_arn}
        ],
        "StartTime": scan.start,
        "EndTime": scan.end,
        "MaxResults": PAGE_SIZE,
    }
    while True:
        if scan.pages:
            sleep(PAGE_INTERVAL)
        try:
            page = _lookup_page(client, request, sleep)
        except aws_errors() as exc:
            _record_cut_short(scan, exc)
            return

        scan.pages += 1
        _take_events(scan, page.get("Events", []), own_caller_arns)
        if progress:
            progress(SOURCE, scan.pages, None)
        if not page.get("NextToken"):
            return
        request["NextToken"] = page["NextToken"]


def _lookup_page(client: Any, request: dict[str, Any], sleep: Sleep) -> dict[str, Any]:
    """Call LookupEvents, backing off exponentially while it is throttled."""
    delay = FIRST_BACKOFF
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            page: dict[str, Any] = client.lookup_events(**request)
            return page
        except aws_errors() as exc:
            if error_code(exc) not in THROTTLING_CODES or attempt == MAX_ATTEMPTS:
                raise
            log.info(
                "LookupEvents throttled (attempt %d of %d); retrying in %.1f s",
                attempt,
                MAX_ATTEMPTS,
                delay,
            )
            sleep(delay)
            delay *= 2
    raise AssertionError("unreachable: the last attempt returns or raises")


def _record_cut_short(scan: CloudTrailScan, exc: Exception) -> None:
    # The gap below reports this to the operator; a warning would repeat it.
    log.debug(
        "LookupEvents on %s stopped after %d pages: %s", scan.key_arn, scan.pages, exc
    )
    oldest = min((event.event_time for event in scan.events), default=scan.end)
    scan.gaps.append(
        f"the CloudTrail scan stopped after {scan.pages} page(s), so events between "
        f"{scan.start.isoformat()} and {oldest.isoformat()} were not read: "
        f"{failure_text(exc, 'cloudtrail:LookupEvents', scan.key_arn)}"
    )


def _take_events(
    scan: CloudTrailScan,
    raw_events: list[dict[str, Any]],
    own_caller_arns: Collection[str],
) -> None:
    for raw in raw_events:
        scan.events_read += 1
        event = parse_event(raw)
        if event is None:
            continue
        if (
            OWN_USER_AGENT in event.user_agent.lower()
            or event.principal in own_caller_arns
        ):
            scan.own_calls_ignored += 1
            continue
        scan.events.append(event)


def cloudtrail_source(
    scan: CloudTrailScan, longest_retention: tuple[str, timedelta] | None
) -> SourceReport:
    """Build the CloudTrail source from a scan.

    `longest_retention` names the stream or queue that keeps data longest. When
    it keeps data longer than the window, a consumer that reads old records less
    often than the window could be missed, so the source is incomplete.
    """
    source = SourceReport(SOURCE)
    source.findings.append(
        {
            "window": {"start": scan.start.isoformat(), "end": scan.end.isoformat()},
            "pages": scan.pages,
            "events_read": scan.events_read,
            "own_calls_ignored": scan.own_calls_ignored,
            "delivery_delay_seconds": int(scan.delivery_delay.total_seconds()),
            "retry_after": _iso(scan.retry_after),
        }
    )
    groups = scan.groups()
    source.findings.extend(group.to_dict() for group in groups)
    source.reasons.extend(group.describe() for group in groups[:MAX_REASONS])
    if len(groups) > MAX_REASONS:
        source.reasons.append(
            f"and {len(groups) - MAX_REASONS} more groups of key use, listed in the "
            "JSON output"
        )

    source.gaps.extend(scan.gaps)
    if longest_retention and longest_retention[1] > scan.end - scan.start:
        label, retention = longest_retention
        source.gaps.append(
            f"{label} keeps records for {_hours(retention)}, longer than the "
            f"CloudTrail window of {_hours(scan.end - scan.start)}, so a reader of "
            "old records could be missed; use a lookback of at least "
            f"{_hours(retention + scan.delivery_delay)} (at most 90 days)"
        )

    source.note(
        f"read {scan.events_read} event(s) on {scan.pages} page(s) between "
        f"{scan.start.isoformat()} and {scan.end.isoformat()}"
    )
    for note in scan.notes:
        source.note(note)
    if scan.delivery_delay != DELIVERY_DELAY:
        source.note(
            f"{DELAY_VARIABLE} sets CloudTrail's delivery delay to "
            f"{_span(scan.delivery_delay)} instead of {_span(DELIVERY_DELAY)}"
        )
    if scan.own_calls_ignored:
        source.note(
            f"{scan.own_calls_ignored} call(s) made by kmsguard itself were ignored"
        )
    return source


def retry_after(source: SourceReport) -> str | None:
    """Return when the calls since support's confirmation will all be delivered.

    None when the CloudTrail source waits for no delivery.
    """
    for finding in source.findings:
        value = finding.get("retry_after")
        if value:
            return str(value)
    return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g} h"
