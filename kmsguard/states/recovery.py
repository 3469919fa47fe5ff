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
        recovery_step(
            name="re_enable",
            command="re-enable",
            source=disabled,
            dest=waiting,
            handler="recover_enable_key",
            guard="key_can_be_enabled",
        ),
        recovery_step(
            name="cancel_deletion",
            command="cancel-deletion",
            source=deletion_scheduled,
            dest=disabled,
            handler="recover_cancel_deletion",
            guard="key_pending_deletion",
        ),
        recovery_step(
            name="cancel_deletion_and_enable",
            command="cancel-deletion",
            source=deletion_scheduled,
            dest=waiting,
            handler="recover_cancel_deletion_and_enable",
            guard="key_pending_deletion",
            usage="--enable",
        ),
    )


def recovery_step(
    *,
    name: str,
    command: str,
    source: str,
    dest: str,
    handler: str,
    guard: str,
    usage: str = "",
) -> Step:
    """Build a recovery step that starts from `source` or from a completed run."""
    return Step(
        name=name,
        command=command,
        sources=(source, "completed"),
        dest=dest,
        handler=handler,
        guards=(guard,),
        usage=usage,
        destructive=True,
        recovery=True,
    )
