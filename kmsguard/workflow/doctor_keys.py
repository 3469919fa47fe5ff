"""The key rows of `doctor`: is the key usable, in the right region, and open to the pipeline.

The key's state and region are judged by the check functions the step guards
call, and its policy by analyse_policy, so doctor, `check` and the steps
agree. CloudTrail shows the cryptographic calls that failed on the key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kmsguard.workflow import policy
from kmsguard.workflow.aws import AwsSession, KeyFacts, Kms
from kmsguard.workflow.doctor_findings import (
    ACCESS_DENIED,
    ERROR,
    INFO,
    KEY_UNUSABLE,
    WARNING,
    DoctorFinding,
)
from kmsguard.workflow.errors import KmsguardError
from kmsguard.workflow.evidence import KeyUseEvent, events_since
from kmsguard.workflow.identifiers import account_from_arn, region_from_arn
from kmsguard.workflow.keys import KeyCheck, KeyExpectations, check_key
from kmsguard.workflow.records import Environment

PIPELINE_KEY = "pipeline"  # a key the pipeline uses or is about to use
RETIRED_KEY = "retired"  # a key kmsguard disabled or scheduled for deletion

# The key checks doctor runs on a pipeline key, shared with the step guards.
DOCTOR_KEY_CHECKS = ("key_region", "key_enabled")
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException"})


@dataclass(frozen=True)
class KeyTarget:
    """A key doctor examines, its role, and where doctor learned of it."""

    arn: str
    role: str
    source: str

    def to_dict(self) -> dict[str, str]:
        return {"key_arn": self.arn, "role": self.role, "source": self.source}


@dataclass(frozen=True)
class Examination:
    """The context every key examination shares: AWS, the environment, the window."""

    aws: AwsSession
    environment: Environment
    principal_form: str
    since: datetime
    now: datetime
    caller_arn: str | None = None
    sleep: Callable[[float], None] = time.sleep

    @property
    def env_name(self) -> str:
        return self.environment.name


@dataclass
class FailedCalls:
    """Cryptographic calls on a key that CloudTrail shows failed, grouped."""

    groups: dict[tuple[str, str, str], list[KeyUseEvent]] = field(default_factory=dict)

    @classmethod
    def of(cls, events: list[KeyUseEvent]) -> FailedCalls:
        calls = cls()
        for event in events:
            if event.error_code:
                key = (event.event_name, event.account, event.error_code)
                calls.groups.setdefault(key, []).append(event)
        return calls

    @property
    def count(self) -> int:
        return sum(len(events) for events in self.groups.values())

    def codes(self) -> set[str]:
        return {code for _, _, code in self.groups}

    def describe(self) -> str:
        parts = []
        for (name, account, code), events in sorted(self.groups.items()):
            latest = max(event.event_time for event in events).isoformat()
            parts.append(
                f"{name} by account {account} failed with {code} {len(events)} "
                f"time(s), latest at {latest}"
            )
        return "; ".join(parts)

    def to_list(self) -> list[dict[str, Any]]:
        return [
            {
                "event_name": name,
                "account": account,
                "error_code": code,
                "events": len(events),
                "latest": max(e.event_time for e in events).isoformat(),
                "principals": sorted({e.principal for e in events}),
            }
            for (name, account, code), events in sorted(self.groups.items())
        ]


def examine_key(exam: Examination, target: KeyTarget) -> list[DoctorFinding]:
    """Return the findings about one key, by its role."""
    if region_from_arn(target.arn) != exam.environment.region:
        return _region_findings(exam, target)
    if target.role == RETIRED_KEY:
        return _examine_retired_key(exam, target)
    return _examine_pipeline_key(exam, target)


def _region_findings(exam: Examination, target: KeyTarget) -> list[DoctorFinding]:
    # The key is not read outside the environment's region, as in the steps.
    facts = KeyFacts(target.arn, {"Arn": target.arn}, None)
    expected = KeyExpectations(region=exam.environment.region)
    return [
        DoctorFinding(
            ERROR,
            ACCESS_DENIED,
            check.name,
            check.reason,
            check.fix,
            target.arn,
        )
        for check in check_key(facts, expected, ("key_region",))
        if not check.passed
    ]


def _examine_pipeline_key(exam: Examination, target: KeyTarget) -> list[DoctorFinding]:
    failed_calls, findings = _scan_failed_calls(exam, target)
    try:
        facts = Kms(exam.aws, exam.environment.region).describe(target.arn)
    except KmsguardError as error:
        return [_unreachable(exam, target, error, failed_calls), *findings]

    expected = KeyExpectations(region=exam.environment.region)
    for check in check_key(facts, expected, DOCTOR_KEY_CHECKS):
        if not check.passed:
            findings.append(_key_check_finding(target, check, failed_calls))
    if facts.state == "Enabled":
        findings += _enabled_key_failures(exam, target, failed_calls)
    findings += policy_findings(exam, target)
    return findings


def _unreachable(
    exam: Examination, target: KeyTarget, error: Exception, calls: FailedCalls
) -> DoctorFinding:
    message = f"kmsguard could not read key {target.arn} ({target.source}): {error}"
    if calls.count:
        message += f". CloudTrail shows failed calls on it: {calls.describe()}"
    return DoctorFinding(
        ERROR,
        KEY_UNUSABLE,
        "key_reachable",
        message,
        f"check that the key exists in {exam.environment.region} and that the "
        "credentials may call kms:DescribeKey (`kmsguard iam-policy` lists what "
        "kmsguard needs). A deleted key cannot be restored: contact support.",
        target.arn,
        {"failed_calls": calls.to_list()},
    )


def _key_check_finding(
    target: KeyTarget, check: KeyCheck, calls: FailedCalls
) -> DoctorFinding:
    problem = ACCESS_DENIED if check.name == "key_region" else KEY_UNUSABLE
    message = f"{check.reason} ({target.source})"
    if calls.count:
        message += f". CloudTrail shows the failed calls: {calls.describe()}"
    elif check.name == "key_enabled":
        message += ". CloudTrail shows no failed calls on it in the window read"
    return DoctorFinding(
        ERROR,
        problem,
        check.name,
        message,
        check.fix,
        target.arn,
        {"failed_calls": calls.to_list()},
    )


def _enabled_key_failures(
    exam: Examination, target: KeyTarget, calls: FailedCalls
) -> list[DoctorFinding]:
    if not calls.count:
        return []
    details = {"failed_calls": calls.to_list()}
    if calls.codes() & DENIED_CODES:
        return [
            DoctorFinding(
                ERROR,
                ACCESS_DENIED,
                "cloudtrail_access_denied",
                f"CloudTrail shows cryptographic calls on key {target.arn} that "
                f"failed since {exam.since.isoformat()}: {calls.describe()}",
                "check that the key policy allows pipeline account "
                f"{exam.environment.pipeline_account} (`kmsguard check policy --key "
                f"{target.arn} --env {exam.env_name}`) and that the key is in "
                f"{exam.environment.region}; if both hold, ask support to check the "
                "IAM policies of the pipeline's roles",
                target.arn,
                details,
            )
        ]
    return [
        DoctorFinding(
            WARNING,
            KEY_UNUSABLE,
            "cloudtrail_failed_calls",
            f"key {target.arn} is Enabled now, but CloudTrail shows cryptographic "
            f"calls on it that failed since {exam.since.isoformat()}: "
            f"{calls.describe()}",
            "if the latest failure is older than the time the key was last "
            "enabled, the pipeline has recovered; otherwise contact support",
            target.arn,
            details,
        )
    ]


def _examine_retired_key(exam: Examination, target: KeyTarget) -> list[DoctorFinding]:
    failed_calls, findings = _scan_failed_calls(exam, target)
    try:
        facts = Kms(exam.aws, exam.environment.region).describe(target.arn)
    except KmsguardError as error:
        findings.append(
            DoctorFinding(
                INFO,
                KEY_UNUSABLE,
                "retired_key_readable",
                f"retired key {target.arn} could not be read, which is expected "
                f"once AWS has deleted it: {error}",
                subject=target.arn,
            )
        )
        facts = None
    if failed_calls.count:
        findings.append(_retired_key_in_use(exam, target, facts, failed_calls))
    elif facts is not None and facts.state == "Enabled":
        findings.append(
            DoctorFinding(
                WARNING,
                KEY_UNUSABLE,
                "retired_key_state",
                f"kmsguard disabled key {target.arn} ({target.source}), but it reads "
                "Enabled now: someone enabled it outside kmsguard",
                "find who enabled it (CloudTrail EnableKey events) and check "
                f"`kmsguard status {exam.env_name}` before the next step",
                target.arn,
            )
        )
    return findings


def _retired_key_in_use(
    exam: Examination, target: KeyTarget, facts: KeyFacts | None, calls: FailedCalls
) -> DoctorFinding:
    command = f"kmsguard recover re-enable {exam.env_name}"
    if facts is not None and facts.state == "PendingDeletion":
        command = f"kmsguard recover cancel-deletion {exam.env_name} --enable"
    return DoctorFinding(
        ERROR,
        KEY_UNUSABLE,
        "retired_key_in_use",
        f"kmsguard disabled key {target.arn} ({target.source}), but CloudTrail "
        f"shows cryptographic calls on it that failed since "
        f"{exam.since.isoformat()}: {calls.describe()}. Something still uses it.",
        f"enable it again now with `{command}`, then ask support which component "
        "still uses it",
        target.arn,
        {"failed_calls": calls.to_list()},
    )


def _scan_failed_calls(
    exam: Examination, target: KeyTarget
) -> tuple[FailedCalls, list[DoctorFinding]]:
    """Scan CloudTrail for the key's failed calls; report an incomplete scan."""
    own = (exam.caller_arn,) if exam.caller_arn else ()
    scan = events_since(
        exam.aws,
        region=exam.environment.region,
        key_arn=target.arn,
        since=exam.since,
        now=exam.now,
        own_caller_arns=own,
        sleep=exam.sleep,
    )
    findings = []
    if not scan.complete:
        findings.append(
            DoctorFinding(
                INFO,
                KEY_UNUSABLE,
                "cloudtrail_scan",
                f"the CloudTrail scan of key {target.arn} is incomplete, so failed "
                f"calls may be missing: {'; '.join(scan.gaps)}",
                subject=target.arn,
            )
        )
    return FailedCalls.of(scan.events), findings


