"""The kmsguard command line: parse, call the library, render."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from kmsguard import __version__
from kmsguard.commands.common import (
    State,
    emit,
    fields,
    get_state,
    handle_errors,
    next_line,
    style,
    table,
)
from kmsguard.commands.usage_errors import RootGroup

CONTEXT_SETTINGS: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
}


def default_db_path() -> Path:
    from kmsguard.commands.quick_status import default_database

    return Path(default_database())


def default_operator() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def configure_logging(verbose: int) -> None:
    level = (
        logging.WARNING
        if verbose == 0
        else logging.INFO
        if verbose == 1
        else logging.DEBUG
    )
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # botocore logs every request at DEBUG; keep it quiet unless -vvv.
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(
            logging.DEBUG if verbose >= 3 else logging.WARNING
        )


def explicit_region(ctx: click.Context, region: str | None) -> str | None:
    """Return --region only when the operator set it for kmsguard.

    A region from AWS_REGION or AWS_DEFAULT_REGION is the shell's default, not
    a choice for this command, so it is not compared with the environment's.
    """
    source = ctx.get_parameter_source("region")
    from_shell = source == click.core.ParameterSource.ENVIRONMENT
    if region and from_shell and not os.environ.get("KMSGUARD_REGION"):
        return None
    return region


def checked_endpoint_url(value: str | None) -> str | None:
    """Return the --endpoint-url value if it is http(s)://host[:port][/path].

    Raises:
        click.BadParameter: any other value, which botocore would reject with
            a traceback at the first AWS call.
    """
    if not value:
        return value
    parts = urlsplit(value)
    try:
        port_valid = parts.port is None or parts.port > 0
    except ValueError:
        port_valid = False
    if parts.scheme in ("http", "https") and parts.hostname and port_valid:
        return value
    raise click.BadParameter(
        f"{value!r} is not a URL of the form http(s)://host[:port][/path]; "
        "give the simulator's URL, for example http://127.0.0.1:4566"
    )


def checked_db_path(value: str | None) -> Path | None:
    """Return --db as a path; the store reports a directory or an unusable file.

    Raises:
        click.BadParameter: an empty value, which would name the current
            directory.
    """
    if value is None:
        return None
    if not value.strip():
        raise click.BadParameter(
            "the database path is empty; give the path of the SQLite file, for "
            "example --db ~/kmsguard/prod.db"
        )
    return Path(value)


def checked_operator(value: str | None) -> str | None:
    """Return --operator unless it contains control characters.

    Raises:
        click.BadParameter: a control character, such as an escape sequence
            that would reach every terminal that lists the audit log.
    """
    from kmsguard.workflow.identifiers import control_characters

    found = control_characters(value or "")
    if found:
        raise click.BadParameter(
            f"{value!r} contains control characters ({found}); give your name "
            "as plain text"
        )
    return value


# Every other top-level command is listed in kmsguard.commands.lazy and
# imported only when it runs, so that commands without AWS start fast.
@click.group(cls=RootGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--db",
    envvar="KMSGUARD_DB",
    show_envvar=True,
    callback=lambda ctx, param, value: checked_db_path(value),
    help="SQLite file of state and audit log (default: kmsguard.db in the user data directory). Must be on a local filesystem.",
)
@click.option(
    "--operator",
    envvar="KMSGUARD_OPERATOR",
    show_envvar=True,
    callback=lambda ctx, param, value: checked_operator(value),
    help="Your name, recorded on every event (default: login name).",
)
@click.option(
    "--profile",
    envvar=["KMSGUARD_PROFILE", "AWS_PROFILE"],
    show_envvar=True,
    help="AWS profile for credentials.",
)
@click.option(
    "--region",
    envvar=["KMSGUARD_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"],
    show_envvar=True,
    help="AWS region; key operations always use the environment's region, and a different --region is an error.",
)
@click.option(
    "--endpoint-url",
    envvar=["KMSGUARD_ENDPOINT_URL", "AWS_ENDPOINT_URL"],
    show_envvar=True,
    callback=lambda ctx, param, value: checked_endpoint_url(value),
    help="Send AWS calls to this URL (for a local AWS simulator).",
)
@click.option(
    "--output",
    type=click.Choice(["text", "json"], case_sensitive=False),
    default="text",
    envvar="KMSGUARD_OUTPUT",
    show_envvar=True,
    show_default=True,
    help="Text for people, or one JSON object on stdout.",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    envvar="KMSGUARD_VERBOSE",
    show_envvar=True,
    help="Log applied steps and AWS writes (-v), or debug detail (-vv); the "
    "variable takes the count, for example KMSGUARD_VERBOSE=2.",
)
@click.version_option(__version__, prog_name="kmsguard")
@click.pass_context
def main(
    ctx: click.Context,
    db: Path | None,
    operator: str | None,
    profile: str | None,
    region: str | None,
    endpoint_url: str | None,
    output: str,
    verbose: int,
) -> None:
    """Guarded workflows for the KMS key of a bring-your-own-key pipeline.

    kmsguard steps you through onboarding a key, rotating to a new key and
    turning customer-managed encryption off, in the vendor's documented
    order. It refuses any step out of order, above all disabling or deleting
    a key the pipeline still uses, and records every step in a hash-chained
    audit log.

    Exit status: 0 done; 1 failed or declined; 2 invalid input; 3 refused or
    a check found problems.
    """
    from kmsguard.workflow.app import App, Settings

    configure_logging(verbose)
    settings = Settings(
        db_path=db or default_db_path(),
        operator=(operator or default_operator()).strip() or default_operator(),
        profile=profile or None,
        region=explicit_region(ctx, region),
        endpoint_url=endpoint_url or None,
    )
    app = App(settings)
    ctx.obj = State(app, output)
    ctx.call_on_close(app.close)


# Environments


@main.group()
def env() -> None:
    """Register and show pipeline environments."""


@env.command("add")
@click.argument("environment", metavar="ENV")
@click.option(
    "--region",
    "env_region",
    required=True,
    help="AWS region of the pipeline, for example eu-west-1.",
)
@click.option(
    "--pipeline-account",
    required=True,
    metavar="ACCOUNT_ID",
    help="The vendor's pipeline AWS account ID (12 digits).",
)
def env_add(environment: str, env_region: str, pipeline_account: str) -> None:
    """Register an environment: its region and the pipeline's account."""
    state = get_state()
    with handle_errors():
        added = state.app.add_environment(environment, env_region, pipeline_account)
    emit(
        added.to_dict(),
        [
            f"environment {added.name} added ({added.region}, pipeline account {added.pipeline_account})",
            next_line(
                f"kmsguard onboarding start {added.name} (or, for a key the "
                f"pipeline already uses, kmsguard rotation start {added.name} "
                "--current-key KEY)"
            ),
        ],
    )


