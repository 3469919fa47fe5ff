"""Rotation: switch the pipeline from the current key to a new one.

The order follows the vendor's rotation procedure: the new key and its policy
first, then support, and the old key is disabled only after support confirms,
and scheduled for deletion only after it is disabled.
"""

from kmsguard.states.recovery import recovery_steps
from kmsguard.workflow.procedure import KeyExpectation, Procedure, Step

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
    start=Step(
        name="start",
        command="start",
        sources=(),
        dest="started",
        handler="record_key",
        guards=("key_region", "key_enabled", "key_customer_managed"),
        usage="--current-key KEY",
    ),
    steps=(
        Step(
            name="new_key",
            command="new-key",
            sources=("started",),
            dest="new_key_ready",
            handler="new_key",
            guards=(
                "key_spec",
                "key_usage",
                "key_origin",
                "key_single_region",
                "key_region",
                "key_enabled",
                "key_customer_managed",
                "key_owner",
                "key_not_current",
            ),
            usage="--create",
            target="new",
        ),
        Step(
            name="apply_policy",
            command="apply-policy",
            sources=("new_key_ready",),
            dest="policy_applied",
            handler="apply_policy",
            guards=("policy_checks_pass",),
            target="new",
        ),
        Step(
            name="contact_support",
            command="contact-support",
            sources=("policy_applied",),
            dest="support_contacted",
            handler="record_ticket",
            usage="--ticket ID",
            request="rotation",
        ),
        Step(
            name="confirm",
            command="confirm",
            sources=("support_contacted",),
            dest="rotation_confirmed",
            handler="record_confirmation",
            guards=("ticket_matches", "confirmation_after_contact"),
            usage="--ticket ID --confirmed-by NAME",
        ),
        Step(
            name="disable_old_key",
            command="disable-old-key",
            sources=("rotation_confirmed",),
            dest="old_key_disabled",
            handler="disable_key",
            guards=("confirmation_recorded", "key_out_of_use"),
            usage="",
            destructive=True,
        ),
        Step(
            name="schedule_deletion",
            command="schedule-deletion",
            sources=("old_key_disabled",),
            dest="old_key_deletion_scheduled",
            handler="schedule_deletion",
            guards=(
                "confirmation_recorded",
                "key_reads_disabled",
                "observation_period_passed",
                "no_events_since_disable",
                "no_objects_under_key",
            ),
            usage="--window-days 30",
            destructive=True,
        ),
        Step(
            name="complete",
            command="complete",
            sources=("old_key_disabled", "old_key_deletion_scheduled"),
            dest="completed",
            handler="complete",
            close=True,
        ),
        Step(
            name="cancel",
            command="cancel",
            sources=BEFORE_DISABLE,
            dest="cancelled",
            handler="cancel",
            usage="--reason TEXT",
            close=True,
        ),
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
