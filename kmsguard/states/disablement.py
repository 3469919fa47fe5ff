"""Disablement: turn customer-managed key encryption off, then retire the key.

The order follows the vendor's rule for turning the feature off. Support
removes the key from the pipeline configuration and redeploys first. The key
is disabled only after support confirms that the pipeline no longer references
it, and it is scheduled for deletion only after it is disabled.
"""

from kmsguard.states.recovery import recovery_steps
from kmsguard.workflow.procedure import KeyExpectation, Procedure, Step

BEFORE_DISABLE = ("started", "removal_requested", "removal_confirmed")

DISABLEMENT = Procedure(
    name="disablement",
    title="Turning customer-managed key encryption off",
    states=(
        *BEFORE_DISABLE,
        "key_disabled",
        "key_deletion_scheduled",
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
        usage="--key KEY",
    ),
    steps=(
        Step(
            name="request_removal",
            command="request-removal",
            sources=("started",),
            dest="removal_requested",
            handler="record_ticket",
            usage="--ticket ID",
            request="disablement",
        ),
        Step(
            name="confirm",
            command="confirm",
            sources=("removal_requested",),
            dest="removal_confirmed",
            handler="record_confirmation",
            guards=("ticket_matches", "confirmation_after_contact"),
            usage="--ticket ID --confirmed-by NAME",
        ),
        Step(
            name="disable_key",
            command="disable-key",
            sources=("removal_confirmed",),
            dest="key_disabled",
            handler="disable_key",
            guards=("confirmation_recorded", "key_out_of_use"),
            destructive=True,
        ),
        Step(
            name="schedule_deletion",
            command="schedule-deletion",
            sources=("key_disabled",),
            dest="key_deletion_scheduled",
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
            sources=("key_disabled", "key_deletion_scheduled"),
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
            disabled="key_disabled",
            deletion_scheduled="key_deletion_scheduled",
            waiting="removal_requested",
        ),
    ),
    waiting_state="removal_requested",
    key_retired_states=("key_disabled", "key_deletion_scheduled"),
    confirmed_states=(
        "removal_confirmed",
        "key_disabled",
        "key_deletion_scheduled",
        "completed",
    ),
    key_expectations=(
        # The pipeline uses the key until support confirms its removal.
        KeyExpectation("current", BEFORE_DISABLE, ("Enabled",)),
        KeyExpectation("current", ("key_disabled",), ("Disabled",)),
        KeyExpectation("current", ("key_deletion_scheduled",), ("PendingDeletion",)),
    ),
)
