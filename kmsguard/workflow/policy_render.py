"""The key policy that kmsguard applies, and merging it into a key's current policy."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.identifiers import validate_account, validate_role_arn
from kmsguard.workflow.policy_actions import (
    KEY_ADMIN_ACTIONS,
    PIPELINE_GRANT_ACTIONS,
    PIPELINE_USE_ACTIONS,
    action_pattern_covers,
)
from kmsguard.workflow.policy_eval import account_of_principal
from kmsguard.workflow.policy_grammar import (
    element_values,
    statement_list,
    validate_policy,
)

# Role names the vendor documents for the pipeline's own roles.
PIPELINE_ROLE_PATTERNS: tuple[str, ...] = ("SnowplowOperator", "sp-*", "snowplow-*")

ROOT_SID = "KmsguardKeyAccountRoot"
ADMIN_SID = "KmsguardKeyAdministrators"
PIPELINE_USE_SID = "KmsguardPipelineUse"
PIPELINE_GRANTS_SID = "KmsguardPipelineGrants"
RENDERED_SIDS: tuple[str, ...] = (
    ROOT_SID,
    ADMIN_SID,
    PIPELINE_USE_SID,
    PIPELINE_GRANTS_SID,
)

POLICY_ID = "kmsguard-key-policy"
PRINCIPAL_FORMS = ("root", "roles")
GRANT_CONDITION = {"Bool": {"kms:GrantIsForAWSResource": "true"}}

PARTITION_RE = re.compile(r"^aws(-[a-z]+)*$")


def account_root_arn(account: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account}:root"


def pipeline_role_arns(pipeline_account: str, partition: str = "aws") -> list[str]:
    """Return the role ARN patterns of the pipeline's documented roles."""
    return [
        f"arn:{partition}:iam::{pipeline_account}:role/{name}"
        for name in PIPELINE_ROLE_PATTERNS
    ]


def validate_principal_form(principal_form: str) -> str:
    if principal_form not in PRINCIPAL_FORMS:
        raise InvalidInput(
            f"invalid pipeline principal form {principal_form!r}: use 'root' (the "
            "pipeline account's root principal) or 'roles' (its documented roles)"
        )
    return principal_form


def _validate_partition(partition: str) -> str:
    if not PARTITION_RE.match(partition):
        raise InvalidInput(
            f"invalid AWS partition {partition!r}: use aws, aws-cn or aws-us-gov"
        )
    return partition


def _admin_role(value: str, partition: str) -> str:
    role_arn = validate_role_arn(value, "--admin-role")
    if "*" in role_arn or "?" in role_arn:
        raise InvalidInput(
            f"invalid IAM role ARN {value!r} for --admin-role: AWS does not accept "
            "wildcards in a policy principal. Name each administrator role in full."
        )
    if role_arn.split(":")[1] != partition:
        raise InvalidInput(
            f"invalid IAM role ARN {value!r} for --admin-role: it is not in the "
            f"{partition} partition of the key. Give a role of that partition."
        )
    return role_arn


