"""One check of the onboarding verification, and the statuses it can have.

"passed" and "failed" are the outcomes of a check that was made.
"not_checked" means the subject could not be read, for example because access
was denied, and it stops the verification from passing just as "failed" does.
"skipped" means the subject is out of scope: a listed resource of a component
that was not requested from support.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PASSED = "passed"
FAILED = "failed"
NOT_CHECKED = "not_checked"
SKIPPED = "skipped"

# The statuses of a resource check that stop the verification from passing.
BLOCKING = frozenset({FAILED, NOT_CHECKED})


@dataclass(frozen=True)
class VerifyCheck:
    """One check of the verification: what was checked, its status and why."""

    subject: str
    kind: str
    status: str
    reason: str

    def line(self) -> str:
        label = self.status.replace("_", " ")
        return f"{label}: {self.subject}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
        }
