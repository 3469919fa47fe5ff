"""Evaluation of a key policy on its own, as AWS KMS decides a request.

An explicit Deny wins. Otherwise an Allow whose principal, action, resource and
conditions all match allows the request, and with no such statement the request
is implicitly denied.

An account principal (arn:aws:iam::111122223333:root or the bare account ID) in a
key policy does not mean only the root user. It delegates access to IAM in that
account, so the evaluator treats it as matching every principal of the account.
Whether IAM in that account then allows the call is outside a key policy, so the
evaluator does not model it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.policy_actions import actions_in_element
from kmsguard.workflow.policy_conditions import (
    ContextValue,
    Tri,
    condition_text,
    evaluate_condition,
    tri_all,
    tri_any,
    tri_not,
)
from kmsguard.workflow.policy_glob import (
    arn_covers,
    arn_match,
    arns_overlap,
    has_wildcard,
)
from kmsguard.workflow.policy_grammar import (
    element_values,
    statement_list,
    validate_policy,
)

ALLOW = "allow"
EXPLICIT_DENY = "explicit-deny"
IMPLICIT_DENY = "implicit-deny"

PRINCIPAL_ARN_RE = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):(?P<service>iam|sts)::(?P<account>\d{12}):"
    r"(?P<resource>.+)$"
)
ACCOUNT_ROOT_RE = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):root$"
)
ACCOUNT_ID_RE = re.compile(r"^\d{12}$")
CONCRETE_ACTION_RE = re.compile(r"^[A-Za-z0-9-]+:[A-Za-z0-9]+$")

PRINCIPAL_ARN_KEY = "aws:principalarn"
PRINCIPAL_ACCOUNT_KEY = "aws:principalaccount"
CALLER_ACCOUNT_KEY = "kms:calleraccount"

ContextInput = Mapping[str, str | bool | list[str]]


@dataclass(frozen=True)
class Subject:
    """The principal of a request, or in analysis a set of roles of one account.

    `arn` is the value of aws:PrincipalArn: for a role session, the role's ARN.
    With `pattern` set, `arn` is a role ARN pattern such as
    arn:aws:iam::111122223333:role/sp-* standing for every role it matches.
    """

    arn: str
    account: str
    partition: str
    session_arn: str = ""
    pattern: bool = False


@dataclass(frozen=True)
class Request:
    """One request to a key: who calls, which action, and the context keys."""

    subject: Subject
    action: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    closed: bool = True
    key_arn: str | None = None


def subject_from_arn(principal_arn: str) -> Subject:
    """Build the subject of a request from an IAM or STS principal ARN.

    An assumed-role session ARN (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION)
    becomes the role ARN, as AWS sets aws:PrincipalArn for role sessions.
    NOTE: a session ARN does not carry the role's path, so the role ARN built
    from it matches a policy that names the role only when the role has no path.

    Raises:
        InvalidInput: the value is not an IAM or STS principal ARN.
    """
    match = PRINCIPAL_ARN_RE.match(principal_arn)
    if not match:
        raise InvalidInput(
            f"invalid principal ARN {principal_arn!r}: give an IAM ARN such as "
            "arn:aws:iam::111122223333:role/NAME or an STS assumed-role ARN"
        )
    partition, account = match["partition"], match["account"]
    resource = match["resource"]
    if match["service"] == "sts":
        kind, _, rest = resource.partition("/")
        if kind != "assumed-role" or "/" not in rest:
            raise InvalidInput(
                f"invalid principal ARN {principal_arn!r}: an STS principal must be "
                "arn:aws:sts::ACCOUNT:assumed-role/ROLE_NAME/SESSION_NAME"
            )
        role_arn = f"arn:{partition}:iam::{account}:role/{rest.split('/')[0]}"
        return Subject(role_arn, account, partition, session_arn=principal_arn)
    return Subject(principal_arn, account, partition)


def request_context(
    subject: Subject, extra: ContextInput | None = None
) -> dict[str, ContextValue]:
    """Build the context keys that follow from the subject, plus `extra`.

    Values given in `extra` replace the derived ones for the same key.
    """
    context = {
        PRINCIPAL_ARN_KEY: ContextValue((subject.arn,), pattern=subject.pattern),
        PRINCIPAL_ACCOUNT_KEY: ContextValue((subject.account,)),
        CALLER_ACCOUNT_KEY: ContextValue((subject.account,)),
    }
    for key, value in (extra or {}).items():
        values = value if isinstance(value, list) else [value]
        context[key.lower()] = ContextValue(tuple(condition_text(v) for v in values))
    return context


def account_of_principal(value: str) -> tuple[str, str] | None:
    """Return (partition, account) when a principal value names a whole account."""
    if ACCOUNT_ID_RE.match(value):
        return "", value
    match = ACCOUNT_ROOT_RE.match(value)
    return (match["partition"], match["account"]) if match else None


def _one_principal(kind: str, value: str, subject: Subject) -> Tri:
    if kind != "AWS":
        return False  # The evaluator models IAM principals only.
    if value == "*":
        return True
    account = account_of_principal(value)
    if account is not None:
        partition, account_id = account
        return account_id == subject.account and partition in ("", subject.partition)
    if has_wildcard(value):
        # AWS rejects such a principal. It is matched as a pattern here so that the
        # analysis reports it once, as an invalid principal.
        if subject.pattern:
            return (
                True
                if arn_covers(value, subject.arn)
                else _some(arns_overlap(value, subject.arn))
            )
        return arn_match(value, subject.arn)
    if subject.pattern:
        return _some(arn_match(subject.arn, value))
    return value in (subject.arn, subject.session_arn)


def _some(possible: bool) -> Tri:
    # A principal inside a set of principals matches some members, not all.
    return None if possible else False


def principal_applies(statement: Mapping[str, Any], subject: Subject) -> Tri:
    """Return whether the statement's Principal or NotPrincipal covers the subject."""
    negated = "NotPrincipal" in statement
    element = statement["NotPrincipal" if negated else "Principal"]
    if element == "*":
        matched: Tri = True
    else:
        matched = tri_any(
            _one_principal(kind, value, subject)
            for kind, values in element.items()
            for value in element_values(values)
        )
    return tri_not(matched) if negated else matched


