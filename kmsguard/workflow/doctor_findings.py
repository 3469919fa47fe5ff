"""Findings of `doctor`, each tied to a problem of the troubleshooting table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ERROR = "error"  # the pipeline or a procedure step fails until it is fixed
WARNING = "warning"  # needs attention, but nothing is known to fail yet
INFO = "info"  # a fact or a limit of the diagnosis; nothing to do
NEEDS_ACTION = (ERROR, WARNING)

# The problems doctor looks for: the vendor's troubleshooting table for
# customer managed keys, plus kmsguard's own runs and permissions.
KEY_UNUSABLE = "key_unusable"
ACCESS_DENIED = "access_denied"
PARTIAL_ENCRYPTION = "partial_encryption"
STUCK_RUN = "stuck_run"
PERMISSIONS = "permissions"
PROBLEMS: dict[str, str] = {
    KEY_UNUSABLE: "data stops flowing: the key is unreachable or disabled",
    ACCESS_DENIED: (
        "access denied: the key policy names a wrong or no pipeline account, or "
        "the key is in another region than the pipeline"
    ),
    PARTIAL_ENCRYPTION: (
        "some pipeline resources use the key and others do not: the "
        "configuration did not reach every pipeline stack"
    ),
    STUCK_RUN: "a run has stayed in one state longer than expected",
    PERMISSIONS: "the operator's credentials lack actions kmsguard calls",
}


@dataclass(frozen=True)
class DoctorFinding:
    """One problem or fact found by doctor, with its severity and the fix."""

    severity: str
    problem: str  # a key of PROBLEMS
    check: str
    message: str
    fix: str = ""
    subject: str = ""  # the key ARN or run the finding is about
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_action(self) -> bool:
        return self.severity in NEEDS_ACTION

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "severity": self.severity,
            "problem": self.problem,
            "check": self.check,
            "message": self.message,
            "fix": self.fix,
            "subject": self.subject,
        }
        if self.details:
            data["details"] = self.details
        return data
