"""`check key`: every property the procedures need of a key, read from AWS.

The key is resolved and read exactly as the procedures' steps read it, and each
property is judged by the same check functions the step guards call, so a step
and `check key` cannot disagree about a key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kmsguard.workflow.aws import AwsSession, Kms
from kmsguard.workflow.errors import OperationFailed
from kmsguard.workflow.keys import ALL_KEY_CHECKS, KeyCheck, KeyExpectations, check_key
from kmsguard.workflow.records import Environment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyReport:
    """The outcome of every key check for one key in one environment."""

    environment: str
    region: str
    key_arn: str
    checks: list[KeyCheck]

    @property
    def failed(self) -> list[KeyCheck]:
        return [check for check in self.checks if check.status == "failed"]

    @property
    def warnings(self) -> list[KeyCheck]:
        return [check for check in self.checks if check.status == "warning"]

    def summary(self) -> str:
        passed = len(self.checks) - len(self.failed) - len(self.warnings)
        return (
            f"{len(self.failed)} failed, {len(self.warnings)} warning(s), "
            f"{passed} passed"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "region": self.region,
            "key_arn": self.key_arn,
            "ok": not self.failed,
            "summary": self.summary(),
            "checks": [check.to_dict() for check in self.checks],
        }


def check_key_in_environment(
    aws: AwsSession, environment: Environment, key: str
) -> KeyReport:
    """Resolve a key in the environment's region and run every key check on it.

    Raises:
        InvalidInput: the identifier is malformed, or no such key exists in the
            environment's region.
        OperationFailed: AWS failed to describe the key.
    """
    facts = Kms(aws, environment.region).resolve(key)
    expected = KeyExpectations(
        region=environment.region, account=_caller_account(aws, environment.region)
    )
    return KeyReport(
        environment.name,
        environment.region,
        facts.arn,
        check_key(facts, expected, ALL_KEY_CHECKS),
    )


def _caller_account(aws: AwsSession, region: str) -> str | None:
    # Without the caller's account the owner check is a warning, not a failure,
    # so that the other properties are still reported.
    try:
        return aws.caller_identity(region)["Account"]
    except OperationFailed as error:
        log.warning("could not identify the AWS caller: %s", error)
        return None
