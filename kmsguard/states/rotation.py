"""Rotation: switch the pipeline from the current key to a new one.

The order follows the vendor's rotation procedure: the new key and its policy
first, then support, and the old key is disabled only after support confirms,
and scheduled for deletion only after it is disabled.
"""

from kmsguard.states.common_steps import (
    apply_policy_step,
    cancel_step,
    complete_step,
    confirm_step,
    disable_key_step,
    new_key_step,
    record_key_start,
    schedule_deletion_step,
    support_request_step,
)
from kmsguard.states.recovery import recovery_steps
from kmsguard.workflow.procedure import KeyExpectation, Procedure

BEFORE_DISABLE = (
    "started",
    "new_key_ready",
    "policy_applied",
    "support_contacted",
    "rotation_confirmed",
)

ROTATION = Procedure(
    name="rotation",
    title="Rotating to a new key",
    states=(
        *BEFORE_DISABLE,
        "old_key_disabled",
        "old_key_deletion_scheduled",
        "completed",
        "cancelled",
    ),
    start=record_key_start(usage="--current-key KEY"),
    steps=(
        new_key_step(
            source="started", dest="new_key_ready", extra_guards=("key_not_current",)
        ),
        apply_policy_step(source="new_key_ready"),
        support_request_step(
            name="contact_support",
            command="contact-support",
            source="policy_applied",
            dest="support_contacted",
            request="rotation",
        ),
        confirm_step(source="support_contacted", dest="rotation_confirmed"),
        disable_key_step(
            name="disable_old_key",
            command="disable-old-key",
            source="rotation_confirmed",
            dest="old_key_disabled",
        ),
        schedule_deletion_step(
            source="old_key_disabled", dest="old_key_deletion_scheduled"
        ),
        complete_step(sources=("old_key_disabled", "old_key_deletion_scheduled")),
        cancel_step(sources=BEFORE_DISABLE),
        *recovery_steps(
            disabled="old_key_disabled",
            deletion_scheduled="old_key_deletion_scheduled",
            waiting="support_contacted",
        ),
    ),
    waiting_state="support_contacted",
    key_retired_states=("old_key_disabled", "old_key_deletion_scheduled"),
    confirmed_states=(
        "rotation_confirmed",
        "old_key_disabled",
        "old_key_deletion_scheduled",
        "completed",
    ),
    key_expectations=(
        # The pipeline uses the old key until support confirms the switch.
        KeyExpectation("current", BEFORE_DISABLE, ("Enabled",)),
        KeyExpectation("current", ("old_key_disabled",), ("Disabled",)),
        KeyExpectation(
            "current", ("old_key_deletion_scheduled",), ("PendingDeletion",)
        ),
        # The pipeline moves to the new key, which must stay usable.
        KeyExpectation(
            "new",
            (
                "new_key_ready",
                "policy_applied",
                "support_contacted",
                "rotation_confirmed",
                "old_key_disabled",
                "old_key_deletion_scheduled",
            ),
            ("Enabled",),
        ),
    ),
)
