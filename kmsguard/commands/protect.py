"""The protect, unprotect and watch commands: guard a retiring key in AWS itself."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import click

from kmsguard.commands.common import emit, get_state, handle_errors
from kmsguard.workflow.errors import ChecksFailed, InvalidInput

if TYPE_CHECKING:
    from kmsguard.workflow.protection import ProtectionResult

BREAK_GLASS_ROLE = click.option(
    "--break-glass-role",
    "break_glass_roles",
    multiple=True,
    metavar="ARN",
    help="IAM role ARN that may still disable the key or schedule its deletion; "
    "repeat for several. At least one is required.",
)


def render_protection(result: ProtectionResult) -> None:
    data = result.to_dict()
    lines = [f"{result.event.step}: {result.event.outcome}", result.event.message]
    diff = (result.event.evidence.get("protection") or {}).get("diff")
    if diff:
        lines.append(str(diff).rstrip("\n"))
    lines.extend(result.notes)
    emit(data, lines)


@click.command("protect")
@click.argument("environment", metavar="ENV")
@BREAK_GLASS_ROLE
def protect_command(environment: str, break_glass_roles: tuple[str, ...]) -> None:
    """Deny disabling or deleting the open run's key in AWS, except to break-glass roles.

    Adds one Deny statement (Sid KmsguardProtectKeyState) to the key policy of
    the run's current key, for kms:DisableKey and kms:ScheduleKeyDeletion, with
    an aws:PrincipalArn condition that exempts the --break-glass-role ARNs. The
    policy is backed up first and checked before and after; kms:PutKeyPolicy is
    never denied, so the account can always remove the statement.
    """
    from kmsguard.workflow.protection import protect

    state = get_state()
    with handle_errors():
        result = protect(state.app, environment, list(break_glass_roles))
    render_protection(result)


@click.command("unprotect")
@click.argument("environment", metavar="ENV")
@click.option(
    "--reason",
    required=True,
    help="Why the protection is removed; recorded in the audit log.",
)
def unprotect_command(environment: str, reason: str) -> None:
    """Remove the protection statement from the key of the environment's latest run."""
    from kmsguard.workflow.protection import unprotect

    state = get_state()
    with handle_errors():
        result = unprotect(state.app, environment, reason)
    render_protection(result)


@click.command("watch")
@click.argument("environment", metavar="ENV")
@click.option(
    "--since",
    metavar="TIME",
    help="Report only calls after TIME (ISO 8601 with a time zone), for example "
    "after the last ones were looked into. Default: the disable step.",
)
def watch_command(environment: str, since: str | None) -> None:
    """Report calls on the environment's retired key since kmsguard retired it.

    Reads CloudTrail for Encrypt, Decrypt, ReEncrypt* and GenerateDataKey*
    calls on the key that the latest disable step retired, from that step to
    now. Each call, failed with DisabledException, KMSInvalidStateException
    (pending deletion) or an access-denied error, is a caller that still
    depends on the key. Exit status 3 when there are any, or when CloudTrail
    could not be read completely, so that a scheduled job can alert.
    """
    from kmsguard.workflow.watch import watch_environment

    state = get_state()
    with handle_errors():
        report = watch_environment(state.app, environment, since=parse_since(since))
        if report.problems:
            if not state.json:
                emit({}, report.lines())
            raise ChecksFailed(report.message(), report.to_dict())
    emit(report.to_dict(), report.lines())


def parse_since(text: str | None) -> datetime | None:
    """Parse --since as ISO 8601 with a time zone.

    Raises:
        InvalidInput: the text is not such a time.
    """
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"invalid --since {text!r}: give an ISO 8601 time with a time zone, "
            "such as 2026-12-04T15:30:00Z"
        ) from exc
    if moment.tzinfo is None:
        raise InvalidInput(
            f"--since {text!r} has no time zone; add one, for example {text}Z for UTC"
        )
    return moment


def protection_commands() -> list[click.Command]:
    """Return the commands this module adds to the root group."""
    return [protect_command, unprotect_command, watch_command]
