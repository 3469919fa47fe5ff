"""Checks of a key's properties, shared by the step guards and `check key`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kmsguard.workflow.aws import KeyFacts


@dataclass(frozen=True)
class KeyCheck:
    """One property of a key: passed, failed or warning, with the fix."""

    name: str
    status: str  # "passed", "failed" or "warning"
    reason: str
    fix: str = ""

    @property
    def passed(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "status": self.status,
            "reason": self.reason,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class KeyExpectations:
    """The region, owner account and excluded key that a step expects of a key."""

    region: str
    account: str | None = None  # the operator's account, from STS
    other_key_arn: str | None = None  # the key this one must not be


NEW_KEY_FIX = (
    "create a new key with `--create`, or one with key type Symmetric, usage "
    "Encrypt and decrypt, origin KMS and single-Region"
)


def _metadata_check(
    name: str, field: str, expected: Any, label: str, fix: str
) -> Callable[[KeyFacts, KeyExpectations], KeyCheck]:
    def check(facts: KeyFacts, _: KeyExpectations) -> KeyCheck:
        actual = facts.metadata.get(field)
        if actual is None:
            return KeyCheck(name, "failed", f"{field} of {facts.arn} is unknown", fix)
        if actual == expected:
            return KeyCheck(name, "passed", f"{label} is {actual}")
        return KeyCheck(
            name, "failed", f"{label} of {facts.arn} is {actual}, not {expected}", fix
        )

    return check


def check_region(facts: KeyFacts, expected: KeyExpectations) -> KeyCheck:
    # The region comes from the key ARN, never from the profile's default.
    if facts.region == expected.region:
        return KeyCheck("key_region", "passed", f"key is in {facts.region}")
    return KeyCheck(
        "key_region",
        "failed",
        f"key {facts.arn} is in region {facts.region}, but the environment's "
        f"pipeline runs in {expected.region}",
        f"use a key created in {expected.region}",
    )


def check_single_region(facts: KeyFacts, _: KeyExpectations) -> KeyCheck:
    multi_region = facts.metadata.get("MultiRegion")
    if multi_region is None:
        return KeyCheck(
            "key_single_region",
            "failed",
            f"MultiRegion of {facts.arn} is unknown",
            NEW_KEY_FIX,
        )
    if not multi_region:
        return KeyCheck("key_single_region", "passed", "key is not a multi-Region key")
    return KeyCheck(
        "key_single_region",
        "failed",
        f"key {facts.arn} is a multi-Region key",
        NEW_KEY_FIX,
    )


def check_enabled(facts: KeyFacts, _: KeyExpectations) -> KeyCheck:
    state = facts.state or "unknown"
    if state == "Enabled":
        return KeyCheck("key_enabled", "passed", "key state is Enabled")
    fix = "enable the key first (aws kms enable-key)"
    if state == "PendingDeletion":
        fix = "cancel its deletion first (aws kms cancel-key-deletion), then enable it"
    return KeyCheck(
        "key_enabled", "failed", f"key {facts.arn} is {state}, not Enabled", fix
    )


def check_owner(facts: KeyFacts, expected: KeyExpectations) -> KeyCheck:
    if expected.account is None:
        return KeyCheck("key_owner", "warning", "the operator's account is not known")
    if facts.account == expected.account:
        return KeyCheck(
            "key_owner", "passed", f"key is owned by account {facts.account}"
        )
    return KeyCheck(
        "key_owner",
        "failed",
        f"key {facts.arn} is owned by account {facts.account}, not by the "
        f"operator's account {expected.account}",
        "use a key of your own account, or --profile for the account that owns it",
    )


def check_not_other(facts: KeyFacts, expected: KeyExpectations) -> KeyCheck:
    if expected.other_key_arn and facts.arn == expected.other_key_arn:
        return KeyCheck(
            "key_not_current",
            "failed",
            f"key {facts.arn} is the current key of the run, so it cannot be the new key",
            "give a different key, or create one with --create",
        )
    return KeyCheck("key_not_current", "passed", "key differs from the current key")


def check_rotation(facts: KeyFacts, _: KeyExpectations) -> KeyCheck:
    if facts.rotation_enabled:
        return KeyCheck("key_rotation", "passed", "automatic rotation is on")
    if facts.rotation_enabled is None:
        # GetKeyRotationStatus was not called (the key cannot rotate) or failed.
        return KeyCheck(
            "key_rotation",
            "warning",
            f"whether automatic rotation is on for {facts.arn} is unknown",
            "use a symmetric customer managed key with KMS key material, and "
            "allow kms:GetKeyRotationStatus to the credentials in use",
        )
    return KeyCheck(
        "key_rotation",
        "warning",
        f"automatic rotation is off on {facts.arn}",
        f"turn it on: aws kms enable-key-rotation --key-id {facts.arn}",
    )


def check_not_pending_deletion(facts: KeyFacts, _: KeyExpectations) -> KeyCheck:
    if facts.state == "PendingDeletion":
        return KeyCheck(
            "key_deletion_not_pending",
            "failed",
            f"key {facts.arn} is scheduled for deletion on {facts.metadata.get('DeletionDate')}",
            f"cancel it: aws kms cancel-key-deletion --key-id {facts.arn}",
        )
    return KeyCheck("key_deletion_not_pending", "passed", "no deletion is scheduled")


KEY_CHECKS: dict[str, Callable[[KeyFacts, KeyExpectations], KeyCheck]] = {
    "key_spec": _metadata_check(
        "key_spec", "KeySpec", "SYMMETRIC_DEFAULT", "key spec", NEW_KEY_FIX
    ),
    "key_usage": _metadata_check(
        "key_usage", "KeyUsage", "ENCRYPT_DECRYPT", "key usage", NEW_KEY_FIX
    ),
    "key_origin": _metadata_check(
        "key_origin", "Origin", "AWS_KMS", "key material origin", NEW_KEY_FIX
    ),
    "key_single_region": check_single_region,
    "key_customer_managed": _metadata_check(
        "key_customer_managed",
        "KeyManager",
        "CUSTOMER",
        "key manager",
        "use a customer managed key; AWS managed keys cannot be shared with the pipeline",
    ),
    "key_region": check_region,
    "key_enabled": check_enabled,
    "key_owner": check_owner,
    "key_not_current": check_not_other,
    "key_rotation": check_rotation,
    "key_deletion_not_pending": check_not_pending_deletion,
}

# The settings the vendor documents for a pipeline key: the guards on a key
# that kmsguard creates or adopts, and the first checks of `check key`.
VENDOR_KEY_CHECKS = (
    "key_spec",
    "key_usage",
    "key_origin",
    "key_single_region",
    "key_region",
    "key_enabled",
    "key_customer_managed",
    "key_owner",
)
# The checks `check key` runs, in the order it prints them.
ALL_KEY_CHECKS = (*VENDOR_KEY_CHECKS, "key_rotation", "key_deletion_not_pending")


# Checks that judge the key ARN alone, so they also run on a key that could
# not be read (a key ARN outside the environment's region is never read).
ARN_CHECKS = frozenset({"key_region", "key_owner", "key_not_current"})
# Checks that at worst warn.
ADVISORY_CHECKS = frozenset({"key_rotation"})


def run_key_check(name: str, facts: KeyFacts, expected: KeyExpectations) -> KeyCheck:
    """Run one named check; the step guards and `check key` both call this."""
    if len(facts.metadata) <= 1 and name not in ARN_CHECKS:
        # Only the ARN is known, because the key is outside the region.
        return KeyCheck(
            name,
            "warning" if name in ADVISORY_CHECKS else "failed",
            f"key {facts.arn} could not be read in {expected.region}",
            "use a key in the environment's region",
        )
    return KEY_CHECKS[name](facts, expected)


def check_key(
    facts: KeyFacts, expected: KeyExpectations, names: tuple[str, ...] = ALL_KEY_CHECKS
) -> list[KeyCheck]:
    """Run the named checks on a key, in order."""
    return [run_key_check(name, facts, expected) for name in names]
