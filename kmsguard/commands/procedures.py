"""CLI groups for the procedures, one command per step, built from the data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from kmsguard.commands.common import (
    confirm_destructive,
    emit,
    get_state,
    handle_errors,
    style,
)
from kmsguard.workflow.engine import StepResult
from kmsguard.workflow.procedure import Procedure, Step

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

WINDOW_DAYS = click.option(
    "--window-days",
    type=int,
    default=30,
    show_default=True,
    help="Waiting period before AWS deletes the key, in days (7 to 30).",
)
YES = click.option(
    "--yes", is_flag=True, help="Confirm this key change without a prompt."
)
TICKET = click.option(
    "--ticket", required=True, help="Support ticket ID, for example SUP-1234."
)
REASON = click.option(
    "--reason",
    required=True,
    help="Why the run is cancelled; recorded in the audit log.",
)
ACCEPT_RISK = click.option(
    "--accept-risk",
    metavar="REASON",
    help="Override an in-use or insufficient evidence result, with the reason "
    "recorded beside your name. Never overrides the support confirmation.",
)
CONFIRM_OPTIONS: list[Decorator] = [
    TICKET,
    click.option(
        "--confirmed-by",
        required=True,
        help="Name of the support engineer who confirmed.",
    ),
    click.option(
        "--message", default="", help="Support's words, as written in the ticket."
    ),
    click.option(
        "--confirmed-at",
        metavar="TIME",
        help="When support confirmed, ISO 8601 with a time zone (default: now).",
    ),
]
NEW_KEY_OPTIONS: list[Decorator] = [
    click.option(
        "--create", is_flag=True, help="Create the key with the documented settings."
    ),
    click.option(
        "--alias",
        metavar="NAME",
        help="Alias for the created key, for example alias/pipeline-2026.",
    ),
    click.option(
        "--key",
        metavar="KEY",
        help="Adopt an existing key: key ID, alias name, alias ARN or key ARN.",
    ),
]
POLICY_OPTIONS: list[Decorator] = [
    click.option(
        "--admin-role",
        "admin_roles",
        multiple=True,
        metavar="ARN",
        help="IAM role ARN allowed to administer the key; repeat for several.",
    ),
    click.option(
        "--pipeline-principal",
        type=click.Choice(["root", "roles"]),
        default="root",
        show_default=True,
        help="Grant the pipeline account's root, or only its documented roles.",
    ),
    click.option(
        "--dry-run", is_flag=True, help="Show the policy and its diff; change nothing."
    ),
]


def render_result(result: StepResult, procedure: Procedure) -> None:
    def lines() -> list[str]:
        run = result.run
        text = [
            style(
                f"{procedure.name} {procedure.step(result.event.step).command}: applied",
                fg="green",
            )
            + f" ({result.event.from_state or 'new run'} -> {run.state})"
        ]
        for event in result.reconciled:
            text.append(f"note: {event.message}")
        if result.event.message:
            text.append(result.event.message)
        text.extend(result.outcome.notes)
        if result.next_commands:
            text.append("next: " + result.next_commands[0])
        return text

    emit(result.to_dict(), lines)


def step_command(
    procedure: Procedure, step: Step, options: list[Decorator], help_text: str
) -> click.Command:
    """Build the click command that runs one step of a procedure."""

    def callback(environment: str, **params: Any) -> None:
        state = get_state()
        with handle_errors():
            confirm = None
            if step.destructive:
                confirm = confirm_destructive(
                    bool(params.pop("yes", False)), f"{procedure.name} {step.command}"
                )
            if params.pop("dry_run", False):
                from kmsguard.commands.policy_preview import preview

                preview(state, procedure, step, environment, params)
                return
            if step is procedure.start:
                result = state.app.start(procedure, environment, params)
            else:
                result = state.app.step(
                    procedure, step.name, environment, params, confirm
                )
            render_result(result, procedure)

    command = click.Command(
        name=step.command,
        callback=callback,
        params=[click.Argument(["environment"], metavar="ENV")],
        help=help_text,
        short_help=help_text.split("\n")[0],
    )
    for option in reversed(options):
        option(command)
    if step.destructive:
        YES(command)
    return command


def procedure_group(
    procedure: Procedure,
    commands: dict[str, tuple[list[Decorator], str]],
    help_text: str,
) -> click.Group:
    """Build a group with one command per step listed in `commands`."""
    group = click.Group(name=procedure.name, help=help_text)
    for step in (procedure.start, *procedure.steps):
        if step.name not in commands:
            continue
        options, text = commands[step.name]
        group.add_command(step_command(procedure, step, options, text))
    return group


def rotation_group() -> click.Group:
    from kmsguard.states.rotation import ROTATION

    commands: dict[str, tuple[list[Decorator], str]] = {
        "start": (
            [
                click.option(
                    "--current-key",
                    "key",
                    required=True,
                    metavar="KEY",
                    help="The key the pipeline uses now: key ID, alias or ARN.",
                )
            ],
            "Open a rotation run, recording the current key.\n\nThe key must exist, be Enabled and be in the environment's region.",
        ),
        "new_key": (
            NEW_KEY_OPTIONS,
            "Create the new key, or adopt one with --key.\n\nThe key must be symmetric, for encrypt and decrypt, with KMS key material, single-Region, Enabled, customer managed, in the environment's region and owned by your account.",
        ),
        "apply_policy": (
            POLICY_OPTIONS,
            "Apply the key policy that lets the pipeline account use the new key.\n\nThe current policy is backed up first, and the applied policy is read back and checked.",
        ),
        "contact_support": (
            [TICKET],
            "Record the support ticket and print the request to send.",
        ),
        "confirm": (
            CONFIRM_OPTIONS,
            "Record support's confirmation that the switch is complete.",
        ),
        "disable_old_key": (
            [ACCEPT_RISK],
            "Disable the old key, only after support's confirmation.",
        ),
        "schedule_deletion": (
            [WINDOW_DAYS, ACCEPT_RISK],
            "Schedule deletion of the old key, only after it is disabled.",
        ),
        "complete": (
            [],
            "Close the run once the old key is disabled or scheduled for deletion.",
        ),
        "cancel": ([REASON], "Cancel the run; allowed before the old key is disabled."),
    }
    return procedure_group(
        ROTATION, commands, "Rotate the pipeline from the current key to a new one."
    )
