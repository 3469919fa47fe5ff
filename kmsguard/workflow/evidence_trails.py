"""A check that the account's CloudTrail trails log KMS key use at all.

A trail can drop KMS events with ExcludeManagementEventSources, with basic
selectors that log no read events or no management events, or with advanced
selectors that do not match KMS read events. Such a trail makes the account's
record of key use incomplete, which is a gap in the evidence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kmsguard.workflow.aws import AwsSession
from kmsguard.workflow.evidence_events import KMS_EVENT_SOURCE
from kmsguard.workflow.evidence_keys import aws_errors, failure_text

log = logging.getLogger(__name__)

# The fields that trail selectors see on a KMS cryptographic call: KMS records
# Encrypt, Decrypt and GenerateDataKey as read-only management events.
KMS_USE_EVENT = {
    "eventCategory": "Management",
    "eventSource": KMS_EVENT_SOURCE,
    "readOnly": "true",
    "eventName": "Decrypt",
}


def check_trails(aws: AwsSession, region: str) -> tuple[list[str], list[str]]:
    """Return (gaps, notes): trails in `region` that drop KMS events, and read failures.

    A failure to read the trails is only a note, because LookupEvents reads the
    event history whatever the trails log.
    """
    client = aws.client("cloudtrail", region)
    try:
        trails = client.describe_trails(includeShadowTrails=True).get("trailList", [])
    except aws_errors() as exc:
        log.warning("could not read CloudTrail trails in %s: %s", region, exc)
        text = failure_text(exc, "cloudtrail:DescribeTrails", region)
        return [], [f"trail settings were not checked: {text}"]

    if not trails:
        return [], [
            f"no CloudTrail trail covers {region}; the 90-day event history read "
            "by LookupEvents is the only record of key use"
        ]

    gaps: list[str] = []
    notes: list[str] = []
    for trail in trails:
        gap, note = _check_trail(aws, region, trail)
        if gap:
            gaps.append(gap)
        if note:
            notes.append(note)
    return gaps, notes


def _check_trail(
    aws: AwsSession, region: str, trail: dict[str, Any]
) -> tuple[str | None, str | None]:
    name = str(trail.get("Name", trail.get("TrailARN", "?")))
    # Multi-Region and organization trails appear in every Region as shadow
    # trails, so their selectors are read in the home Region that defines them.
    home = str(trail.get("HomeRegion") or region)
    client = aws.client("cloudtrail", home)
    try:
        selectors = client.get_event_selectors(TrailName=trail.get("TrailARN", name))
    except aws_errors() as exc:
        log.warning("could not read event selectors of trail %s: %s", name, exc)
        text = failure_text(exc, "cloudtrail:GetEventSelectors", name)
        return None, f"event selectors of trail {name} were not checked: {text}"

    exclusion = kms_exclusion(selectors)
    if exclusion is None:
        return None, None
    return (
        f"trail {name} excludes KMS events ({exclusion}), so the account's record of "
        "key use is incomplete and kmsguard does not claim the key is unused. "
        f"Fix: log KMS read management events on trail {name}, for example by "
        f"removing {KMS_EVENT_SOURCE} from its ExcludeManagementEventSources"
    ), None


def kms_exclusion(selectors: dict[str, Any]) -> str | None:
    """Return why a trail's event selectors drop KMS use, or None when they log it."""
    advanced = selectors.get("AdvancedEventSelectors") or []
    if advanced:
        if any(_advanced_selector_matches(s) for s in advanced):
            return None
        return "no advanced event selector matches KMS read management events"

    basic = selectors.get("EventSelectors") or []
    reasons = [_basic_selector_exclusion(selector) for selector in basic]
    if not reasons or any(reason is None for reason in reasons):
        return None
    return reasons[0]


def _basic_selector_exclusion(selector: dict[str, Any]) -> str | None:
    if not selector.get("IncludeManagementEvents", True):
        return "it logs no management events"
    if selector.get("ReadWriteType", "All") == "WriteOnly":
        return "it logs write events only, and KMS cryptographic calls are read events"
    if KMS_EVENT_SOURCE in selector.get("ExcludeManagementEventSources", []):
        return f"ExcludeManagementEventSources contains {KMS_EVENT_SOURCE}"
    return None


def _advanced_selector_matches(selector: dict[str, Any]) -> bool:
    return all(_field_matches(field) for field in selector.get("FieldSelectors", []))


def _field_matches(field: dict[str, Any]) -> bool:
    value = KMS_USE_EVENT.get(str(field.get("Field")))
    if value is None:
        # Fields such as resources.type apply to data events, not to KMS calls.
        return True

    def starts(prefixes: list[str]) -> bool:
        return any(value.startswith(prefix) for prefix in prefixes)

    def ends(suffixes: list[str]) -> bool:
        return any(value.endswith(suffix) for suffix in suffixes)

    conditions: dict[str, Callable[[list[str]], bool]] = {
        "Equals": lambda values: value in values,
        "NotEquals": lambda values: value not in values,
        "StartsWith": starts,
        "NotStartsWith": lambda values: not starts(values),
        "EndsWith": ends,
        "NotEndsWith": lambda values: not ends(values),
    }
    return all(
        condition(field[operator])
        for operator, condition in conditions.items()
        if field.get(operator)
    )
