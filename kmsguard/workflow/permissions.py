"""IAM actions the current credentials were allowed or denied, from AWS responses.

NOTE: kmsguard may not call iam:SimulatePrincipalPolicy, so it cannot ask AWS
whether an action would be allowed. It only learns from the responses to
the read calls it makes: a successful call shows the action is allowed, and an
access-denied response shows it is not. Actions it did not call, which include
every write, stay "not tested".
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kmsguard.workflow.iam_policy import OPERATIONS

# Error codes that AWS services return for a call the caller may not make.
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthorizationError",
    }
)

_ids = itertools.count()


@dataclass
class CallRecorder:
    """Record the response to each AWS call made through the watched boto3 clients."""

    allowed: set[str] = field(default_factory=set)
    denied: dict[str, str] = field(default_factory=dict)

    def record(self, http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
        """Take one `after-call` event of botocore: the operation and its response."""
        operation = f"{model.service_model.service_name}:{model.name}"
        if http_response.status_code < 300:
            self.allowed.add(operation)
            return
        error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
        if error.get("Code") in ACCESS_DENIED_CODES:
            self.denied[operation] = f"{error.get('Code')}: {error.get('Message', '')}"

    @contextmanager
    def watching(self, clients: Iterable[Any]) -> Iterator[CallRecorder]:
        """Record the calls of `clients` inside the block, then stop recording."""
        unique = f"kmsguard-call-recorder-{next(_ids)}"
        watched = list(clients)
        for client in watched:
            client.meta.events.register("after-call", self.record, unique_id=unique)
        try:
            yield self
        finally:
            for client in watched:
                client.meta.events.unregister("after-call", unique_id=unique)


@dataclass(frozen=True)
class PermissionReport:
    """IAM actions seen allowed or denied, and those the calls could not test."""

    caller_arn: str | None
    allowed: list[str]
    denied: dict[str, str]
    not_tested: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "caller_arn": self.caller_arn,
            "allowed": self.allowed,
            "denied": self.denied,
            "not_tested": self.not_tested,
            "method": (
                "inferred from the responses to the read calls made; writes and "
                "actions not called are not tested"
            ),
        }


def permission_report(
    recorder: CallRecorder, needed: Iterable[str], caller_arn: str | None
) -> PermissionReport:
    """Compare the recorded responses with the operations kmsguard needs.

    An action counts as denied when any call it authorizes was denied, because
    one denial is enough to break the step that makes that call.
    """
    denied: dict[str, str] = {}
    for operation, message in recorder.denied.items():
        for action in _actions(operation):
            denied.setdefault(action, message)
    allowed = {
        action for op in recorder.allowed for action in _actions(op)
    } - denied.keys()
    wanted = {action for op in needed for action in OPERATIONS[op].actions}
    return PermissionReport(
        caller_arn=caller_arn,
        allowed=sorted(allowed),
        denied=dict(sorted(denied.items())),
        not_tested=sorted(wanted - allowed - denied.keys()),
    )


def _actions(operation: str) -> tuple[str, ...]:
    # A call's response shows only whether the action named like it is allowed: a denied
    # CreateKey does not show whether kms:TagResource is allowed.
    known = OPERATIONS.get(operation)
    return known.actions[:1] if known else (operation,)
