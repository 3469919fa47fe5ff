"""The inputs of a usage report for an environment, and the report itself.

The guards and the `kmsguard evidence` command read the same inputs: the
environment's resources, the time support confirmed the switch, the CloudTrail
look-back and delivery delay, and the S3 object limit. Step options and the
KMSGUARD_CLOUDTRAIL_DELAY variable are checked here before any AWS call, so
bad input exits with status 2 and writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.environment_resources import resources_of
from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.evidence import (
    DEFAULT_MAX_OBJECTS,
    UsageReport,
    gather_usage_report,
)
from kmsguard.workflow.evidence_cloudtrail import delivery_delay
from kmsguard.workflow.records import Environment, Run, parse_time

if TYPE_CHECKING:
    from kmsguard.workflow.app import App
    from kmsguard.workflow.store import SqliteStore

Progress = Callable[[str, int, int | None], None]

DEFAULT_SINCE = "7d"
DEFAULT_OBSERVATION_DAYS = 7
MIN_OBSERVATION_DAYS = 1
# Longer spans are typing mistakes, and they would overflow datetime arithmetic.
MAX_SPAN = timedelta(days=3650)
DURATION_RE = re.compile(r"^(?P<amount>\d+)(?P<unit>[dhm])$")
DURATION_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_duration(text: Any, option: str = "--since") -> timedelta:
    """Parse a duration such as 7d, 36h or 90m.

    Raises:
        InvalidInput: not a positive whole number of days, hours or minutes, or
            longer than 3650 days.
    """
    value = str(text).strip().lower()
    match = DURATION_RE.match(value)
    if match is None or int(match["amount"]) == 0:
        raise InvalidInput(
            f"invalid {option} {text!r}: give a positive whole number of days, hours "
            "or minutes, for example 7d, 36h or 90m"
        )
    amount = int(match["amount"])
    if amount > MAX_SPAN / timedelta(**{DURATION_UNITS[match["unit"]]: 1}):
        raise InvalidInput(
            f"invalid {option} {text!r}: it is longer than 3650 days; CloudTrail "
            "keeps 90 days of events, so give 90d or less"
        )
    return timedelta(**{DURATION_UNITS[match["unit"]]: amount})


def lookback(params: dict[str, Any]) -> timedelta:
    """Return the CloudTrail look-back of a step, from its `since` option."""
    return parse_duration(params.get("since") or DEFAULT_SINCE)


def max_objects(params: dict[str, Any]) -> int:
    """Return the most S3 objects a step reads, from its `max_objects` option.

    Raises:
        InvalidInput: a negative or non-integer value.
    """
    value = params.get("max_objects")
    if value is None:
        return DEFAULT_MAX_OBJECTS
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(
            f"invalid --max-objects {value!r}: give 0 or more S3 objects to read "
            f"(default {DEFAULT_MAX_OBJECTS})"
        )
    return value


def observation_days(params: dict[str, Any]) -> int:
    """Return the days a key must stay disabled before its deletion is scheduled.

    Raises:
        InvalidInput: fewer than 1 day, more than 3650 days, or not an integer.
    """
    value = params.get("observation_days")
    if value is None:
        return DEFAULT_OBSERVATION_DAYS
    limit = MAX_SPAN.days
    valid = isinstance(value, int) and not isinstance(value, bool)
    if not valid or not MIN_OBSERVATION_DAYS <= value <= limit:
        raise InvalidInput(
            f"invalid --observation-days {value!r}: give {MIN_OBSERVATION_DAYS} to "
            f"{limit} days (default {DEFAULT_OBSERVATION_DAYS}). For a shorter "
            'wait, drop --observation-days and give --accept-risk "REASON"'
        )
    return int(value)


def validate_override_reasons(params: dict[str, Any]) -> None:
    """Raise InvalidInput for an override option given with an empty reason."""
    for name, option in (
        ("accept_risk", "--accept-risk"),
        ("accept_data_loss", "--accept-data-loss"),
    ):
        value = params.get(name)
        if value is not None and not str(value).strip():
            raise InvalidInput(
                f"{option} is empty: give the reason that is recorded with your "
                f'name, for example {option} "pipeline stopped; ticket SUP-1234"'
            )


def validate_disable_params(params: dict[str, Any]) -> None:
    """Check the options of a disable step, and the delay variable, without I/O."""
    lookback(params)
    max_objects(params)
    validate_override_reasons(params)
    delivery_delay()


def validate_deletion_params(params: dict[str, Any]) -> None:
    """Check the options of a schedule-deletion step, and the delay variable."""
    observation_days(params)
    max_objects(params)
    validate_override_reasons(params)
    delivery_delay()


def confirmation_time(store: SqliteStore, run: Run | None) -> datetime | None:
    """Return when support last confirmed the run's ticket, or None."""
    if run is None:
        return None
    times = [
        parse_time(confirmation.confirmed_at)
        for confirmation in store.confirmations(run.id)
        if confirmation.ticket_id == run.ticket_id
    ]
    return max(times) if times else None


def environment_report(
    app: App,
    env_name: str,
    *,
    key: str | None = None,
    since: str | None = None,
    max_object_count: int | None = None,
    progress: Progress | None = None,
) -> UsageReport:
    """Gather the usage report of a key for an environment, writing nothing.

    The key is `key`, resolved in the environment's region, or else the current
    key of the environment's open run. When that run records support's
    confirmation, the report waits for CloudTrail to deliver the calls since
    it, as the disable step does. Without a confirmation it does not wait.

    Raises:
        InvalidInput: an unknown environment, a malformed option, an unknown
            key, or no key given and no open run with a current key.
    """
    params = {"since": since, "max_objects": max_object_count}
    validate_disable_params(params)
    environment = app.environment(env_name)
    app.check_region(env_name)
    run = app.store.open_run(env_name)
    key_arn = _report_key(app, environment, run, key)
    aws = app.aws()
    caller = aws.caller_identity(environment.region)["Arn"]
    return gather_usage_report(
        aws,
        region=environment.region,
        key_arn=key_arn,
        resources=resources_of(environment),
        lookback=lookback(params),
        confirmed_at=confirmation_time(app.store, run),
        max_objects=max_objects(params),
        own_caller_arns=(caller,),
        progress=progress,
    )


def _report_key(
    app: App, environment: Environment, run: Run | None, key: str | None
) -> str:
    if key:
        from kmsguard.workflow.aws import Kms

        return Kms(app.aws(), environment.region).resolve(key).arn
    if run is not None and run.current_key_arn:
        return run.current_key_arn
    found = f"an open {run.procedure} run with no current key" if run else "no open run"
    raise InvalidInput(
        f"environment {environment.name!r} has {found}, so there is no key to "
        f"check; give one with `kmsguard evidence {environment.name} --key KEY`"
    )
