"""CloudTrail event records that count as use of a key, and their grouping.

Only Encrypt, Decrypt, ReEncrypt* and GenerateDataKey* count as use, failed
calls included, because a call that failed with DisabledException shows a
caller that still depends on the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

KMS_EVENT_SOURCE = "kms.amazonaws.com"
USE_EVENT_NAMES = ("Encrypt", "Decrypt")
USE_EVENT_PREFIXES = ("ReEncrypt", "GenerateDataKey")


@dataclass(frozen=True)
class KeyUseEvent:
    """One cryptographic call on the key, as CloudTrail recorded it."""

    event_id: str
    event_name: str
    event_time: datetime
    account: str
    principal: str
    encryption_context: dict[str, str] = field(default_factory=dict)
    error_code: str | None = None
    user_agent: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_name": self.event_name,
            "event_time": self.event_time.isoformat(),
            "account": self.account,
            "principal": self.principal,
            "encryption_context": dict(self.encryption_context),
            "error_code": self.error_code,
        }


def is_key_use(event_name: str) -> bool:
    """Return True for the KMS operations that count as use of a key."""
    return event_name in USE_EVENT_NAMES or event_name.startswith(USE_EVENT_PREFIXES)


def parse_event(raw: dict[str, Any]) -> KeyUseEvent | None:
    """Return the key-use event in one LookupEvents entry, or None for other calls.

    An entry whose CloudTrailEvent JSON cannot be parsed still counts when its
    EventName is a cryptographic operation, with the account unknown.
    """
    try:
        detail = json.loads(raw.get("CloudTrailEvent") or "{}")
    except ValueError:
        detail = {}
    if not isinstance(detail, dict):
        detail = {}

    name = str(detail.get("eventName") or raw.get("EventName") or "")
    source = str(
        detail.get("eventSource") or raw.get("EventSource") or KMS_EVENT_SOURCE
    )
    if source != KMS_EVENT_SOURCE or not is_key_use(name):
        return None

    identity = detail.get("userIdentity") or {}
    parameters = detail.get("requestParameters") or {}
    context = parameters.get("encryptionContext") or {}
    if not isinstance(context, dict):
        context = {}
    return KeyUseEvent(
        event_id=str(raw.get("EventId") or detail.get("eventID") or ""),
        event_name=name,
        event_time=_event_time(raw, detail),
        account=str(
            identity.get("accountId") or detail.get("recipientAccountId") or "unknown"
        ),
        principal=str(
            identity.get("arn")
            or identity.get("invokedBy")
            or identity.get("type")
            or ""
        ),
        encryption_context={str(k): str(v) for k, v in context.items()},
        error_code=str(detail["errorCode"]) if detail.get("errorCode") else None,
        user_agent=str(detail.get("userAgent") or ""),
    )


def _event_time(raw: dict[str, Any], detail: dict[str, Any]) -> datetime:
    value = raw.get("EventTime")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(detail.get("eventTime") or "1970-01-01T00:00:00Z")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class KeyUseGroup:
    """Events with the same name, calling account and encryption context."""

    event_name: str
    account: str
    encryption_context: dict[str, str]
    latest: datetime
    events: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    principals: set[str] = field(default_factory=set)

    def add(self, event: KeyUseEvent) -> None:
        self.events += 1
        self.latest = max(self.latest, event.event_time)
        self.principals.add(event.principal)
        if event.error_code:
            count = self.error_codes.get(event.error_code, 0)
            self.error_codes[event.error_code] = count + 1

    def describe(self) -> str:
        """Return one line naming the call, the caller, the context and the latest time.

        Failed calls are listed by error code, because they count as use too.
        """
        context = ", ".join(
            f"{k}={v}" for k, v in sorted(self.encryption_context.items())
        )
        text = (
            f"{self.event_name} by account {self.account} with encryption context "
            f"{context or '(none)'}: {self.events} event(s), latest at "
            f"{self.latest.isoformat()}"
        )
        if self.error_codes:
            codes = ", ".join(
                f"{code} x{n}" for code, n in sorted(self.error_codes.items())
            )
            text += f" (failed calls count too: {codes})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_name": self.event_name,
            "account": self.account,
            "encryption_context": dict(self.encryption_context),
            "events": self.events,
            "latest": self.latest.isoformat(),
            "error_codes": dict(self.error_codes),
            "principals": sorted(self.principals),
        }


def group_key_use(events: list[KeyUseEvent]) -> list[KeyUseGroup]:
    """Group events by name, calling account and encryption context, newest first."""
    groups: dict[tuple[str, str, str], KeyUseGroup] = {}
    for event in events:
        context_key = json.dumps(event.encryption_context, sort_keys=True)
        identity = (event.event_name, event.account, context_key)
        if identity not in groups:
            groups[identity] = KeyUseGroup(
                event.event_name,
                event.account,
                event.encryption_context,
                event.event_time,
            )
        groups[identity].add(event)
    return sorted(groups.values(), key=lambda group: group.latest, reverse=True)
