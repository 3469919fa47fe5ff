"""Disablement: turn customer-managed key encryption off, then retire the key.

The order follows the vendor's rule for turning the feature off. Support
removes the key from the pipeline configuration and redeploys first. The key
is disabled only after support confirms that the pipeline no longer references
it, and it is scheduled for deletion only after it is disabled.
"""

from kmsguard.states.common_steps import (
    cancel_step,
    complete_step,
    confirm_step,
    disable_key_step,
    record_key_start,
    schedule_deletion_step,
    support_request_step,
)
from kmsguard.states.recovery import recovery_steps
from kmsguard.workflow.procedure import KeyExpectation, Procedure

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
    start=record_key_start(usage="--key KEY"),
    steps=(
        support_request_step(
            name="request_removal",
            command="request-removal",
            source="started",
            dest="removal_requested",
            request="disablement",
        ),
        confirm_step(source="removal_requested", dest="removal_confirmed"),
        disable_key_step(
            name="disable_key",
            command="disable-key",
            source="removal_confirmed",
            dest="key_disabled",
        ),
        schedule_deletion_step(source="key_disabled", dest="key_deletion_scheduled"),
        complete_step(sources=("key_disabled", "key_deletion_scheduled")),
        cancel_step(sources=BEFORE_DISABLE),
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