def action_applies(statement: Mapping[str, Any], action: str) -> bool:
    negated = "NotAction" in statement
    patterns = element_values(statement["NotAction" if negated else "Action"])
    return actions_in_element(patterns, action, negated=negated)


def resource_applies(statement: Mapping[str, Any], key_arn: str | None) -> bool:
    """Return whether the statement's Resource or NotResource covers the key.

    A key policy applies only to its own key, so without `key_arn` every Resource
    value is taken to name this key, and a NotResource statement never applies.
    """
    negated = "NotResource" in statement
    values = element_values(statement["NotResource" if negated else "Resource"])
    if key_arn is None:
        listed = True
    else:
        listed = any(value == "*" or arn_match(value, key_arn) for value in values)
    return not listed if negated else listed


def statement_applies(statement: Mapping[str, Any], request: Request) -> Tri:
    """Return whether a validated statement applies to the request."""
    principal = principal_applies(statement, request.subject)
    if principal is False:
        return False
    if not action_applies(statement, request.action):
        return False
    if not resource_applies(statement, request.key_arn):
        return False
    condition = evaluate_condition(
        statement.get("Condition", {}), request.context, closed=request.closed
    )
    return tri_all([principal, condition])


def evaluate(
    doc: Any,
    *,
    principal_arn: str,
    action: str,
    context: ContextInput | None = None,
    key_arn: str | None = None,
) -> str:
    """Decide a request under a key policy alone: allow, explicit-deny or implicit-deny.

    aws:PrincipalArn, aws:PrincipalAccount and kms:CallerAccount are set from
    `principal_arn`, unless `context` gives them. Other condition keys come from
    `context` and are absent when not given there.

    Raises:
        InvalidInput: the policy is invalid, or the principal ARN or the action
            name is malformed.
    """
    policy = validate_policy(doc)
    if not CONCRETE_ACTION_RE.match(action):
        raise InvalidInput(
            f"invalid action {action!r}: give one operation such as kms:Decrypt, "
            "without wildcards"
        )
    subject = subject_from_arn(principal_arn)
    request = Request(subject, action, request_context(subject, context), True, key_arn)

    decisions = [
        (statement["Effect"], statement_applies(statement, request))
        for statement in statement_list(policy)
    ]
    if ("Deny", True) in decisions:
        return EXPLICIT_DENY
    return ALLOW if ("Allow", True) in decisions else IMPLICIT_DENY
