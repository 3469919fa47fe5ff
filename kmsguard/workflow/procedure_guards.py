"""Guards of the onboarding verification and the recovery steps.

Like every guard, each reads facts its step's handler prepared and returns a
GuardResult with the reason and the command that would satisfy it.
"""

from __future__ import annotations

from kmsguard.workflow.aws import KeyFacts
from kmsguard.workflow.context import Guard, StepContext
from kmsguard.workflow.errors import GuardResult
from kmsguard.workflow.verify import OnboardingVerification
from kmsguard.workflow.verify_checks import PASSED, SKIPPED


def _verification(ctx: StepContext) -> OnboardingVerification:
    verification = ctx.facts.get("verification")
    assert isinstance(verification, OnboardingVerification)
    return verification


def pipeline_use_seen(ctx: StepContext) -> GuardResult:
    """Pass when CloudTrail shows the pipeline account using the key."""
    verification = _verification(ctx)
    check = verification.cloudtrail
    return GuardResult(
        "pipeline_use_seen",
        check.status == PASSED,
        check.reason,
        "" if check.status == PASSED else ctx.command("verify"),
        details={"checks": [c.to_dict() for c in verification.checks]},
    )


def resources_name_key(ctx: StepContext) -> GuardResult:
    """Pass when every listed resource of a requested component names the key.

    A resource that failed its check or could not be read stops the step, and
    so does a verification that had no listed resource to read.
    """
    verification = _verification(ctx)
    blocking = verification.blocking_resources
    details = {"checks": [c.to_dict() for c in verification.checks]}
    if not blocking:
        statuses = [c.status for c in verification.resources]
        return GuardResult(
            "resources_name_key",
            True,
            f"every listed resource of a requested component names the key "
            f"({statuses.count(PASSED)} passed, {statuses.count(SKIPPED)} skipped)",
            details=details,
        )
    problems = "; ".join(
        f"{c.subject} ({c.status.replace('_', ' ')}): {c.reason.rstrip('.')}"
        for c in blocking
    )
    return GuardResult(
        "resources_name_key",
        False,
        f"{problems}. The verify step passes only when every listed resource of a "
        "requested component is read and names the key",
        ctx.command("verify"),
        details=details,
    )


def _key_facts(ctx: StepContext) -> KeyFacts | None:
    facts = ctx.facts.get("key")
    return facts if isinstance(facts, KeyFacts) else None


def key_can_be_enabled(ctx: StepContext) -> GuardResult:
    """Pass only when the key reads Disabled, so EnableKey is tried in no other state.

    A key pending deletion must have its deletion cancelled before EnableKey.
    """
    facts = _key_facts(ctx)
    state = facts.state if facts else "unknown"
    arn = facts.arn if facts else "the key"
    if state == "Disabled":
        return GuardResult("key_can_be_enabled", True, f"key {arn} reads Disabled")
    if state == "PendingDeletion":
        date = facts.metadata.get("DeletionDate") if facts else None
        return GuardResult(
            "key_can_be_enabled",
            False,
            f"key {arn} is pending deletion (on {date}), so it cannot be enabled "
            "before its deletion is cancelled",
            f"kmsguard recover cancel-deletion {ctx.env_name} --enable",
        )
    return GuardResult(
        "key_can_be_enabled",
        False,
        f"key {arn} reads {state}, not Disabled, so there is nothing to re-enable",
        f"kmsguard status {ctx.env_name}",
    )


def key_pending_deletion(ctx: StepContext) -> GuardResult:
    """Pass when the key reads PendingDeletion, which CancelKeyDeletion requires."""
    facts = _key_facts(ctx)
    state = facts.state if facts else "unknown"
    arn = facts.arn if facts else "the key"
    if state == "PendingDeletion":
        return GuardResult(
            "key_pending_deletion", True, f"key {arn} reads PendingDeletion"
        )
    next_command = f"kmsguard status {ctx.env_name}"
    if state == "Disabled":
        next_command = f"kmsguard recover re-enable {ctx.env_name}"
    return GuardResult(
        "key_pending_deletion",
        False,
        f"key {arn} reads {state}: no deletion is scheduled, so there is none "
        "to cancel",
        next_command,
    )


PROCEDURE_GUARDS: dict[str, Guard] = {
    "pipeline_use_seen": pipeline_use_seen,
    "resources_name_key": resources_name_key,
    "key_can_be_enabled": key_can_be_enabled,
    "key_pending_deletion": key_pending_deletion,
}
