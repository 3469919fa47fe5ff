"""The protection statement that guards a key in AWS while a procedure is open.

The statement denies kms:DisableKey and kms:ScheduleKeyDeletion to every
principal except the named break-glass roles, so a console click or a script
outside kmsguard cannot take the key away from the pipeline. It never denies
kms:PutKeyPolicy, so the key account can always remove it again.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.identifiers import validate_role_arn
from kmsguard.workflow.policy_grammar import (
    element_values,
    statement_list,
    validate_policy,
)

PROTECTION_SID = "KmsguardProtectKeyState"
PROTECTED_ACTIONS: tuple[str, ...] = ("kms:DisableKey", "kms:ScheduleKeyDeletion")


def protection_statement(
    break_glass_roles: Sequence[str], actions: Sequence[str] = PROTECTED_ACTIONS
) -> dict[str, Any]:
    """Build the protection statement for the given break-glass role ARNs.

    Raises:
        InvalidInput: no role is given, or a role ARN is malformed.
    """
    roles = [
        validate_role_arn(role, "--break-glass-role") for role in break_glass_roles
    ]
    if not roles:
        raise InvalidInput(
            "missing break-glass role: the protection statement needs at least one "
            "role that may still disable the key or schedule its deletion. Give "
            "--break-glass-role arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME."
        )
    return {
        "Sid": PROTECTION_SID,
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": list(actions),
        "Resource": "*",
        "Condition": {"ArnNotLike": {"aws:PrincipalArn": list(dict.fromkeys(roles))}},
    }


def _is_protection(statement: dict[str, Any]) -> bool:
    return statement.get("Sid") == PROTECTION_SID


def add_protection(
    doc: dict[str, Any], break_glass_roles: Sequence[str]
) -> dict[str, Any]:
    """Return a copy of the policy with the protection statement added.

    An existing statement with the protection Sid is replaced in place; otherwise
    the statement is appended. Every other statement is kept unchanged.

    Raises:
        InvalidInput: the policy is invalid, no role is given, or a role ARN is
            malformed.
    """
    policy = validate_policy(doc)
    protection = protection_statement(break_glass_roles)
    statements = copy.deepcopy(statement_list(policy))
    positions = [i for i, s in enumerate(statements) if _is_protection(s)]
    if positions:
        statements[positions[0]] = protection
        statements = [s for i, s in enumerate(statements) if i not in positions[1:]]
    else:
        statements.append(protection)
    return {**copy.deepcopy(policy), "Statement": statements}


def protection_actions(doc: dict[str, Any]) -> tuple[str, ...] | None:
    """Return the actions the protection statement denies, or None without one."""
    for statement in statement_list(validate_policy(doc)):
        if _is_protection(statement):
            return tuple(element_values(statement.get("Action", [])))
    return None


def narrow_protection(doc: dict[str, Any], actions: Sequence[str]) -> dict[str, Any]:
    """Return a copy of the policy whose protection statement denies only `actions`.

    Narrowing lets a guarded step run, for example kms:DisableKey during the
    disable step while kms:ScheduleKeyDeletion stays denied.

    Raises:
        InvalidInput: the policy has no protection statement, `actions` is empty,
            or it names an action the statement does not deny.
    """
    current = protection_actions(doc)
    if current is None:
        raise InvalidInput(
            f"missing protection statement: the key policy has no {PROTECTION_SID} "
            "statement to narrow. Add the protection first (rotation start --protect)."
        )
    by_name = {action.lower(): action for action in current}
    unknown = [action for action in actions if action.lower() not in by_name]
    if not actions or unknown:
        raise InvalidInput(
            f"invalid protection actions {', '.join(actions) or '(none)'}: give one "
            f"or more of {', '.join(current)}, the actions the protection statement "
            "denies now. To lift the protection completely, remove the statement."
        )

    kept = list(dict.fromkeys(by_name[action.lower()] for action in actions))
    policy = copy.deepcopy(doc)
    for statement in statement_list(policy):
        if _is_protection(statement):
            statement["Action"] = kept
    return policy


def remove_protection(doc: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the policy without the protection statement.

    Every other statement is kept unchanged and in its order. A policy without
    the statement comes back as an unchanged copy.

    Raises:
        InvalidInput: the policy is invalid, or the protection statement is its
            only statement (a key policy needs at least one).
    """
    policy = copy.deepcopy(validate_policy(doc))
    statements = statement_list(policy)
    kept = [statement for statement in statements if not _is_protection(statement)]
    if len(kept) == len(statements):
        return policy
    if not kept:
        raise InvalidInput(
            f"invalid key policy: {PROTECTION_SID} is its only statement, and a key "
            "policy needs at least one. Write the key's full policy instead."
        )
    policy["Statement"] = kept
    return policy
