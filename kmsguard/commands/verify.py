"""The onboarding `verify` command: every check is shown, passed or not."""

from __future__ import annotations

from typing import Any

import click

from kmsguard.commands.common import get_state, handle_errors
from kmsguard.commands.progress import busy
from kmsguard.workflow.errors import ChecksFailed, Refused
from kmsguard.workflow.procedure import Procedure, Step


def checks_of(refused: Refused) -> list[dict[str, Any]]:
    """Return the verification checks a refusal's guards carry, if any."""
    for result in refused.unmet:
        checks = result.details.get("checks")
        if isinstance(checks, list):
            return checks
    return []


def refusal_with_checks(refused: Refused, json_output: bool) -> Exception:
    """Return the error to report: the refusal, with every check beside it.

    In text form the checks go to stderr before the error; in JSON form they
    are a `checks` list in the error object.
    """
    checks = checks_of(refused)
    if not checks:
        return refused
    if not json_output:
        for check in checks:
            label = str(check["status"]).replace("_", " ")
            click.echo(f"{label}: {check['subject']}: {check['reason']}", err=True)
    report = refused.to_dict()
    report["checks"] = checks
    return ChecksFailed(str(refused), report)


def verify_command(procedure: Procedure, step: Step, help_text: str) -> click.Command:
    """Build the command that runs a verification step of a procedure."""
    from kmsguard.commands.procedures import render_result

    def callback(environment: str) -> None:
        state = get_state()
        with handle_errors():
            try:
                with busy(
                    f"{procedure.name} {step.command}: reading CloudTrail and resources"
                ):
                    result = state.app.step(procedure, step.name, environment, {})
            except Refused as refused:
                raise refusal_with_checks(refused, state.json) from refused
            render_result(result, procedure)

    return click.Command(
        name=step.command,
        callback=callback,
        params=[click.Argument(["environment"], metavar="ENV")],
        help=help_text,
        short_help=help_text.split("\n")[0],
    )
