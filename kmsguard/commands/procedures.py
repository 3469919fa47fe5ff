"""CLI groups for the procedures, one command per step, built from the data."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from kmsguard.commands.common import (
    confirm_destructive,
    emit,
    get_state,
    handle_errors,
    style,
)
from kmsguard.commands.evidence import (
    ACCEPT_DATA_LOSS,
    MAX_OBJECTS,
    OBSERVATION_DAYS,
    SINCE,
)
from kmsguard.commands.progress import step_progress
from kmsguard.workflow.procedure import Procedure, Step

if TYPE_CHECKING:
    from kmsguard.workflow.engine import StepResult

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
    help="Override an in-use or insufficient evidence result, or an unfinished "
    "observation period; REASON is recorded with your name. Never overrides "
    "the support confirmation.",
)
# The options of the steps that disable a key or schedule its deletion.
DISABLE_OPTIONS: list[Decorator] = [SINCE, MAX_OBJECTS, ACCEPT_RISK]
DELETION_OPTIONS: list[Decorator] = [
    WINDOW_DAYS,
    OBSERVATION_DAYS,
    MAX_OBJECTS,
    ACCEPT_RISK,
    ACCEPT_DATA_LOSS,
]
# The options of the start steps that record a key to retire.
PROTECT_OPTIONS: list[Decorator] = [
    click.option(
        "--protect",
        is_flag=True,
        help="Also add a Deny statement to the key policy, so that nobody but the "
        "break-glass roles can disable the key or schedule its deletion while "
        "the run is open.",
    ),
    click.option(
        "--break-glass-role",
        "break_glass_roles",
        multiple=True,
        metavar="ARN",
        help="With --protect: IAM role ARN exempt from the Deny; repeat for "
        "several. At least one is required.",
    ),
]
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
        step = procedure.step(result.event.step)
        # A recovery step runs from `kmsguard recover` on a run of any procedure.
        group = "recover" if step.recovery else procedure.name
        target = f" to the {procedure.name} run" if step.recovery else ""
        text = [
            style(f"{group} {step.command}: applied", fg="green")
            + f"{target} ({result.event.from_state or 'new run'} -> {run.state})"
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
            with step_progress(params, confirm) as confirm:
                if step is procedure.start:
                    from kmsguard.workflow.protection import start_run

                    result = start_run(state.app, procedure, environment, params)
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
                ),
                *PROTECT_OPTIONS,
            ],
            "Open a rotation run, recording the current key.\n\nThe key must exist, be Enabled and be in the environment's region. With --protect, the key policy also denies disabling the key or scheduling its deletion to everyone but the break-glass roles until the run retires the key.",
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
            DISABLE_OPTIONS,
            "Disable the old key, only after support's confirmation.",
        ),
        "schedule_deletion": (
            DELETION_OPTIONS,
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


COMPONENTS = click.option(
    "--components",
    default="all",
    show_default=True,
    metavar="all|s3,kinesis,sqs",
    help="The pipeline components to encrypt with the key: all, or a "
    "comma-separated list of s3, kinesis and sqs.",
)


def onboarding_group() -> click.Group:
    from kmsguard.commands.verify import verify_command
    from kmsguard.states.onboarding import ONBOARDING

    commands: dict[str, tuple[list[Decorator], str]] = {
        "start": ([], "Open an onboarding run for the environment."),
        "new_key": (
            NEW_KEY_OPTIONS,
            "Create the key, or adopt one with --key.\n\nThe key must be symmetric, for encrypt and decrypt, with KMS key material, single-Region, Enabled, customer managed, in the environment's region and owned by your account.",
        ),
        "apply_policy": (
            POLICY_OPTIONS,
            "Apply the key policy that lets the pipeline account use the key.\n\nThe current policy is backed up first, and the applied policy is read back and checked.",
        ),
        "share": (
            [TICKET, COMPONENTS],
            "Record the support ticket and print what support needs: the key ARN, the environment, that cross-account access is configured, and the components to encrypt.",
        ),
        "confirm": (
            CONFIRM_OPTIONS,
            "Record support's confirmation that the pipeline configuration is applied.",
        ),
        "complete": ([], "Close the run once the key is verified in use."),
        "cancel": ([REASON], "Cancel the run; allowed in any state before completed."),
    }
    group = procedure_group(
        ONBOARDING, commands, "Bring the pipeline onto a key you own."
    )
    group.add_command(
        verify_command(
            ONBOARDING,
            ONBOARDING.step("verify"),
            "Check that the pipeline uses the key.\n\nCloudTrail must show Decrypt or GenerateDataKey calls on the key by the pipeline account since support's confirmation, and every listed pipeline resource of a requested component must exist, be readable and name the key in its encryption settings; at least one must be listed. A resource that is missing, or that cannot be read, stops the step.",
        )
    )
    return group


def disablement_group() -> click.Group:
    from kmsguard.states.disablement import DISABLEMENT

    commands: dict[str, tuple[list[Decorator], str]] = {
        "start": (
            [
                click.option(
                    "--key",
                    required=True,
                    metavar="KEY",
                    help="The key the pipeline uses now: key ID, alias or ARN.",
                ),
                *PROTECT_OPTIONS,
            ],
            "Open a disablement run, recording the key to retire.\n\nThe key must exist, be Enabled and be in the environment's region. With --protect, the key policy also denies disabling the key or scheduling its deletion to everyone but the break-glass roles until the run retires the key.",
        ),
        "request_removal": (
            [TICKET],
            "Record the support ticket and print the request to remove the key from the pipeline configuration.",
        ),
        "confirm": (
            CONFIRM_OPTIONS,
            "Record support's confirmation that the redeployed pipeline no longer references the key.",
        ),
        "disable_key": (
            DISABLE_OPTIONS,
            "Disable the key, only after support's confirmation.",
        ),
        "schedule_deletion": (
            DELETION_OPTIONS,
            "Schedule deletion of the key, only after it is disabled.",
        ),
        "complete": (
            [],
            "Close the run once the key is disabled or scheduled for deletion.",
        ),
        "cancel": ([REASON], "Cancel the run; allowed before the key is disabled."),
    }
    return procedure_group(
        DISABLEMENT,
        commands,
        "Turn customer-managed key encryption off, then retire the key.",
    )
