"""`kmsguard doctor ENV`: diagnose the documented key problems of one environment."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import click

from kmsguard.commands.check import label, report_checks
from kmsguard.commands.common import get_state, handle_errors
from kmsguard.workflow.doctor_findings import PROBLEMS

if TYPE_CHECKING:
    from kmsguard.workflow.doctor import DoctorReport


@click.command("doctor")
@click.argument("environment", metavar="ENV")
@click.option(
    "--key",
    metavar="KEY",
    help="Examine this key instead of the keys of the environment's latest run.",
)
@click.option(
    "--lookback-hours",
    type=click.IntRange(1, 90 * 24),
    default=1,
    show_default=True,
    help="How many hours of CloudTrail to read for failed calls on the keys "
    "(at most 2160, the 90 days CloudTrail keeps). Each 50 events read take a "
    "request, and CloudTrail allows 2 requests a second.",
)
@click.option(
    "--pipeline-principal",
    type=click.Choice(["root", "roles"]),
    default=None,
    help="Expect the pipeline account's root, or only its documented roles "
    "(default: the form the latest apply-policy step used, else root).",
)
def doctor_command(
    environment: str,
    key: str | None,
    lookback_hours: int,
    pipeline_principal: str | None,
) -> None:
    """Walk the troubleshooting table for an environment and report the fixes.

    Doctor checks that the keys of the latest run (or --key) can be read, are
    Enabled and in the environment's region, and that their policy allows the
    pipeline account. It lists the cryptographic calls CloudTrail shows failed
    on them, an open run that has stayed too long in one state, and the IAM
    actions AWS denied to your credentials. It changes nothing. Exit status 0
    when nothing needs action, 3 otherwise.
    """
    from kmsguard.workflow.doctor import diagnose

    state = get_state()
    with handle_errors():
        state.app.check_region(environment)
        report = diagnose(
            state.app,
            environment,
            key=key,
            principal_form=pipeline_principal,
            lookback=timedelta(hours=lookback_hours),
        )
        problem = None
        if report.needs_action:
            problem = (
                f"doctor found problems in {environment} ({report.summary()}); "
                "apply the fixes above"
            )
        report_checks(report.to_dict(), lambda: doctor_lines(report), problem)


def doctor_lines(report: DoctorReport) -> list[str]:
    """Render a doctor report as text: findings by severity, then each problem."""
    env = report.environment
    text = [
        f"doctor {env.name} ({env.region}, pipeline account {env.pipeline_account})"
    ]
    for target in report.keys:
        text.append(f"key {target.arn}: {target.role} key, {target.source}")
    order = {"error": 0, "warning": 1, "info": 2}
    for finding in sorted(report.findings, key=lambda f: order[f.severity]):
        text.append(f"{label(finding.severity)} {finding.check}: {finding.message}")
        if finding.fix:
            text.append(f"{'':8} fix: {finding.fix}")
    for problem, status in report.problem_status().items():
        text.append(f"{status:>11}: {PROBLEMS[problem]}")
    text.append(report.summary())
    return text
