"""The `recover` group: undo kmsguard's disable or scheduled deletion of a key."""

from __future__ import annotations

import click

from kmsguard.commands.common import confirm_destructive, get_state, handle_errors
from kmsguard.workflow.recovery import (
    CANCEL_DELETION,
    CANCEL_DELETION_AND_ENABLE,
    RE_ENABLE,
)

YES = click.option(
    "--yes", is_flag=True, help="Confirm this key change without a prompt."
)


def run_recovery(environment: str, step_name: str, command: str, yes: bool) -> None:
    from kmsguard.commands.procedures import render_result
    from kmsguard.states import PROCEDURES
    from kmsguard.workflow.recovery import recover

    state = get_state()
    with handle_errors():
        confirm = confirm_destructive(yes, f"recover {command}")
        result = recover(state.app, step_name, environment, {}, confirm)
        render_result(result, PROCEDURES[result.run.procedure])


@click.group("recover")
def recover_group() -> None:
    """Undo kmsguard's disable or scheduled deletion of a key.

    Each command acts on the environment's most recent run whose key kmsguard
    disabled or scheduled for deletion, open or completed; a completed run is
    reopened. Enabling the key sends the run back to waiting for support, so a
    new support confirmation is needed before the key is disabled again.
    """


@recover_group.command("re-enable")
@click.argument("environment", metavar="ENV")
@YES
def re_enable(environment: str, yes: bool) -> None:
    """Enable the disabled key; the run waits for support's confirmation again.

    A key pending deletion is never enabled: cancel its deletion first with
    `kmsguard recover cancel-deletion ENV --enable`.
    """
    run_recovery(environment, RE_ENABLE, "re-enable", yes)


@recover_group.command("cancel-deletion")
@click.argument("environment", metavar="ENV")
@click.option(
    "--enable",
    is_flag=True,
    help="Also enable the key, and send the run back to waiting for support.",
)
@YES
def cancel_deletion(environment: str, enable: bool, yes: bool) -> None:
    """Cancel the key's scheduled deletion; the key stays Disabled unless --enable.

    Without --enable the run stays in its disabled state, and services that
    use the key still fail until it is enabled.
    """
    step_name = CANCEL_DELETION_AND_ENABLE if enable else CANCEL_DELETION
    run_recovery(environment, step_name, "cancel-deletion", yes)
