"""`kmsguard evidence` and the options that tune evidence."""

from __future__ import annotations

from typing import Any

import click

from kmsguard.commands.common import emit, get_state, handle_errors
from kmsguard.commands.progress import stderr_progress
from kmsguard.workflow.errors import ChecksFailed

SINCE = click.option(
    "--since",
    metavar="DURATION",
    default="7d",
    show_default=True,
    envvar="KMSGUARD_EVIDENCE_SINCE",
    show_envvar=True,
    help="How far back to read CloudTrail, in days, hours or minutes (7d, 36h, "
    "90m). CloudTrail keeps 90 days; a longer look-back makes the report "
    "incomplete.",
)
MAX_OBJECTS = click.option(
    "--max-objects",
    type=int,
    default=10_000,
    show_default=True,
    envvar="KMSGUARD_MAX_OBJECTS",
    show_envvar=True,
    help="The most S3 objects to read over all listed buckets; a bucket with "
    "more makes the report incomplete.",
)
OBSERVATION_DAYS = click.option(
    "--observation-days",
    type=int,
    default=7,
    show_default=True,
    envvar="KMSGUARD_OBSERVATION_DAYS",
    show_envvar=True,
    help="Days the key must stay disabled, with no use seen in CloudTrail, "
    "before its deletion is scheduled (at least 1).",
)
ACCEPT_DATA_LOSS = click.option(
    "--accept-data-loss",
    metavar="REASON",
    help="Schedule deletion although S3 objects remain under the key, or could "
    "not all be read; those objects become unreadable for good. REASON is "
    "recorded with your name. --accept-risk does not cover this.",
)


@click.command("evidence")
@click.argument("environment", metavar="ENV")
@click.option(
    "--key",
    metavar="KEY",
    help="The key to check: key ID, alias name, alias ARN or key ARN (default: "
    "the current key of the environment's open run).",
)
@SINCE
@MAX_OBJECTS
def evidence(environment: str, key: str | None, since: str, max_objects: int) -> None:
    """Report whether a key is still in use; writes nothing.

    Reads the key settings of the environment's listed S3 buckets, Kinesis
    streams and SQS queues, the S3 objects themselves, the grants on the key,
    the retention of the streams and queues, and CloudTrail. Exit status 0
    for "no use seen", 3 for "in use" or "insufficient evidence".
    """
    from kmsguard.workflow.evidence import OUTCOME_NO_USE_SEEN, format_report_lines
    from kmsguard.workflow.evidence_environment import environment_report

    state = get_state()
    with handle_errors():
        with stderr_progress() as progress:
            report = environment_report(
                state.app,
                environment,
                key=key,
                since=since,
                max_object_count=max_objects,
                progress=progress,
            )
        data = {"environment": environment, **report.to_dict()}
        if report.outcome == OUTCOME_NO_USE_SEEN:
            emit(data, format_report_lines(report))
            return

        problem = ChecksFailed(_summary(environment, report.outcome, data), data)
        if not state.json:
            emit(data, format_report_lines(report))
        raise problem


def _summary(environment: str, outcome: str, data: dict[str, Any]) -> str:
    if outcome == "in_use":
        return (
            f"key {data['key_arn']} is still in use ({len(data['reasons'])} "
            "finding(s) in the report); do not disable or delete it"
        )
    return (
        f"insufficient evidence that key {data['key_arn']} is out of use "
        f"({len(data['gaps'])} gap(s) in the report); close the gaps and run "
        f"`kmsguard evidence {environment}` again"
    )
