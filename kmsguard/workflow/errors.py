"""The one exception tree of kmsguard, each class carrying its exit status."""

from __future__ import annotations

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


def unknown_environment(name: str) -> InvalidInput:
    """Return the error for an environment name the database does not hold."""
    return InvalidInput(
        f"unknown environment {name!r}: add it with `kmsguard env add "
        f"{name} --region REGION --pipeline-account ACCOUNT_ID`, or see "
        "`kmsguard env list`"
    )


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
