"""KMS calls for the protection statement: read, write, read back, retry.

KMS applies a key policy change after a short delay, so the policy read back
right after PutKeyPolicy can still be the old one, and the call a change
allows can still be denied. Both are retried for a bounded time, set with
KMSGUARD_POLICY_PROPAGATION_SECONDS (default 30 seconds).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kmsguard.workflow.aws import Kms
from kmsguard.workflow.errors import InvalidInput, KmsguardError, OperationFailed
from kmsguard.workflow.policy import parse_policy_text, same_statements
from kmsguard.workflow.protection_policy import PolicyChange, lockout_problems

log = logging.getLogger(__name__)

T = TypeVar("T")

PROPAGATION_VARIABLE = "KMSGUARD_POLICY_PROPAGATION_SECONDS"
DEFAULT_PROPAGATION_SECONDS = 30.0
FIRST_RETRY_DELAY = 0.5  # seconds, doubled after each retry
ACCESS_DENIED = "AccessDeniedException"


@dataclass(frozen=True)
class PropagationWait:
    """How long to retry a KMS call that a fresh key policy change may not allow yet.

    Attributes:
        timeout: seconds to keep retrying after the first attempt.
    """

    timeout: float = DEFAULT_PROPAGATION_SECONDS
    first_delay: float = FIRST_RETRY_DELAY
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def from_environment(cls) -> PropagationWait:
        """Read the bound from KMSGUARD_POLICY_PROPAGATION_SECONDS (default 30).

        Raises:
            InvalidInput: the variable is not a number from 0 to 300.
        """
        text = os.environ.get(PROPAGATION_VARIABLE, "").strip()
        if not text:
            return cls()
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds <= 300:
            raise InvalidInput(
                f"invalid {PROPAGATION_VARIABLE} {text!r}: give the seconds to wait "
                "for a key policy change to apply, from 0 to 300 (default 30)"
            )
        return cls(timeout=seconds)


def read_policy(kms: Kms, key_arn: str) -> tuple[str, dict[str, Any]]:
    """Return the key policy as GetKeyPolicy returned it, and parsed."""
    text = kms.get_key_policy(key_arn)
    return text, parse_policy_text(text)


def write_policy(
    kms: Kms, change: PolicyChange, wait: PropagationWait
) -> dict[str, Any]:
    """Put the planned policy, then read it back until AWS returns it; return it.

    Raises:
        OperationFailed: PutKeyPolicy failed, the policy read back differs
            from the one written after the wait, or it locks the account out.
    """
    kms.put_key_policy(change.key_arn, change.after_text)
    live = _read_back(kms, change, wait)
    problems = lockout_problems(live, change.key_arn)
    if problems:
        raise OperationFailed(
            f"the key policy read back from {change.key_arn} fails the lockout "
            f"check: {problems[0]}; restore the previous policy from "
            "`kmsguard history ENV` with `aws kms put-key-policy`"
        )
    return live


def _read_back(kms: Kms, change: PolicyChange, wait: PropagationWait) -> dict[str, Any]:
    deadline = wait.clock() + wait.timeout
    delay = wait.first_delay
    while True:
        _, live = read_policy(kms, change.key_arn)
        if same_statements(live, change.after):
            return live
        remaining = deadline - wait.clock()
        if remaining <= 0:
            raise OperationFailed(
                f"the key policy read back from {change.key_arn} does not match the "
                f"policy kmsguard wrote ({change.kind} protection) after "
                f"{wait.timeout:g} s; someone may have changed it at the same time. "
                "Both versions are in the audit log; compare them with "
                f"`aws kms get-key-policy --key-id {change.key_arn} --policy-name "
                "default`"
            )
        wait.sleep(min(delay, remaining))
        delay *= 2


def call_after_policy_change(call: Callable[[], T], wait: PropagationWait) -> T:
    """Run a KMS call, retrying AccessDeniedException until the wait runs out.

    A key policy change takes a moment to apply in KMS, so the call that the
    change allows can be denied at first.
    """
    deadline = wait.clock() + wait.timeout
    delay = wait.first_delay
    attempt = 1
    while True:
        try:
            return call()
        except OperationFailed as exc:
            remaining = deadline - wait.clock()
            if getattr(exc, "aws_code", "") != ACCESS_DENIED or remaining <= 0:
                raise
            log.info(
                "AccessDeniedException right after a key policy change (attempt %d); "
                "retrying in %.1f s",
                attempt,
                min(delay, remaining),
            )
            wait.sleep(min(delay, remaining))
            delay *= 2
            attempt += 1


def restore_policy(kms: Kms, change: PolicyChange) -> str:
    """Put back the policy a change replaced; return a sentence for the operator."""
    try:
        kms.put_key_policy(change.key_arn, change.before_text)
    except KmsguardError as exc:
        log.warning("restoring the key policy of %s failed: %s", change.key_arn, exc)
        return (
            f"Putting the previous key policy of {change.key_arn} back failed too "
            f"({exc}); it is recorded in the intent event of this step, restore it "
            "with `aws kms put-key-policy --policy-name default`"
        )
    log.info("restored the key policy of %s after a failed call", change.key_arn)
    return f"The key policy of {change.key_arn} was put back as it was before the step."
