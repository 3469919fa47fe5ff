"""Findings about the principals and accounts that a key policy names.

The checks cover every AWS principal, and every account or principal ARN that a
condition compares. They report placeholders left from the vendor's template,
malformed values, wildcards that AWS rejects, accounts one digit off the
expected ones, and accounts outside the key's and the pipeline's. They also
report Allow statements open to every principal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kmsguard.workflow.policy_glob import glob_match, has_wildcard
from kmsguard.workflow.policy_grammar import element_values, split_operator
from kmsguard.workflow.policy_render import PIPELINE_ROLE_PATTERNS

ERROR = "error"
WARNING = "warning"
POLICY_SCOPE = "(policy)"

# Role names from the vendor's template that stand for the customer's own roles.
PLACEHOLDER_ROLE_NAMES = frozenset({"YourSecurityRole", "YourAdminRole"})
# Template text such as YOUR_ACCOUNT_ID, <account-id> or {{AccountId}}.
PLACEHOLDER_RE = re.compile(r"^(<[^>]*>|\{\{?[^}]*\}\}?|[A-Z][A-Z0-9]*(_[A-Z0-9]+)+)$")
PRINCIPAL_RESOURCE_RE = re.compile(
    r"^(root|(user|role|federated-user)/.+|assumed-role/[^/]+/.+)$"
)

ACCOUNT_KEYS = frozenset({"aws:principalaccount", "kms:calleraccount"})
ORG_KEY = "aws:principalorgid"
ARN_KEY = "aws:principalarn"
_PIN_OPERATORS = frozenset(
    {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike"}
)


@dataclass(frozen=True)
class Finding:
    """One problem found in a key policy, with the statement, the rule and the fix."""

    severity: str  # "error" or "warning"
    statement: str  # the Sid, "statement N" (from 1) without a Sid, or "(policy)"
    rule: str
    message: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "statement": self.statement,
            "rule": self.rule,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Accounts:
    """The accounts an analysis checks against."""

    key: str
    pipeline: str


def accounts_near(first: str, second: str) -> bool:
    """Return whether two account IDs differ in one digit or by two swapped digits."""
    if len(first) != len(second) or first == second:
        return False
    diffs = [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b]
    if len(diffs) == 1:
        return True
    i, j = diffs[0], diffs[-1]
    return (
        len(diffs) == 2
        and j == i + 1
        and first[i] == second[j]
        and first[j] == second[i]
    )


def _placeholder_fix(text: str, accounts: Accounts) -> str:
    upper = text.upper()
    if "PIPELINE" in upper or "SNOWPLOW" in upper:
        return f"Replace {text} with the pipeline account ID {accounts.pipeline}."
    if "YOUR" in upper:
        return f"Replace {text} with the key's account ID {accounts.key}."
    return (
        f"Replace {text} with the 12-digit account ID it stands for (the key's "
        f"account is {accounts.key}, the pipeline account is {accounts.pipeline})."
    )


class PrincipalChecker:
    """Collects principal and account findings for one statement."""

    def __init__(self, label: str, accounts: Accounts, *, allow: bool) -> None:
        self.label = label
        self.accounts = accounts
        self.allow = allow
        self.findings: list[Finding] = []

    def add(self, severity: str, rule: str, message: str, fix: str) -> None:
        self.findings.append(Finding(severity, self.label, rule, message, fix))

    def check_account_id(self, account: str, value: str, *, related: bool) -> bool:
        """Check the account field of a principal and return whether it is well-formed.

        With `related`, an account outside the key's and the pipeline's is reported.
        """
        if re.fullmatch(r"\d{12}", account):
            if related and self.allow:
                self._check_relation(account, value)
            return True
        if re.search(r"[A-Za-z_<>{}]", account):
            self.add(
                ERROR,
                "principal-placeholder",
                f"{value!r} still contains the placeholder {account}.",
                _placeholder_fix(account, self.accounts),
            )
        elif account.isdigit():
            self.add(
                ERROR,
                "principal-account-invalid",
                f"{value!r} has an account ID of {len(account)} digits, and an AWS "
                "account ID has exactly 12.",
                "Copy the 12-digit account ID again, keeping any leading zeros.",
            )
        else:
            self.add(
                ERROR,
                "principal-malformed",
                f"{value!r} has {account!r} where a 12-digit account ID belongs.",
                "Write arn:aws:iam::ACCOUNT_ID:root or a role ARN with a 12-digit ID.",
            )
        return False

    def _check_relation(self, account: str, value: str, role_name: str = "") -> None:
        key, pipeline = self.accounts.key, self.accounts.pipeline
        if account in (key, pipeline):
            return
        if accounts_near(account, pipeline) or _is_pipeline_role(role_name):
            reason = (
                "one digit off"
                if accounts_near(account, pipeline)
                else f"a different account, though {role_name} is a pipeline role name"
            )
            self.add(
                ERROR,
                "pipeline-account-mismatch",
                f"{value!r} is in account {account}, {reason}: the environment's "
                f"pipeline account is {pipeline}.",
                f"Use the pipeline account {pipeline}, or correct the environment's "
                "pipeline account if it is the one that is wrong.",
            )
        elif accounts_near(account, key):
            self.add(
                ERROR,
                "key-account-mismatch",
                f"{value!r} is in account {account}, one digit off the key's account "
                f"{key}.",
                f"Use the key's account {key}.",
            )
        else:
            self.add(
                WARNING,
                "foreign-account",
                f"{value!r} gives access to account {account}, which is neither the "
                f"key's account {key} nor the pipeline account {pipeline}.",
                "Remove the principal unless that account must use the key.",
            )

    def check_principal(self, value: str) -> None:
        """Check one value of a Principal's AWS list."""
        if value == "*":
            return
        if value.isdigit() or not value.startswith("arn:"):
            self._check_bare(value)
            return
        fields = value.split(":", 5)
        if len(fields) != 6:
            self._malformed(value)
            return
        _, partition, service, region, account, resource = fields
        if not self.check_account_id(account, value, related=False):
            return
        if not partition.startswith("aws") or service not in ("iam", "sts") or region:
            self._malformed(value)
            return
        self._check_resource(value, partition, account, resource)

    def _check_bare(self, value: str) -> None:
        if value.isdigit() or PLACEHOLDER_RE.match(value):
            self.check_account_id(value, value, related=True)
        else:
            self._malformed(value)

    def _check_resource(
        self, value: str, partition: str, account: str, resource: str
    ) -> None:
        name = resource.split("/")[-1]
        if has_wildcard(resource):
            self.add(
                ERROR,
                "principal-wildcard",
                f"{value!r} has a wildcard, and AWS rejects wildcards in a principal "
                "ARN (PutKeyPolicy fails with MalformedPolicyDocumentException).",
                f"Name arn:{partition}:iam::{account}:root as the principal and add the "
                'pattern as a condition: "ArnLike": {"aws:PrincipalArn": '
                f'["{value}"]}}.',
            )
        elif not PRINCIPAL_RESOURCE_RE.match(resource):
            self._malformed(value)
            return
        elif name in PLACEHOLDER_ROLE_NAMES:
            self.add(
                ERROR,
                "principal-placeholder",
                f"{value!r} still names the template role {name}.",
                "Replace it with the ARN of a real role of your security team.",
            )
        if self.allow:
            self._check_relation(account, value, name)

    def _malformed(self, value: str) -> None:
        self.add(
            ERROR,
            "principal-malformed",
            f"{value!r} is not an IAM principal.",
            "Use an account ID, arn:aws:iam::ACCOUNT_ID:root, or the ARN of an IAM "
            "role or user (IAM groups cannot be principals).",
        )

    def check_pinned_values(self, condition: dict[str, Any]) -> None:
        """Check the accounts and principal ARNs that a condition compares.

        Values with wildcards are patterns, which conditions may use, and are
        not checked.
        """
        for kind, value, positive in _pinned_values(condition):
            if kind == "account":
                if not has_wildcard(value):
                    self.check_account_id(value, value, related=positive)
                continue
            fields = value.split(":", 5)
            if len(fields) != 6 or has_wildcard(fields[4]):
                continue
            well_formed = self.check_account_id(fields[4], value, related=False)
            if well_formed and positive and self.allow:
                self._check_relation(fields[4], value, fields[5].split("/")[-1])