def render_key_policy(
    *,
    key_account: str,
    pipeline_account: str,
    principal_form: str = "root",
    admin_roles: Sequence[str] = (),
    partition: str = "aws",
) -> dict[str, Any]:
    """Render the key policy that the procedures apply to a pipeline key.

    The policy keeps kms:* for the key account's root principal, so IAM in that
    account can always manage the key. It names the administrator roles when
    given, and allows the pipeline account the use and grant actions. With the
    "roles" form, the pipeline statements name the pipeline account's root and
    narrow it by an ArnLike condition on aws:PrincipalArn to the documented role
    patterns, because AWS does not accept wildcards in a Principal.

    Raises:
        InvalidInput: an account ID, the principal form, the partition or an
            administrator role ARN is invalid.
    """
    key_account = validate_account(key_account, "the key account")
    pipeline_account = validate_account(pipeline_account, "--pipeline-account")
    validate_principal_form(principal_form)
    _validate_partition(partition)
    admins = list(dict.fromkeys(_admin_role(role, partition) for role in admin_roles))

    statements = [_root_statement(key_account, partition)]
    if admins:
        statements.append(_statement(ADMIN_SID, admins, list(KEY_ADMIN_ACTIONS)))

    pipeline_root = account_root_arn(pipeline_account, partition)
    role_condition: dict[str, Any] = {}
    if principal_form == "roles":
        roles = pipeline_role_arns(pipeline_account, partition)
        role_condition = {"ArnLike": {"aws:PrincipalArn": roles}}
    use = _statement(PIPELINE_USE_SID, pipeline_root, list(PIPELINE_USE_ACTIONS))
    grants = _statement(
        PIPELINE_GRANTS_SID, pipeline_root, list(PIPELINE_GRANT_ACTIONS)
    )
    if role_condition:
        use["Condition"] = copy.deepcopy(role_condition)
    grants["Condition"] = {**copy.deepcopy(GRANT_CONDITION), **role_condition}
    statements += [use, grants]

    return {"Version": "2012-10-17", "Id": POLICY_ID, "Statement": statements}


def _statement(
    sid: str, principals: str | list[str], actions: list[str]
) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"AWS": principals},
        "Action": actions,
        "Resource": "*",
    }


def _root_statement(key_account: str, partition: str) -> dict[str, Any]:
    statement = _statement(ROOT_SID, account_root_arn(key_account, partition), [])
    statement["Action"] = "kms:*"
    return statement


def is_account_root_statement(statement: dict[str, Any], account: str) -> bool:
    """Return whether a statement gives only `account`'s root kms:* on the key.

    Such a statement carries no condition, names no other principal, and lists
    an action that covers every KMS action. The console's default key policy
    starts with one.
    """
    if statement.get("Effect") != "Allow" or "Condition" in statement:
        return False
    if "Resource" not in statement:
        return False
    principal = statement.get("Principal")
    if not isinstance(principal, dict) or set(principal) != {"AWS"}:
        return False
    names = [account_of_principal(value) for value in element_values(principal["AWS"])]
    if not names or any(name is None or name[1] != account for name in names):
        return False
    actions = element_values(statement.get("Action", []))
    return any(action_pattern_covers(action, "kms:*") for action in actions)


def _rendered_key_account(rendered: dict[str, Any]) -> str | None:
    for statement in statement_list(rendered):
        if statement.get("Sid") == ROOT_SID:
            first = element_values(statement["Principal"]["AWS"])[0]
            account = account_of_principal(first)
            return account[1] if account else None
    return None


def merge_policy(current: dict[str, Any], rendered: dict[str, Any]) -> dict[str, Any]:
    """Merge a rendered policy into the key's current policy and return the result.

    A current statement that gives the key account's root kms:* stays first,
    as it is, in place of the rendered root statement: the two mean the same,
    and keeping the customer's Sid keeps the policy diff to what changed. The
    other rendered statements follow. A current statement is dropped when its
    Sid is one of the rendered Sids. Every other statement, such as the
    customer's own or the protection statement, is kept in its order. Neither
    argument is changed.

    Raises:
        InvalidInput: either document is not a valid key policy.
    """
    validate_policy(current)
    validate_policy(rendered)
    rendered_statements = statement_list(rendered)
    sids = {st["Sid"] for st in rendered_statements if st.get("Sid")}
    key_account = _rendered_key_account(rendered)

    roots: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for statement in statement_list(current):
        if key_account and is_account_root_statement(statement, key_account):
            roots.append(statement)
        elif statement.get("Sid") not in sids:
            kept.append(statement)
    if roots:
        rendered_statements = [
            st for st in rendered_statements if st.get("Sid") != ROOT_SID
        ]

    merged: dict[str, Any] = {"Version": rendered["Version"]}
    if "Id" in current or "Id" in rendered:
        merged["Id"] = current.get("Id", rendered.get("Id"))
    merged["Statement"] = copy.deepcopy(roots + rendered_statements + kept)
    return merged
