"""Lockout safety: the key's own account root must keep kms:* on the key.

With that statement in the key policy, IAM policies in the key's account can
grant access to the key, so the account can always manage it and fix its policy.
"""

from __future__ import annotations

import json
from typing import Any

from kmsguard.workflow.policy_actions import action_pattern_covers
from kmsguard.workflow.policy_eval import account_of_principal
from kmsguard.workflow.policy_grammar import (
    element_values,
    statement_label,
    statement_list,
)
from kmsguard.workflow.policy_principals import ERROR, POLICY_SCOPE, Accounts, Finding
from kmsguard.workflow.policy_render import ROOT_SID, account_root_arn


def _names_account(statement: dict[str, Any], account: str) -> bool:
    principal = statement.get("Principal")
    if not isinstance(principal, dict):
        return False
    for value in element_values(principal.get("AWS", [])):
        named = account_of_principal(value)
        if named is not None and named[1] == account:
            return True
    return False


def _root_narrowing(statement: dict[str, Any]) -> list[str]:
    """Return the ways a statement naming the key account's root narrows kms:*."""
    reasons = []
    if "NotAction" in statement:
        reasons.append("it uses NotAction, which leaves some actions out")
    else:
        actions = element_values(statement["Action"])
        if not any(action_pattern_covers(action, "kms:*") for action in actions):
            reasons.append(f"its actions {json.dumps(actions)} do not cover kms:*")
    if statement.get("Condition"):
        reasons.append(f"it has the condition {json.dumps(statement['Condition'])}")
    if "NotResource" in statement:
        reasons.append("it uses NotResource")
    return reasons


def key_root_findings(
    policy: dict[str, Any], accounts: Accounts, partition: str
) -> list[Finding]:
    """Return findings when no statement gives the key account's root kms:*."""
    naming = []
    for index, statement in enumerate(statement_list(policy)):
        if statement["Effect"] == "Allow" and _names_account(statement, accounts.key):
            reasons = _root_narrowing(statement)
            if not reasons:
                return []
            naming.append((statement_label(policy, index), reasons))

    root = account_root_arn(accounts.key, partition)
    fix = (
        f'Keep a statement {{"Sid": "{ROOT_SID}", "Effect": "Allow", "Principal": '
        f'{{"AWS": "{root}"}}, "Action": "kms:*", "Resource": "*"}} with no '
        "condition. Without it, IAM policies in the key's account cannot grant access "
        "to the key, and the key can become unmanageable."
    )
    if not naming:
        message = (
            f"No statement gives the key's account {accounts.key} kms:* on the key."
        )
        return [Finding(ERROR, POLICY_SCOPE, "key-root-missing", message, fix)]
    return [
        Finding(
            ERROR,
            label,
            "key-root-narrowed",
            f"The statement names the key's account {accounts.key} but narrows its "
            f"access: {'; '.join(reasons)}.",
            fix,
        )
        for label, reasons in naming
    ]
