"""The one exception tree of kmsguard, each class carrying its exit status."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class KmsguardError(Exception):
    """Base of every error kmsguard raises on purpose.

    The message names what failed, on which value, and the command that moves
    the work forward. `exit_code` is the process exit status the CLI uses.
    """

    exit_code = 1

    def to_dict(self) -> dict[str, Any]:
        return {"error": str(self), "kind": type(self).__name__}


class InvalidInput(KmsguardError):
    """A value given by the operator is malformed, unknown or out of range."""

    exit_code = 2


# An unknown-environment error lists the registered names when there are at
# most this many, and otherwise points to `kmsguard env list`.
MAX_LISTED_ENVIRONMENTS = 5


def unknown_environment(name: str, known: Sequence[str]) -> InvalidInput:
    """Return the error for an environment name the database does not hold.

    Args:
        known: the registered environment names, to suggest the closest one
            and to list them when there are few.
    """
    add = f"`kmsguard env add {name} --region REGION --pipeline-account ACCOUNT_ID`"
    if not known:
        return InvalidInput(
            f"unknown environment {name!r}: no environment is registered yet. "
            f"Add it with {add}"
        )

    close = difflib.get_close_matches(name, known, n=1)
    registered = _registered_environments(sorted(known))
    if close:
        found = f"did you mean {close[0]!r}? {registered[0].upper()}{registered[1:]}"
    else:
        found = registered
    return InvalidInput(
        f"unknown environment {name!r}: {found}. To add {name!r}, run {add}"
    )


def _registered_environments(names: list[str]) -> str:
    if len(names) > MAX_LISTED_ENVIRONMENTS:
        return (
            f"{len(names)} environments are registered, and `kmsguard env list` "
            "lists them"
        )
    if len(names) == 1:
        return f"the only registered environment is {names[0]}"
    return f"the registered environments are {', '.join(names)}"


class OperationFailed(KmsguardError):
    """An AWS call or an internal operation failed; the run's state is unchanged."""

    exit_code = 1


class Aborted(KmsguardError):
    """The operator declined a confirmation prompt; nothing was written."""

    exit_code = 1


class IntegrityError(KmsguardError):
    """The stored state or audit chain does not match itself; writes are stopped."""

    exit_code = 1


class LockTimeout(KmsguardError):
    """The database stayed locked by another process past the busy timeout."""

    exit_code = 1


@dataclass(frozen=True)
class GuardResult:
    """The outcome of one guard: passed or not, why, and the command that helps."""

    guard: str
    passed: bool
    reason: str
    next: str = ""
    overridable: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    # The step parameter whose non-empty reason overrides this failed result,
    # when it is not accept_risk; overridable=True means accept_risk.
    override: str = ""

    @property
    def override_param(self) -> str:
        """The step parameter that overrides this result when it fails, or ""."""
        if self.override:
            return self.override
        return "accept_risk" if self.overridable else ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "guard": self.guard,
            "passed": self.passed,
            "reason": self.reason,
            "next": self.next,
        }
        if self.details:
            data["details"] = self.details
        return data


class Refused(KmsguardError):
    """A step was rejected: out of order, or one or more guards unmet."""

    exit_code = 3

    def __init__(self, message: str, unmet: list[GuardResult]) -> None:
        super().__init__(message)
        self.unmet = unmet

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["unmet"] = [
            {"guard": r.guard, "reason": r.reason, "next": r.next} for r in self.unmet
        ]
        return data


class Conflict(Refused):
    """Another operator or process moved the run first."""

    def __init__(self, message: str) -> None:
        super().__init__(message, [GuardResult("run_version", False, message)])


class ChecksFailed(KmsguardError):
    """A check command found problems (check, doctor, evidence, watch, audit)."""

    exit_code = 3

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.report)
        data.setdefault("error", str(self))
        return data
