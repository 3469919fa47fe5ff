"""Step builders for the steps that several procedures take in the same way.

Each builder fixes what the procedures share (handler, guards, usage, flags)
and takes what differs (names, source and destination states) as arguments,
so each procedure file still lists its steps in order.
"""

from kmsguard.workflow.keys import VENDOR_KEY_CHECKS
from kmsguard.workflow.procedure import Step

# The settings the vendor documents for a pipeline key, checked on a key that
# kmsguard creates or adopts.
NEW_KEY_GUARDS = VENDOR_KEY_CHECKS


def record_key_start(*, usage: str) -> Step:
    """Build the start step that records the key in use, which must be Enabled."""
    return Step(
        name="start",
        command="start",
        sources=(),
        dest="started",
        handler="record_key",
        guards=("key_region", "key_enabled", "key_customer_managed"),
        usage=usage,
    )


def new_key_step(*, source: str, dest: str, extra_guards: tuple[str, ...] = ()) -> Step:
    """Build the step that creates or adopts the new key.

    Args:
        extra_guards: guards checked after NEW_KEY_GUARDS.
    """
    return Step(
        name="new_key",
        command="new-key",
        sources=(source,),
        dest=dest,
        handler="new_key",
        guards=(*NEW_KEY_GUARDS, *extra_guards),
        usage="--create",
        target="new",
    )


def apply_policy_step(*, source: str) -> Step:
    """Build the step that gives the pipeline account the new key's policy."""
    return Step(
        name="apply_policy",
        command="apply-policy",
        sources=(source,),
        dest="policy_applied",
        handler="apply_policy",
        guards=("policy_checks_pass",),
        target="new",
    )


def support_request_step(
    *, name: str, command: str, source: str, dest: str, request: str
) -> Step:
    """Build the step that records the support ticket and prints the request."""
    return Step(
        name=name,
        command=command,
        sources=(source,),
        dest=dest,
        handler="record_ticket",
        usage="--ticket ID",
        request=request,
    )


def confirm_step(*, source: str, dest: str) -> Step:
    """Build the step that records support's confirmation of the ticket."""
    return Step(
        name="confirm",
        command="confirm",
        sources=(source,),
        dest=dest,
        handler="record_confirmation",
        guards=("ticket_matches", "confirmation_after_contact"),
        usage="--ticket ID --confirmed-by NAME",
    )


def disable_key_step(*, name: str, command: str, source: str, dest: str) -> Step:
    """Build the step that disables the run's current key once support confirmed."""
    return Step(
        name=name,
        command=command,
        sources=(source,),
        dest=dest,
        handler="disable_key",
        guards=("confirmation_recorded", "key_out_of_use"),
        destructive=True,
    )


def schedule_deletion_step(*, source: str, dest: str) -> Step:
    """Build the step that schedules deletion of the key that the run disabled."""
    return Step(
        name="schedule_deletion",
        command="schedule-deletion",
        sources=(source,),
        dest=dest,
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
    )


def complete_step(*, sources: tuple[str, ...]) -> Step:
    """Build the step that closes the run as completed."""
    return Step(
        name="complete",
        command="complete",
        sources=sources,
        dest="completed",
        handler="complete",
        close=True,
    )


def cancel_step(*, sources: tuple[str, ...]) -> Step:
    """Build the step that closes the run as cancelled, with a reason."""
    return Step(
        name="cancel",
        command="cancel",
        sources=sources,
        dest="cancelled",
        handler="cancel",
        usage="--reason TEXT",
        close=True,
    )