@env.command("list")
def env_list() -> None:
    """List the registered environments."""
    state = get_state()
    with handle_errors():
        rows = [e.to_dict() for e in state.app.environments()]
    columns = [
        ("name", "ENV"),
        ("region", "REGION"),
        ("pipeline_account", "PIPELINE ACCOUNT"),
        ("created_by", "ADDED BY"),
    ]
    emit(
        {"environments": rows},
        [*table(rows, columns), next_line("kmsguard status")]
        if rows
        else ["no environments; add one with `kmsguard env add`"],
    )


@env.command("show")
@click.argument("environment", metavar="ENV")
def env_show(environment: str) -> None:
    """Show one environment and its resources."""
    state = get_state()
    with handle_errors():
        found = state.app.environment(environment)
    data = found.to_dict()
    emit(data, [*fields(data), next_line(f"kmsguard status {found.name}")])


@env.command("set-resources")
@click.argument("environment", metavar="ENV")
@click.option(
    "--s3-bucket",
    "s3_buckets",
    multiple=True,
    metavar="NAME",
    help="A pipeline S3 bucket; repeat for several.",
)
@click.option(
    "--kinesis-stream",
    "kinesis_streams",
    multiple=True,
    metavar="NAME",
    help="A pipeline Kinesis stream, by name or ARN; repeat for several.",
)
@click.option(
    "--sqs-queue",
    "sqs_queues",
    multiple=True,
    metavar="URL",
    help="A pipeline SQS queue URL; repeat for several.",
)
@click.option(
    "--resource-profile",
    metavar="NAME",
    help="AWS profile that can read the resources, when they live in an "
    "account that needs other credentials.",
)
@click.option("--clear", is_flag=True, help="List no resources.")
def env_set_resources(
    environment: str,
    s3_buckets: tuple[str, ...],
    kinesis_streams: tuple[str, ...],
    sqs_queues: tuple[str, ...],
    resource_profile: str | None,
    clear: bool,
) -> None:
    """Replace the pipeline resources the environment lists."""
    from kmsguard.commands.common import text_value
    from kmsguard.workflow.environment_resources import set_environment_resources

    state = get_state()
    with handle_errors():
        updated = set_environment_resources(
            state.app,
            environment,
            s3_buckets=s3_buckets,
            kinesis_streams=kinesis_streams,
            sqs_queues=sqs_queues,
            profile=resource_profile,
            clear=clear,
        )
    resources = updated.resources
    emit(
        updated.to_dict(),
        [f"resources of {updated.name} set"]
        + [
            f"{name}: {text_value(value)}" for name, value in resources.items() if value
        ],
    )


# Status, history, audit


@main.command()
@click.argument("environment", metavar="[ENV]", required=False)
@click.option(
    "--live",
    is_flag=True,
    help="Also read each open run's keys from AWS and report drift: a key "
    "state or policy changed outside kmsguard.",
)
def status(environment: str | None, live: bool) -> None:
    """Show each environment's open run, its state, its age and the next command."""
    from kmsguard.commands.quick_status import status_lines

    state = get_state()
    with handle_errors():
        rows = state.app.status(environment, live=live)

    def lines() -> list[str]:
        text = status_lines(
            rows,
            header=lambda line: style(line, bold=True),
            warning=lambda line: style(line, fg="yellow"),
        )
        if live and rows:
            from kmsguard.commands.live import live_lines

            text.extend(live_lines(rows))
        return text

    emit({"environments": rows}, lines)
    if live:
        from kmsguard.commands.live import live_exit_code

        sys.exit(live_exit_code(rows))


@main.command()
@click.argument("environment", metavar="ENV")
def history(environment: str) -> None:
    """Show every audit event of an environment, refusals included."""
    from kmsguard.commands.common import table_with_continuations

    state = get_state()
    with handle_errors():
        events = state.app.history(environment)
    columns = [
        ("id", "EVENT"),
        ("created_at", "TIME"),
        ("run_id", "RUN"),
        ("procedure", "PROCEDURE"),
        ("step", "STEP"),
        ("outcome", "OUTCOME"),
        ("to_state", "STATE"),
        ("operator", "OPERATOR"),
        ("message", "MESSAGE"),
    ]

    def lines() -> list[str]:
        if not events:
            return [f"no events for {environment}"]
        return [
            # A refusal's message lists each unmet guard on a line of its own.
            *table_with_continuations(events, columns),
            next_line(f"kmsguard status {environment}"),
        ]

    emit({"environment": environment, "events": events}, lines)
