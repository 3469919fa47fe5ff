"""`kmsguard check key` and `kmsguard check policy`: checks before a procedure."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from kmsguard.commands.common import State, emit, get_state, handle_errors, style
from kmsguard.workflow.errors import ChecksFailed, InvalidInput
from kmsguard.workflow.records import Environment

ENV_OPTION = click.option(
    "--env",
    "environment",
    required=True,
    metavar="ENV",
    help="The environment whose region and pipeline account the check uses.",
)
PRINCIPAL_OPTION = click.option(
    "--pipeline-principal",
    type=click.Choice(["root", "roles"]),
    default="root",
    show_default=True,
    help="Expect the pipeline account's root, or only its documented roles.",
)
KEY_ACCOUNT_OPTION = click.option(
    "--key-account",
    metavar="ACCOUNT_ID",
    help="Account that owns the key (default: the account of the AWS credentials).",
)

STATUS_LABELS = {
    "passed": ("PASSED", "green"),
    "failed": ("FAILED", "red"),
    "warning": ("WARNING", "yellow"),
    "error": ("ERROR", "red"),
    "info": ("INFO", "blue"),
}


def label(status: str) -> str:
    """Return the fixed-width, coloured label of a check status or severity."""
    text, colour = STATUS_LABELS.get(status, (status.upper(), "white"))
    return style(text.ljust(8), fg=colour, bold=True)


def report_checks(
    data: dict[str, Any], lines: Callable[[], list[str]], problem: str | None
) -> None:
    """Print a check report, then exit with status 3 when `problem` is set.

    With --output json the report is the one JSON object (with "error" added on
    failure). As text, the report lines go to stdout and the error to stderr.
    """
    if problem is None:
        emit(data, lines)
        return
    if not get_state().json:
        for line in lines():
            click.echo(line)
    raise ChecksFailed(problem, data)


def key_account_of(
    state: State, environment: Environment, key_account: str | None
) -> str:
    """Return --key-account, or the account of the current AWS credentials."""
    if key_account:
        return key_account
    identity = state.app.aws().caller_identity(environment.region)
    return identity["Account"]


@click.group("check")
def check_group() -> None:
    """Check a key or a key policy against what the procedures need."""


@check_group.command("key")
@click.argument("key", metavar="KEY")
@ENV_OPTION
def check_key_command(key: str, environment: str) -> None:
    """Check every property the procedures need of a key.

    KEY is a key ID, alias name, alias ARN or key ARN, resolved in the
    environment's region. Each property is passed, failed or a warning, with
    the fix. Exit status 0 when nothing failed (warnings allowed), 3 otherwise.
    """
    from kmsguard.workflow.key_report import check_key_in_environment

    state = get_state()
    with handle_errors():
        state.app.check_region(environment)
        env = state.app.environment(environment)
        report = check_key_in_environment(state.app.aws(), env, key)

        def lines() -> list[str]:
            text = [f"key {report.key_arn} for {env.name} ({env.region})"]
            for check in report.checks:
                text.append(f"{label(check.status)} {check.name}: {check.reason}")
                if check.fix and check.status != "passed":
                    text.append(f"{'':8} fix: {check.fix}")
            text.append(report.summary())
            return text

        problem = None
        if report.failed:
            names = ", ".join(check.name for check in report.failed)
            problem = (
                f"key {report.key_arn} fails {len(report.failed)} check(s) for "
                f"{env.name}: {names}; apply the fixes above, or use another key"
            )
        report_checks(report.to_dict(), lines, problem)


@check_group.command("policy")
@click.option(
    "--key", metavar="KEY", help="Check the policy of this key, read from AWS."
)
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Check the key policy document in this JSON file ('-' for stdin).",
)
@ENV_OPTION
@PRINCIPAL_OPTION
@KEY_ACCOUNT_OPTION
def check_policy_command(
    key: str | None,
    path: Path | None,
    environment: str,
    pipeline_principal: str,
    key_account: str | None,
) -> None:
    """Analyse a key policy for the environment's pipeline.

    The analysis evaluates the statements: the pipeline's use and grant
    actions, the key account's own access (lockout safety), principals and
    the pipeline account, exposure to other accounts, and Deny statements.
    Each finding names the statement (its Sid, or "statement N" counted from
    1), the rule and the fix. Exit status 0 without errors (warnings allowed),
    3 with errors, and 2 for an invalid document, naming the JSON path of the
    bad element, such as Statement[0].Effect, whose indexes count from 0.
    """
    from kmsguard.workflow.policy_report import check_key_policy, check_policy_text

    state = get_state()
    with handle_errors():
        if (key is None) == (path is None):
            raise InvalidInput(
                "give exactly one of --key KEY (read the key's policy from AWS) "
                "or --file PATH (a policy document)"
            )
        env = state.app.environment(environment)
        if key is not None:
            state.app.check_region(environment)
            report = check_key_policy(state.app.aws(), env, key, pipeline_principal)
        else:
            assert path is not None
            text = read_policy_file(path)
            report = check_policy_text(
                text,
                environment=env,
                key_account=key_account_of(state, env, key_account),
                principal_form=pipeline_principal,
                source=f"file {path}",
            )
        problem = None
        if report.errors:
            problem = (
                f"the key policy ({report.source}) has {len(report.errors)} error(s) "
                f"for {env.name}; apply the fixes above"
            )
        report_checks(report.to_dict(), lambda: policy_lines(report), problem)


def read_policy_file(path: Path) -> str:
    """Read a policy document from a file, or from stdin for '-'.

    Raises:
        InvalidInput: the file cannot be read or is not UTF-8 text.
    """
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(
            f"cannot read --file {path}: {error}; give a readable UTF-8 JSON file"
        ) from error


def policy_lines(report: Any) -> list[str]:
    """Render a policy report as text: one block per finding, then a summary."""
    text = [
        f"key policy ({report.source}) for {report.environment}: key account "
        f"{report.key_account}, pipeline account {report.pipeline_account}, "
        f"pipeline principal {report.principal_form}"
    ]
    for finding in report.findings:
        text.append(
            f"{label(finding.severity)} {finding.statement}: {finding.rule}: "
            f"{finding.message}"
        )
        text.append(f"{'':8} fix: {finding.fix}")
    if not report.findings:
        text.append(f"{label('passed')} no findings")
    text.append(report.summary())
    return text
