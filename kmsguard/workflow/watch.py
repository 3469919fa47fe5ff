"""A one-shot watch of a retired key: calls on it since kmsguard disabled it.

Once the key is disabled, every Encrypt, Decrypt, ReEncrypt* or
GenerateDataKey* call on it fails with DisabledException, or with
KMSInvalidStateException once the key is pending deletion. Each such call,
like one denied access, is a caller that still depends on the key. The watch
reads CloudTrail from the disable step to now and reports every such call, so
that a scheduled job can alert and the operator can recover the key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.aws import Kms
from kmsguard.workflow.errors import InvalidInput, KmsguardError, Refused
from kmsguard.workflow.evidence import CloudTrailScan, KeyUseEvent, events_since
from kmsguard.workflow.evidence_cloudtrail import EVENT_HISTORY
from kmsguard.workflow.records import Run, parse_time

if TYPE_CHECKING:
    from kmsguard.workflow.app import App

log = logging.getLogger(__name__)

# The meaning of each error code of a failed call on a retired key.
KNOWN_ERRORS = {
    "DisabledException": "the key is disabled",
    "KMSInvalidStateException": "the key is pending deletion",
    "AccessDeniedException": "the caller was denied access to the key",
    "AccessDenied": "the caller was denied access to the key",
}
# Events older than this margin inside the 90 days of event history are read,
# so that a window that starts at the limit is not cut short.
HISTORY_MARGIN = timedelta(hours=1)


@dataclass
class WatchReport:
    """The calls on an environment's retired key since the step that retired it."""

    environment: str
    checked_at: datetime
    run: Run | None = None
    key_arn: str | None = None
    key_state: str | None = None
    since: datetime | None = None
    scan: CloudTrailScan | None = None
    events: list[KeyUseEvent] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def gaps(self) -> list[str]:
        return list(self.scan.gaps) if self.scan else []

    @property
    def problems(self) -> bool:
        """Return whether a scheduler should alert: calls seen, or a blind spot."""
        return bool(self.events or self.gaps)

    @property
    def recover_command(self) -> str:
        if self.run is None:
            return ""
        if self.run.data.get("deletion_date"):
            return f"kmsguard recover cancel-deletion {self.environment}"
        return f"kmsguard recover re-enable {self.environment}"

    def message(self) -> str:
        """Return the one-line summary a failed check prints."""
        if self.events:
            return (
                f"{len(self.events)} call(s) on retired key {self.key_arn} of "
                f"{self.environment!r} since {_iso(self.since)}: a caller still "
                f"depends on it. If the pipeline is one of them, run "
                f"`{self.recover_command}`"
            )
        return (
            f"the watch of key {self.key_arn} could not read every event since "
            f"{_iso(self.since)}: " + "; ".join(self.gaps)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "checked_at": self.checked_at.isoformat(),
            "run_id": self.run.id if self.run else None,
            "procedure": self.run.procedure if self.run else None,
            "state": self.run.state if self.run else None,
            "key_arn": self.key_arn,
            "key_state": self.key_state,
            "since": _iso(self.since),
            "events": [_event_dict(event) for event in self.events],
            "complete": not self.gaps,
            "gaps": self.gaps,
            "notes": list(self.notes),
            "recover": self.recover_command if self.events else None,
            "scan": self.scan.to_dict() if self.scan else None,
        }

    def lines(self) -> list[str]:
        """Return the report as text for the operator."""
        if self.run is None:
            return list(self.notes)
        text = [
            f"key {self.key_arn} of {self.environment} ({self.run.procedure} run "
            f"{self.run.id}, {self.run.state}, reads {self.key_state or 'unknown'}): "
            f"{len(self.events)} call(s) since {_iso(self.since)}"
        ]
        text.extend(f"  {_event_line(event)}" for event in self.events)
        text.extend(f"incomplete: {gap}" for gap in self.gaps)
        text.extend(f"note: {note}" for note in self.notes)
        if self.events:
            text.append(f"next: {self.recover_command}")
        return text


def watch_environment(
    app: App,
    environment: str,
    *,
    since: datetime | None = None,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> WatchReport:
    """Report the calls on the environment's retired key since it was retired.

    Args:
        since: report only calls after this time, for example after the last
            calls were looked into; never earlier than the disable step.
        now: the end of the window (default: the current time).
        sleep: waits between CloudTrail pages and back-offs; tests pass a fake.

    Raises:
        InvalidInput: unknown environment, or `since` without a time zone.
    """
    now = now or datetime.now(UTC)
    if since is not None and since.tzinfo is None:
        raise InvalidInput(
            f"--since {since.isoformat()} has no time zone; add one, for example "
            f"{since.isoformat()}Z for UTC"
        )
    env = app.environment(environment)
    report = WatchReport(environment, now)
    run = retired_run(app, environment)
    if run is None:
        report.notes.append(
            f"no key of {environment!r} is disabled or pending deletion by kmsguard; "
            "nothing to watch"
        )
        return report

    report.run = run
    report.key_arn = str(run.data.get("retired_key") or run.current_key_arn)
    report.since = _window_start(report, run, since, now)
    report.key_state = _key_state(app, env.region, report.key_arn)
    # Only the presence of calls that have arrived matters here, so a window
    # younger than CloudTrail's delivery delay is not a gap.
    report.scan = events_since(
        app.aws(),
        region=env.region,
        key_arn=report.key_arn,
        since=report.since,
        now=now,
        presence_only=True,
        sleep=sleep,
    )
    report.events = sorted(report.scan.events, key=lambda e: e.event_time)
    log.info(
        "watch of %s found %d call(s) since %s",
        report.key_arn,
        len(report.events),
        report.since.isoformat(),
    )
    return report


def retired_run(app: App, environment: str) -> Run | None:
    """Return the run whose key recovery would act on, or None when there is none."""
    from kmsguard.workflow.recovery import recoverable_run

    try:
        return recoverable_run(app, environment)
    except Refused:
        return None


def _window_start(
    report: WatchReport, run: Run, since: datetime | None, now: datetime
) -> datetime:
    step_time = parse_time(str(run.data.get("disabled_at") or run.updated_at))
    start = max(step_time, since) if since else step_time
    oldest = now - EVENT_HISTORY + HISTORY_MARGIN
    if start < oldest:
        report.notes.append(
            f"the key was retired at {step_time.isoformat()}, but CloudTrail keeps "
            f"90 days of events, so calls before {oldest.isoformat()} were not read"
        )
        start = oldest
    return start


def _key_state(app: App, region: str, key_arn: str) -> str | None:
    try:
        return Kms(app.aws(), region).describe(key_arn).state
    except KmsguardError as exc:
        log.warning("could not read the state of key %s: %s", key_arn, exc)
        return None


def _event_dict(event: KeyUseEvent) -> dict[str, Any]:
    data = event.to_dict()
    data["meaning"] = KNOWN_ERRORS.get(event.error_code or "", _meaning(event))
    return data


def _meaning(event: KeyUseEvent) -> str:
    if event.error_code:
        return f"the call failed with {event.error_code}"
    return "the call succeeded, so the key was usable again at that time"


def _event_line(event: KeyUseEvent) -> str:
    outcome = event.error_code or "succeeded"
    meaning = KNOWN_ERRORS.get(event.error_code or "", _meaning(event))
    return (
        f"{event.event_time.isoformat()} {event.event_name} by {event.principal} "
        f"(account {event.account}): {outcome}: {meaning}"
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
