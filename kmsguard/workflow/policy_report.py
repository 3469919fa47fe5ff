"""`check policy`, `policy render` and `policy diff`: key policies for one environment.

`check policy` parses a document with the key policy grammar and analyses it
with analyse_policy, the function the apply-policy step's guard relies on, so
the step and the command report the same findings. `policy render` and
`policy diff` render and merge the policy the same way apply-policy does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kmsguard.workflow import policy
from kmsguard.workflow.aws import AwsSession, Kms
from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.identifiers import account_from_arn, region_from_arn
from kmsguard.workflow.policy import Finding, PolicyDocumentError
from kmsguard.workflow.records import Environment

# The category of each analysis rule, for grouping findings in reports.
RULE_CATEGORIES: dict[str, str] = {
    "pipeline-use-missing": "pipeline actions",
    "pipeline-grant-missing": "pipeline actions",
    "grant-condition-missing": "pipeline actions",
    "key-root-missing": "lockout safety",
    "key-root-narrowed": "lockout safety",
    "key-root-denied": "lockout safety",
    "principal-placeholder": "principals",
    "principal-account-invalid": "principals",
    "principal-malformed": "principals",
    "principal-wildcard": "principals",
    "pipeline-account-mismatch": "principals",
    "key-account-mismatch": "principals",
    "public-principal": "exposure",
    "foreign-account": "exposure",
    "pipeline-denied": "deny statements",
    "pipeline-deny-possible": "deny statements",
    "duplicate-sid": "document",
    "policy-too-large": "document",
}


class InvalidPolicyDocument(InvalidInput):
    """A key policy that is not valid JSON or breaks the key policy grammar."""

    def __init__(self, source: str, error: PolicyDocumentError) -> None:
        super().__init__(f"{source}: {error}")
        self.source = source
        self.path = error.path
        self.line = error.line
        self.column = error.column

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update(
            source=self.source, path=self.path, line=self.line, column=self.column
        )
        return data


@dataclass(frozen=True)
class PolicyReport:
    """The findings of one key policy for one environment."""

    environment: str
    source: str  # "file PATH" or the key ARN
    key_account: str
    pipeline_account: str
    principal_form: str
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return policy.policy_errors(self.findings)

    @property
    def warnings(self) -> list[Finding]:
        return policy.policy_warnings(self.findings)

    def summary(self) -> str:
        return f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "source": self.source,
            "key_account": self.key_account,
            "pipeline_account": self.pipeline_account,
            "pipeline_principal": self.principal_form,
            "ok": not self.errors,
            "summary": self.summary(),
            "findings": [finding_dict(f) for f in self.findings],
        }


def finding_dict(finding: Finding) -> dict[str, str]:
    """Return a finding as a dict, with the category of its rule."""
    data = finding.to_dict()
    data["category"] = RULE_CATEGORIES.get(finding.rule, "other")
    return data


def parse_document(text: str, source: str) -> dict[str, Any]:
    """Parse and validate key policy text, naming `source` in any error.

    Raises:
        InvalidPolicyDocument: the text is not a valid key policy; the error
            carries the JSON path, or the line and column, of the problem.
    """
    try:
        return policy.parse_policy_text(text)
    except PolicyDocumentError as error:
        raise InvalidPolicyDocument(source, error) from error


def check_policy_text(
    text: str,
    *,
    environment: Environment,
    key_account: str,
    principal_form: str,
    source: str,
) -> PolicyReport:
    """Parse and analyse one key policy document for an environment.

    Raises:
        InvalidPolicyDocument: the document is invalid.
        InvalidInput: the key account or the principal form is invalid.
    """
    document = parse_document(text, source)
    findings = policy.analyse_policy(
        document,
        key_account=key_account,
        pipeline_account=environment.pipeline_account,
        principal_form=principal_form,
    )
    return PolicyReport(
        environment.name,
        source,
        key_account,
        environment.pipeline_account,
        principal_form,
        findings,
    )


def read_key_policy(
    aws: AwsSession, environment: Environment, key: str
) -> tuple[str, str]:
    """Resolve a key in the environment's region and return (key ARN, policy text).

    Raises:
        InvalidInput: the identifier is malformed, the key does not exist, or
            it is in another region than the environment's.
        OperationFailed: AWS failed to return the policy.
    """
    kms = Kms(aws, environment.region)
    facts = kms.resolve(key)
    if region_from_arn(facts.arn) != environment.region:
        raise InvalidInput(
            f"key {facts.arn} is in region {region_from_arn(facts.arn)}, but "
            f"environment {environment.name!r} runs in {environment.region}; give "
            f"a key in {environment.region}"
        )
    return facts.arn, kms.get_key_policy(facts.arn)


def check_key_policy(
    aws: AwsSession, environment: Environment, key: str, principal_form: str
) -> PolicyReport:
    """Read a key's policy from AWS and analyse it for the environment."""
    key_arn, text = read_key_policy(aws, environment, key)
    return check_policy_text(
        text,
        environment=environment,
        key_account=account_from_arn(key_arn),
        principal_form=principal_form,
        source=key_arn,
    )


def render_for_environment(
    environment: Environment,
    *,
    key_account: str,
    principal_form: str,
    admin_roles: Sequence[str],
) -> dict[str, Any]:
    """Render the policy apply-policy starts from, for the environment's pipeline."""
    return policy.render_key_policy(
        key_account=key_account,
        pipeline_account=environment.pipeline_account,
        principal_form=principal_form,
        admin_roles=admin_roles,
    )


@dataclass(frozen=True)
class PolicyChange:
    """A key's current policy, the policy apply-policy would put, and the diff."""

    environment: str
    key_arn: str
    principal_form: str
    current: dict[str, Any]
    proposed: dict[str, Any]
    diff: str
    findings: list[Finding]

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "key_arn": self.key_arn,
            "pipeline_principal": self.principal_form,
            "changed": bool(self.diff),
            "diff": self.diff,
            "current": self.current,
            "proposed": self.proposed,
            "findings": [finding_dict(f) for f in self.findings],
        }


def policy_change(
    aws: AwsSession,
    environment: Environment,
    key: str,
    *,
    principal_form: str,
    admin_roles: Sequence[str],
) -> PolicyChange:
    """Return the change apply-policy would make to a key's policy, changing nothing.

    Like apply-policy, it merges the rendered statements into the current
    policy, keeping the statements kmsguard did not write.
    """
    key_arn, text = read_key_policy(aws, environment, key)
    current = json.loads(text)
    rendered = render_for_environment(
        environment,
        key_account=account_from_arn(key_arn),
        principal_form=principal_form,
        admin_roles=admin_roles,
    )
    proposed = policy.merge_policy(current, rendered)
    findings = policy.analyse_policy(
        proposed,
        key_account=account_from_arn(key_arn),
        pipeline_account=environment.pipeline_account,
        principal_form=principal_form,
    )
    return PolicyChange(
        environment.name,
        key_arn,
        principal_form,
        current,
        proposed,
        policy.diff_policies(current, proposed),
        findings,
    )
