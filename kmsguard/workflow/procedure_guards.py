"""Guards of the onboarding verification and the recovery steps.

Like every guard, each reads facts its step's handler prepared and returns a
GuardResult with the reason and the command that would satisfy it.
"""

from __future__ import annotations

from kmsguard.workflow.aws import KeyFacts
from kmsguard.workflow.context import Guard, StepContext
from kmsguard.workflow.errors import GuardResult
from kmsguard.workflow.verify import PASSED, OnboardingVerification


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
    """Pass when no checked pipeline resource names another key or none."""
    verification = _verification(ctx)
    failed = verification.failed_resources
    details = {"checks": [c.to_dict() for c in verification.checks]}
    if not failed:
        counts = {
            status: sum(1 for c in verification.resources if c.status == status)
            for status in ("passed", "not_checked")
        }
        return GuardResult(
            "resources_name_key",
            True,
            f"no checked resource names another key ({counts['passed']} passed, "
            f"{counts['not_checked']} not checked)",
            details=details,
        )
    return GuardResult(
        "resources_name_key",
        False,
        "; ".join(f"{c.subject}: {c.reason}" for c in failed)
        + ". Ask support to finish the configuration, then verify again",
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
