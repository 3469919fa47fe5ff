"""Changes to a key's protection statement: plan them and check the policies.

A change is planned from the live policy (as protection_kms.read_policy
returns it) and checked: the policy before and after must pass the lockout
check and the pipeline checks. The functions here call no AWS API.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kmsguard.workflow.errors import (
    GuardResult,
    InvalidInput,
    Refused,
)
from kmsguard.workflow.identifiers import account_from_arn
from kmsguard.workflow.policy import (
    ALLOW,
    PROTECTED_ACTIONS,
    PROTECTION_SID,
    add_protection,
    analyse_policy,
    canonical_json,
    diff_policies,
    evaluate,
    narrow_protection,
    parse_policy_text,
    policy_errors,
    protection_actions,
    protection_statement,
    remove_protection,
    same_statements,
    statement_list,
)
from kmsguard.workflow.policy_actions import action_matches
from kmsguard.workflow.records import PolicyBackup

log = logging.getLogger(__name__)

PRINCIPAL_FORMS = ("root", "roles")


@dataclass(frozen=True)
class PolicyChange:
    """One planned change of a key policy: the policy read and the policy to write.

    Attributes:
        kind: "protect", "narrow" or "remove".
        before_text: the policy exactly as GetKeyPolicy returned it.
    """

    key_arn: str
    kind: str
    before_text: str
    before: dict[str, Any]
    after: dict[str, Any]
    break_glass_roles: tuple[str, ...] = field(default=())

    @property
    def after_text(self) -> str:
        return canonical_json(self.after)

    @property
    def changed(self) -> bool:
        return not same_statements(self.before, self.after)

    def backups(self, label: str) -> tuple[PolicyBackup, PolicyBackup]:
        """Return both versions for the policy_backups table, labelled by step."""
        return (
            PolicyBackup(self.key_arn, self.before_text, f"before {label}"),
            PolicyBackup(self.key_arn, self.after_text, f"{WRITTEN_PREFIX}{label}"),
        )

    def evidence(self) -> dict[str, Any]:
        """Return what the audit event records: the actions denied and the diff."""
        return {
            "key": self.key_arn,
            "change": self.kind,
            "actions_before": _listed(protection_actions(self.before)),
            "actions_after": _listed(protection_actions(self.after)),
            "break_glass_roles": list(self.break_glass_roles),
            "diff": diff_policies(self.before, self.after),
        }

    def intent_evidence(self) -> dict[str, Any]:
        """Return what an intent records, enough to reconcile it from AWS later."""
        return {
            "key": self.key_arn,
            "change": self.kind,
            "policy": self.after_text,
            "policy_before": self.before_text,
            "break_glass_roles": list(self.break_glass_roles),
        }


WRITTEN_PREFIX = "written by "


def _listed(actions: tuple[str, ...] | None) -> list[str] | None:
    return None if actions is None else list(actions)


def validate_protection_params(params: dict[str, Any]) -> tuple[str, ...]:
    """Check --protect and --break-glass-role; return the roles, or () without --protect.

    Raises:
        InvalidInput: roles without --protect, --protect without a role, or a
            malformed role ARN or one with a wildcard.
    """
    roles = tuple(str(role) for role in params.get("break_glass_roles") or ())
    if not params.get("protect"):
        if roles:
            raise InvalidInput(
                "--break-glass-role applies only with --protect; add --protect to "
                "guard the key in AWS, or drop --break-glass-role"
            )
        return ()
    for role in roles:
        # ArnNotLike reads * and ? as wildcards, so a pattern would exempt
        # every role it matches and leave the key unprotected.
        if "*" in role or "?" in role:
            raise InvalidInput(
                f"invalid --break-glass-role {role!r}: it contains a wildcard, "
                "which would exempt every matching role from the protection; "
                "give the exact ARN of each break-glass role"
            )
    statement = protection_statement(roles)
    return tuple(statement["Condition"]["ArnNotLike"]["aws:PrincipalArn"])


def protection_roles(doc: dict[str, Any]) -> list[str]:
    """Return the break-glass role ARNs the protection statement exempts."""
    for statement in statement_list(doc):
        if statement.get("Sid") != PROTECTION_SID:
            continue
        condition = statement.get("Condition") or {}
        roles = (condition.get("ArnNotLike") or {}).get("aws:PrincipalArn") or []
        return [roles] if isinstance(roles, str) else [str(r) for r in roles]
    return []


# Planning


def plan_protect(
    key_arn: str,
    policy: tuple[str, dict[str, Any]],
    pipeline_account: str,
    roles: Sequence[str],
    *,
    narrowed: bool = False,
) -> PolicyChange:
    """Plan adding the protection statement to a policy, checked before and after.

    `policy` is the live policy as read_policy returns it. With `narrowed`, the
    statement denies only kms:ScheduleKeyDeletion, for a key the procedure has
    already disabled.

    Raises:
        InvalidInput: no role, or a malformed role ARN.
        Refused: the policy fails the lockout or pipeline checks before or
            after the statement is added.
    """
    text, before = policy
    after = add_protection(before, roles)
    if narrowed:
        after = narrow_protection(after, ["kms:ScheduleKeyDeletion"])
    check_policy(before, key_arn, pipeline_account, "now")
    check_policy(after, key_arn, pipeline_account, "with the protection statement")
    return PolicyChange(
        key_arn, "protect", text, before, after, tuple(protection_roles(after))
    )


def plan_narrow(
    key_arn: str, policy: tuple[str, dict[str, Any]]
) -> PolicyChange | None:
    """Plan letting kms:DisableKey through, or None when the policy does not deny it.

    The statement keeps denying every other action it denies now, which is
    kms:ScheduleKeyDeletion for the statement kmsguard writes. A statement
    that denies nothing else is removed.
    """
    text, before = policy
    actions = protection_actions(before)
    if actions is None:
        return None
    remaining = [a for a in actions if not action_matches(a, "kms:DisableKey")]
    if len(remaining) == len(actions):
        return None
    if remaining:
        after = narrow_protection(before, remaining)
    else:
        after = remove_protection(before)
    roles = tuple(protection_roles(before))
    return PolicyChange(key_arn, "narrow", text, before, after, roles)


def plan_remove(
    key_arn: str, policy: tuple[str, dict[str, Any]]
) -> PolicyChange | None:
    """Plan removing the protection statement, or None when the policy has none."""
    text, before = policy
    if protection_actions(before) is None:
        return None
    roles = tuple(protection_roles(before))
    return PolicyChange(
        key_arn, "remove", text, before, remove_protection(before), roles
    )


def change_from_intent(evidence: dict[str, Any]) -> PolicyChange:
    """Rebuild the change an intent event recorded, to reconcile it."""
    before_text = str(evidence.get("policy_before") or "{}")
    after_text = str(evidence.get("policy") or "{}")
    return PolicyChange(
        str(evidence.get("key")),
        str(evidence.get("change")),
        before_text,
        parse_policy_text(before_text),
        parse_policy_text(after_text),
        tuple(str(r) for r in evidence.get("break_glass_roles") or ()),
    )


# Checks


def check_policy(
    doc: dict[str, Any], key_arn: str, pipeline_account: str, when: str
) -> None:
    """Raise Refused when a policy fails the lockout or the pipeline checks.

    The pipeline check passes when the pipeline account is allowed in either
    documented form, its root principal or its roles.
    """
    problems = policy_problems(doc, key_arn, pipeline_account)
    if not problems:
        return
    reason = f"the key policy of {key_arn} {when} fails its checks: " + "; ".join(
        problems
    )
    raise Refused(
        f"protection rejected: {reason}",
        [
            GuardResult(
                "protection_policy_checks",
                False,
                reason,
                "fix the key policy so that it passes, then protect the key again",
            )
        ],
    )


def policy_problems(
    doc: dict[str, Any], key_arn: str, pipeline_account: str
) -> list[str]:
    """Return the lockout and pipeline problems of a policy, or [] when it passes."""
    problems = lockout_problems(doc, key_arn)
    account = account_from_arn(key_arn)
    best: list[str] | None = None
    for form in PRINCIPAL_FORMS:
        findings = analyse_policy(
            doc,
            key_account=account,
            pipeline_account=pipeline_account,
            principal_form=form,
        )
        errors = [
            f"{f.statement}: {f.message} Fix: {f.fix}" for f in policy_errors(findings)
        ]
        if best is None or len(errors) < len(best):
            best = errors
    return problems + (best or [])


def pipeline_form(doc: dict[str, Any], key_arn: str, pipeline_account: str) -> str:
    """Return the principal form in which a policy lets the pipeline in.

    "root" when it passes the pipeline checks in that form or in neither.
    """
    for form in PRINCIPAL_FORMS:
        findings = analyse_policy(
            doc,
            key_account=account_from_arn(key_arn),
            pipeline_account=pipeline_account,
            principal_form=form,
        )
        if not policy_errors(findings):
            return form
    return PRINCIPAL_FORMS[0]


def lockout_problems(doc: dict[str, Any], key_arn: str) -> list[str]:
    """Return a problem when the key's own account root may not call PutKeyPolicy."""
    partition, account = key_arn.split(":")[1], account_from_arn(key_arn)
    root = f"arn:{partition}:iam::{account}:root"
    decision = evaluate(doc, principal_arn=root, action="kms:PutKeyPolicy")
    if decision == ALLOW:
        return []
    return [
        f"the key's account root {root} may not call kms:PutKeyPolicy ({decision}), "
        "so the account could be locked out of the key"
    ]


def full_protection(actions: Sequence[str] | None) -> bool:
    """Return whether a protection statement denies both protected actions."""
    if actions is None:
        return False
    return all(
        any(action_matches(pattern, required) for pattern in actions)
        for required in PROTECTED_ACTIONS
    )
