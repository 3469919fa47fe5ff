"""`kmsguard iam-policy`: the least-privilege IAM policy for an operator."""

from __future__ import annotations

import click

from kmsguard.commands.common import emit, get_state, handle_errors


@click.command("iam-policy")
@click.option(
    "--procedure",
    metavar="NAME",
    help="Only the actions this procedure's steps call (default: every "
    "procedure, plus check, doctor and evidence).",
)
@click.option(
    "--env",
    "environment",
    metavar="ENV",
    help="Limit KMS key and alias ARNs to this environment's region.",
)
@click.option(
    "--key-account",
    metavar="ACCOUNT_ID",
    help="Limit KMS key and alias ARNs to this account.",
)
def iam_policy_command(
    procedure: str | None, environment: str | None, key_account: str | None
) -> None:
    """Print the IAM policy with the AWS actions kmsguard calls, as JSON.

    KMS actions on keys are limited to key ARNs (of --env's region and of
    --key-account when given). Actions that AWS cannot limit to a resource,
    and the reads of pipeline resources that may live in another account, get
    Resource "*". `kmsguard doctor` reports which of these actions AWS denied
    to the current credentials.
    """
    from kmsguard.workflow.iam_policy import (
        ResourceScope,
        iam_actions,
        operations_for,
        render_iam_policy,
    )
    from kmsguard.workflow.policy import canonical_json

    state = get_state()
    with handle_errors():
        region = "*"
        if environment is not None:
            region = state.app.environment(environment).region
        operations = operations_for(procedure)
        document = render_iam_policy(
            operations, ResourceScope(region, key_account or "*")
        )
    data = {
        "procedure": procedure,
        "actions": iam_actions(operations),
        "policy": document,
    }
    emit(data, [canonical_json(document)])
