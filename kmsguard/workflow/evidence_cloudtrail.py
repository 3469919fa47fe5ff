"""The CloudTrail source: cryptographic calls on the key in the account's event history.

LookupEvents reads at most the last 90 days, allows 2 requests per second per
account and region, and events reach it up to about 15 to 20 minutes late.
kmsguard's own calls never count as use.
"""

from __future__ import annotations

import logging
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
DELIVERY_DELAY = timedelta(minutes=20)
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

    The scan is incomplete when `since` is less than 20 minutes before `now`
    (events may not have been delivered yet), when the window reaches
    past the 90 days of event history, was cut short, or a trail drops KMS events.
    """
    now = now or datetime.now(UTC)
    validate_key_arn(key_arn, region)
    require_aware(since, "since")
    require_aware(now, "now")
    return read_key_events(
        aws,
        region=region,
        key_arn=key_arn,
        start=since,
        now=now,
        own_caller_arns=own_caller_arns,
        sleep=sleep,
        presence_only=presence_only,
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
    progress: Progress | None = None,
    presence_only: bool = False,
) -> CloudTrailScan:
    """Check the trails, then scan the event history from `start` up to `now`.

    Events of the last 20 minutes count as use when they have arrived, but
    their absence proves nothing, because delivery takes up to 20 minutes. So
    the scan is incomplete when `start` falls in those 20 minutes.
    """
    oldest = now - EVENT_HISTORY
    delivered_until = now - DELIVERY_DELAY
    scan = CloudTrailScan(key_arn, region, max(start, oldest), now)
    if start < oldest:
        scan.gaps.append(
            f"the window starts at {start.isoformat()}, but LookupEvents keeps only "
            f"90 days of events, so events before {oldest.isoformat()} were not "
            "read; use a lookback of at most 90 days"
        )

    trail_gaps, trail_notes = check_trails(aws, region)
    scan.gaps.extend(trail_gaps)
    scan.notes.extend(trail_notes)

    # NOTE: a use in the last 20 minutes that CloudTrail has not delivered
    # yet is not seen, and it does not make the scan incomplete either. Use
    # that started right after support's confirmation can therefore be missed
    # by a disable run within 20 minutes of the confirmation.
    if start > delivered_until and not presence_only:
        scan.gaps.append(
            f"events after {start.isoformat()} may not have reached CloudTrail "
            "yet, because delivery takes up to 20 minutes; run the check again "
            f"after {(start + DELIVERY_DELAY).isoformat()}"
        )
    _scan_pages(
        aws.client("cloudtrail", region), scan, own_caller_arns, sleep, progress
    )
    return scan


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
    log.warning(
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
            f"{_hours(retention + DELIVERY_DELAY)} (at most 90 days)"
        )

    source.note(
        f"read {scan.events_read} event(s) on {scan.pages} page(s) between "
        f"{scan.start.isoformat()} and {scan.end.isoformat()}"
    )
    for note in scan.notes:
        source.note(note)
    if scan.own_calls_ignored:
        source.note(
            f"{scan.own_calls_ignored} call(s) made by kmsguard itself were ignored"
        )
    return source


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g} h"