def _is_pipeline_role(role_name: str) -> bool:
    return any(glob_match(p, role_name) for p in PIPELINE_ROLE_PATTERNS if role_name)


def _pinned_values(condition: dict[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """Yield (kind, value, positive) for each account or ARN a condition compares."""
    for name, block in condition.items():
        operator = split_operator(name)
        if operator is None:
            continue
        positive = operator.base in _PIN_OPERATORS
        for key, values in block.items():
            kind = "account" if key.lower() in ACCOUNT_KEYS else "arn"
            if key.lower() in ACCOUNT_KEYS or key.lower() == ARN_KEY:
                for value in element_values(values):
                    if isinstance(value, str) and value != "*":
                        yield kind, value, positive


def pins_accounts(condition: dict[str, Any]) -> bool:
    """Return whether a condition limits callers to named accounts or an organization.

    That takes a positive string or ARN operator without IfExists or
    ForAllValues (both match a request that lacks the key) on
    aws:PrincipalAccount, kms:CallerAccount or aws:PrincipalOrgID with literal
    values, or on aws:PrincipalArn with a 12-digit account in every value.
    """
    for name, block in condition.items():
        operator = split_operator(name)
        if operator is None or operator.base not in _PIN_OPERATORS:
            continue
        if operator.if_exists or operator.qualifier == "ForAllValues":
            continue
        for key, values in block.items():
            if _pins(key.lower(), [str(v) for v in element_values(values)]):
                return True
    return False


def _pins(key: str, values: list[str]) -> bool:
    if key in ACCOUNT_KEYS or key == ORG_KEY:
        return not any(has_wildcard(value) for value in values)
    if key == ARN_KEY:
        accounts = [
            value.split(":", 5)[4] if value.count(":") >= 5 else "" for value in values
        ]
        return all(re.fullmatch(r"\d{12}", account) for account in accounts)
    return False


def check_statement_principals(
    statement: dict[str, Any], label: str, accounts: Accounts
) -> list[Finding]:
    """Return the principal, account and exposure findings of one statement."""
    allow = statement["Effect"] == "Allow"
    checker = PrincipalChecker(label, accounts, allow=allow)
    element = statement.get("Principal", statement.get("NotPrincipal"))
    values = element_values(element.get("AWS", [])) if isinstance(element, dict) else []
    for value in values:
        checker.check_principal(value)
    condition = statement.get("Condition", {})
    checker.check_pinned_values(condition)

    if allow and "NotPrincipal" in statement:
        checker.add(
            ERROR,
            "public-principal",
            "The statement allows every principal that NotPrincipal does not list, "
            "in any AWS account.",
            "Replace NotPrincipal with a Principal that names the accounts or roles.",
        )
    elif allow and (element == "*" or "*" in values) and not pins_accounts(condition):
        checker.add(
            ERROR,
            "public-principal",
            'The statement allows principal "*" (any AWS account) with no condition '
            "that limits the caller's account.",
            'Name the accounts in Principal, or add a condition such as "StringEquals":'
            ' {"kms:CallerAccount": ["' + accounts.pipeline + '"]}.',
        )
    return checker.findings