def policy_findings(exam: Examination, target: KeyTarget) -> list[DoctorFinding]:
    """Return the errors of the key's policy for the pipeline, by analyse_policy."""
    try:
        text = Kms(exam.aws, exam.environment.region).get_key_policy(target.arn)
        document = policy.parse_policy_text(text)
    except KmsguardError as error:
        return [
            DoctorFinding(
                WARNING,
                ACCESS_DENIED,
                "key_policy_readable",
                f"the policy of key {target.arn} could not be read or parsed, so "
                f"the pipeline account in it was not checked: {error}",
                "allow kms:GetKeyPolicy to the credentials in use, then run doctor "
                "again",
                target.arn,
            )
        ]
    findings = policy.analyse_policy(
        document,
        key_account=account_from_arn(target.arn),
        pipeline_account=exam.environment.pipeline_account,
        principal_form=exam.principal_form,
    )
    return [_policy_finding(target, f) for f in policy.policy_errors(findings)]


def _policy_finding(target: KeyTarget, finding: policy.Finding) -> DoctorFinding:
    return DoctorFinding(
        ERROR,
        ACCESS_DENIED,
        "key_policy",
        f"key policy of {target.arn}, {_statement_phrase(finding.statement)}: "
        f"{finding.message}",
        finding.fix,
        target.arn,
        {"rule": finding.rule, "statement": finding.statement},
    )


def _statement_phrase(label: str) -> str:
    """Name the part of the policy a finding's label points to, for a sentence."""
    if label == policy.POLICY_SCOPE:
        return "the policy as a whole"
    # The label of a statement without a Sid already reads "statement N".
    if label.startswith("statement "):
        return label
    return f"statement {label}"
