"""`kmsguard policy render` and `kmsguard policy diff`: the policy apply-policy writes."""

from __future__ import annotations

import click

from kmsguard.commands.check import (
    ENV_OPTION,
    KEY_ACCOUNT_OPTION,
    PRINCIPAL_OPTION,
    key_account_of,
    label,
)
from kmsguard.commands.common import emit, get_state, handle_errors

ADMIN_ROLE_OPTION = click.option(
    "--admin-role",
    "admin_roles",
    multiple=True,
    metavar="ARN",
    help="IAM role ARN allowed to administer the key; repeat for several.",
)


@click.group("policy")
def policy_group() -> None:
    """Show the key policy the procedures apply, and its change to a key."""


@policy_group.command("render")
@ENV_OPTION
@PRINCIPAL_OPTION
@ADMIN_ROLE_OPTION
@KEY_ACCOUNT_OPTION
def render_command(
    environment: str,
    pipeline_principal: str,
    admin_roles: tuple[str, ...],
    key_account: str | None,
) -> None:
    """Print the key policy the procedures would apply, as JSON.

    Apply-policy merges these statements into the key's current policy; see
    `kmsguard policy diff` for the result on one key.
    """
    from kmsguard.workflow.policy import canonical_json
    from kmsguard.workflow.policy_report import render_for_environment

    state = get_state()
    with handle_errors():
        env = state.app.environment(environment)
        account = key_account_of(state, env, key_account)
        document = render_for_environment(
            env,
            key_account=account,
            principal_form=pipeline_principal,
            admin_roles=admin_roles,
        )
    data = {
        "environment": env.name,
        "key_account": account,
        "pipeline_account": env.pipeline_account,
        "pipeline_principal": pipeline_principal,
        "policy": document,
    }
    emit(data, [canonical_json(document)])


@policy_group.command("diff")
@ENV_OPTION
@click.option(
    "--key", required=True, metavar="KEY", help="The key whose policy to compare."
)
@PRINCIPAL_OPTION
@ADMIN_ROLE_OPTION
def diff_command(
    environment: str, key: str, pipeline_principal: str, admin_roles: tuple[str, ...]
) -> None:
    """Show how apply-policy would change a key's current policy; change nothing."""
    from kmsguard.workflow.policy_report import policy_change

    state = get_state()
    with handle_errors():
        state.app.check_region(environment)
        env = state.app.environment(environment)
        change = policy_change(
            state.app.aws(),
            env,
            key,
            principal_form=pipeline_principal,
            admin_roles=admin_roles,
        )

    def lines() -> list[str]:
        text = [f"key policy of {change.key_arn}, as apply-policy would change it:"]
        text.append(change.diff.rstrip("\n") if change.diff else "(no change)")
        for finding in change.findings:
            text.append(
                f"{label(finding.severity)} {finding.statement}: {finding.rule}: "
                f"{finding.message}"
            )
            text.append(f"{'':8} fix: {finding.fix}")
        return text

    emit(change.to_dict(), lines)
