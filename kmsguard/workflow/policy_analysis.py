"""Analysis of a key policy against what the pipeline and the key's owner need.

The checks evaluate the statements rather than match their text. The pipeline
account must be allowed every use action, and every grant action for grants to
AWS resources. With the "root" principal form that holds for its root principal.
With the "roles" form it holds for every role the vendor documents, and a role
pattern such as sp-* is evaluated as the set of roles it matches. The key's own
account root must keep kms:* unconditionally, so IAM in that account can always
manage the key. Principals must be real accounts and ARNs, and no Allow may be
open to every AWS account.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from kmsguard.workflow.identifiers import validate_account
from kmsguard.workflow.policy_actions import (
    PIPELINE_GRANT_ACTIONS,
    PIPELINE_USE_ACTIONS,
    expand_actions,
)
from kmsguard.workflow.policy_conditions import ABSENT, ContextValue
from kmsguard.workflow.policy_eval import (
    Request,
    Subject,
    request_context,
    statement_applies,
)
from kmsguard.workflow.policy_glob import has_wildcard
from kmsguard.workflow.policy_grammar import (
    MAX_POLICY_BYTES,
    statement_label,
    statement_list,
    validate_policy,
)
from kmsguard.workflow.policy_key_root import key_root_findings
from kmsguard.workflow.policy_principals import (
    ERROR,
    POLICY_SCOPE,
    WARNING,
    Accounts,
    Finding,
    check_statement_principals,
)
from kmsguard.workflow.policy_render import (
    PIPELINE_GRANTS_SID,
    PIPELINE_USE_SID,
    account_root_arn,
    pipeline_role_arns,
    validate_principal_form,
)

USE_OPERATIONS = expand_actions(PIPELINE_USE_ACTIONS)
GRANT_OPERATIONS = expand_actions(PIPELINE_GRANT_ACTIONS)
GRANT_KEY = "kms:grantisforawsresource"


def policy_errors(findings: Iterable[Finding]) -> list[Finding]:
    """Return the findings of severity error."""
    return [finding for finding in findings if finding.severity == ERROR]


def policy_warnings(findings: Iterable[Finding]) -> list[Finding]:
    """Return the findings of severity warning."""
    return [finding for finding in findings if finding.severity == WARNING]


def pipeline_subjects(
    pipeline_account: str, principal_form: str, partition: str = "aws"
) -> list[Subject]:
    """Return the principals that must be allowed, as subjects of requests."""
    if principal_form == "root":
        root = account_root_arn(pipeline_account, partition)
        return [Subject(root, pipeline_account, partition)]
    return [
        Subject(arn, pipeline_account, partition, pattern=has_wildcard(arn))
        for arn in pipeline_role_arns(pipeline_account, partition)
    ]


def _request(
    subject: Subject, action: str, grant_for_aws_resource: str | None
) -> Request:
    # The analysis models the principal keys and kms:GrantIsForAWSResource, which
    # KMS sets only on grant operations. Every other key is unknown.
    context = request_context(subject)
    grant = (
        ContextValue((grant_for_aws_resource,)) if grant_for_aws_resource else ABSENT
    )
    context[GRANT_KEY] = grant
    return Request(subject, action, context, closed=False)


def _requirements() -> list[tuple[str, tuple[str, ...], tuple[str, ...], str | None]]:
    return [
        ("pipeline-use-missing", PIPELINE_USE_ACTIONS, USE_OPERATIONS, None),
        ("pipeline-grant-missing", PIPELINE_GRANT_ACTIONS, GRANT_OPERATIONS, "true"),
    ]


def analyse_policy(
    doc: Any,
    *,
    key_account: str,
    pipeline_account: str,
    principal_form: str = "root",
    partition: str = "aws",
) -> list[Finding]:
    """Analyse a key policy for one environment and return its findings.

    Raises:
        InvalidInput: the document breaks the key policy grammar, an account ID
            is malformed, or the principal form is neither root nor roles.
    """
    policy = validate_policy(doc)
    accounts = Accounts(
        validate_account(key_account, "the key account"),
        validate_account(pipeline_account, "--pipeline-account"),
    )
    validate_principal_form(principal_form)
    statements = statement_list(policy)
    subjects = pipeline_subjects(accounts.pipeline, principal_form, partition)
    key_root = Subject(
        account_root_arn(accounts.key, partition), accounts.key, partition
    )

    findings: list[Finding] = []
    for index, statement in enumerate(statements):
        label = statement_label(policy, index)
        findings += check_statement_principals(statement, label, accounts)
        if statement["Effect"] == "Deny":
            findings += _deny_findings(statement, label, subjects, key_root)
        else:
            findings += _grant_condition_findings(statement, label, subjects)

    findings += _coverage_findings(statements, accounts, principal_form, partition)
    findings += key_root_findings(policy, accounts, partition)
    findings += _duplicate_sid_findings(statements)
    findings += _size_findings(policy)
    return findings


def _missing(
    statements: Sequence[dict[str, Any]],
    subjects: Sequence[Subject],
    operations: Sequence[str],
    grant_value: str | None,
) -> dict[str, list[str]]:
    allows = [s for s in statements if s["Effect"] == "Allow"]
    missing: dict[str, list[str]] = {}
    for subject in subjects:
        for action in operations:
            request = _request(subject, action, grant_value)
            if not any(statement_applies(s, request) is True for s in allows):
                missing.setdefault(subject.arn, []).append(action)
    return missing


def _describe_missing(patterns: Sequence[str], missing: Sequence[str]) -> str:
    parts = []
    for pattern in patterns:
        expanded = expand_actions([pattern])
        names = [name for name in expanded if name in missing]
        if not names:
            continue
        whole = len(names) == len(expanded)
        parts.append(pattern if whole else f"{pattern} (missing {', '.join(names)})")
    return ", ".join(parts)


def _coverage_findings(
    statements: Sequence[dict[str, Any]],
    accounts: Accounts,
    principal_form: str,
    partition: str,
) -> list[Finding]:
    findings = []
    subjects = pipeline_subjects(accounts.pipeline, principal_form, partition)
    roles = pipeline_subjects(accounts.pipeline, "roles", partition)
    for rule, patterns, operations, grant_value in _requirements():
        missing = _missing(statements, subjects, operations, grant_value)
        if not missing:
            continue
        gaps = "; ".join(
            f"{_describe_missing(patterns, names)} {_subject_name(arn)}"
            for arn, names in missing.items()
        )
        fix = _coverage_fix(rule, accounts, principal_form, partition)
        if principal_form == "root" and not _missing(
            statements, roles, operations, grant_value
        ):
            fix += (
                " The policy does allow the documented pipeline roles. If only those"
                " should use the key, set the pipeline principal form to roles"
                " (--pipeline-principal roles)."
            )
        message = f"The pipeline account {accounts.pipeline} is not allowed {gaps}."
        findings.append(Finding(ERROR, POLICY_SCOPE, rule, message, fix))
    return findings


def _subject_name(arn: str) -> str:
    if arn.endswith(":root"):
        return f"for its root principal {arn}"
    return f"for roles matching {arn}" if has_wildcard(arn) else f"for role {arn}"


def _coverage_fix(rule: str, accounts: Accounts, form: str, partition: str) -> str:
    use = rule == "pipeline-use-missing"
    actions = PIPELINE_USE_ACTIONS if use else PIPELINE_GRANT_ACTIONS
    condition: dict[str, Any] = {}
    if not use:
        condition["Bool"] = {"kms:GrantIsForAWSResource": "true"}
    if form == "roles":
        roles = pipeline_role_arns(accounts.pipeline, partition)
        condition["ArnLike"] = {"aws:PrincipalArn": roles}
    root = account_root_arn(accounts.pipeline, partition)
    text = (
        f'Add an Allow statement with Principal {{"AWS": "{root}"}}, Action '
        f'{json.dumps(list(actions))} and Resource "*"'
    )
    if condition:
        text += f", with the Condition {json.dumps(condition)}"
    sid = PIPELINE_USE_SID if use else PIPELINE_GRANTS_SID
    return f"{text}. kmsguard's apply-policy step writes it with Sid {sid}."


def _blocked_actions(
    statement: dict[str, Any], subjects: Sequence[Subject]
) -> dict[str, bool | None]:
    """Return the required actions a Deny blocks: True for certain, None for maybe."""
    blocked: dict[str, bool | None] = {}
    for subject in subjects:
        for operations, grant_value in (
            (USE_OPERATIONS, None),
            (GRANT_OPERATIONS, "true"),
        ):
            for action in operations:
                request = _request(subject, action, grant_value)
                result = statement_applies(statement, request)
                if result is not False and blocked.get(action) is not True:
                    blocked[action] = result
    return blocked


def _deny_findings(
    statement: dict[str, Any],
    label: str,
    subjects: Sequence[Subject],
    key_root: Subject,
) -> list[Finding]:
    blocked = _blocked_actions(statement, subjects)
    certain = [action for action, result in blocked.items() if result is True]
    possible = [action for action, result in blocked.items() if result is None]

    findings = []
    if certain:
        findings.append(_pipeline_denied(label, certain, subjects))
    elif possible:
        findings.append(
            Finding(
                WARNING,
                label,
                "pipeline-deny-possible",
                "The Deny statement may block the pipeline from "
                f"{', '.join(possible)}. It matches some pipeline principals, or "
                "conditions that kmsguard cannot evaluate decide it.",
                "Check that the statement never matches the pipeline's requests, or "
                "exclude the pipeline account from it.",
            )
        )

    put_policy = _request(key_root, "kms:PutKeyPolicy", None)
    if statement_applies(statement, put_policy) is True:
        findings.append(_key_root_denied(label))
    return findings


def _key_root_denied(label: str) -> Finding:
    return Finding(
        WARNING,
        label,
        "key-root-denied",
        "The Deny statement blocks kms:PutKeyPolicy for principals of the key's own "
        "account, so only principals it exempts can change the policy.",
        "Make sure a principal exempt from this Deny can still update the key "
        "policy, or remove kms:PutKeyPolicy from the Deny.",
    )


def _pipeline_denied(
    label: str, actions: list[str], subjects: Sequence[Subject]
) -> Finding:
    account = subjects[0].account
    return Finding(
        ERROR,
        label,
        "pipeline-denied",
        f"The Deny statement blocks the pipeline account {account} from "
        f"{', '.join(actions)}, which the pipeline needs. An explicit Deny overrides "
        "every Allow.",
        "Remove those actions from the Deny statement, or exempt the pipeline account "
        f'with a condition such as "StringNotEquals": {{"aws:PrincipalAccount": '
        f'["{account}"]}}.',
    )


def _grant_condition_findings(
    statement: dict[str, Any], label: str, subjects: Sequence[Subject]
) -> list[Finding]:
    for subject in subjects:
        for action in GRANT_OPERATIONS:
            if statement_applies(statement, _request(subject, action, "false")) is True:
                return [
                    Finding(
                        WARNING,
                        label,
                        "grant-condition-missing",
                        f"The statement allows the pipeline {action} for grants to "
                        "any principal, not only to AWS services that use the key for "
                        "the pipeline's resources.",
                        'Add the condition "Bool": {"kms:GrantIsForAWSResource": '
                        '"true"} to the grant actions.',
                    )
                ]
    return []


def _duplicate_sid_findings(statements: Sequence[dict[str, Any]]) -> list[Finding]:
    sids = [s["Sid"] for s in statements if s.get("Sid")]
    duplicates = sorted({sid for sid in sids if sids.count(sid) > 1})
    return [
        Finding(
            WARNING,
            sid,
            "duplicate-sid",
            f"{sids.count(sid)} statements have the Sid {sid!r}.",
            "Give each statement its own Sid, so that kmsguard's merge and the "
            "findings refer to one statement.",
        )
        for sid in duplicates
    ]


def _size_findings(policy: dict[str, Any]) -> list[Finding]:
    # Measured on compact JSON, the smallest text of the document.
    size = len(json.dumps(policy, separators=(",", ":"), ensure_ascii=False).encode())
    if size <= MAX_POLICY_BYTES:
        return []
    return [
        Finding(
            ERROR,
            POLICY_SCOPE,
            "policy-too-large",
            f"The policy takes {size} bytes even as compact JSON, over the "
            f"{MAX_POLICY_BYTES}-byte limit of AWS KMS.",
            "Remove or merge statements.",
        )
    ]
