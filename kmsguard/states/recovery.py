"""Recovery steps, shared by the procedures that disable a key or delete it.

A recovery step acts on the environment's most recent run whose key kmsguard
disabled or scheduled for deletion, open or completed, and reopens a completed
run. Enabling the key sends the run back to the state that waits for support,
so another disable needs a new confirmation. EnableKey is never called on a key
pending deletion: the deletion is cancelled first.
"""

from kmsguard.workflow.procedure import Step


def recovery_steps(
    *, disabled: str, deletion_scheduled: str, waiting: str
) -> tuple[Step, ...]:
    """Return the recovery steps of a procedure with these three states."""
    return (
        Step(
            name="re_enable",
            command="re-enable",
            sources=(disabled, "completed"),
            dest=waiting,
            handler="recover_enable_key",
            guards=("key_can_be_enabled",),
            destructive=True,
            recovery=True,
        ),
        Step(
            name="cancel_deletion",
            command="cancel-deletion",
            sources=(deletion_scheduled, "completed"),
            dest=disabled,
            handler="recover_cancel_deletion",
            guards=("key_pending_deletion",),
            destructive=True,
            recovery=True,
        ),
        Step(
            name="cancel_deletion_and_enable",
            command="cancel-deletion",
            sources=(deletion_scheduled, "completed"),
            dest=waiting,
            handler="recover_cancel_deletion_and_enable",
            guards=("key_pending_deletion",),
            usage="--enable",
            destructive=True,
            recovery=True,
        ),
    )
