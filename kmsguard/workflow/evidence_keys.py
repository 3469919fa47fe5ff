"""Resolution of the key identifiers that resources store to key ARNs.

Services store whatever identifier they were given: an alias name, an alias
ARN, a key ID or a key ARN. Only the key ARN can be compared, and alias names
and key IDs mean something only in the account and region that own the
resource, so resolution uses that account's credentials.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from kmsguard.workflow.aws import AwsSession, describe_error
from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.identifiers import (
    ALIAS_ARN_RE,
    ALIAS_NAME_RE,
    KEY_ARN_RE,
    KEY_ID_RE,
)

log = logging.getLogger(__name__)


def aws_errors() -> tuple[type[Exception], ...]:
    """Return the botocore exception classes, importing botocore only when needed."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def failure_text(exc: Exception, action: str, target: str) -> str:
    """Return one line naming the failed AWS call, the AWS error and the fix."""
    return str(describe_error(exc, action, target))


@dataclass(frozen=True)
class Resolution:
    """The key ARN that one stored key identifier names, or why it is unknown."""

    reference: str
    key_arn: str | None = None
    aws_managed: bool = False
    error: str | None = None

    def matches(self, key_arn: str) -> bool:
        return self.key_arn == key_arn

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"reference": self.reference, "key_arn": self.key_arn}
        if self.aws_managed:
            data["aws_managed"] = True
        if self.error:
            data["error"] = self.error
        return data


class KeyResolver:
    """Resolve stored key identifiers with DescribeKey, caching each result.

    One resolver serves one AWS profile, the account that owns the resources.
    It is safe to share between threads. Two threads may resolve the same
    identifier at once, which costs one extra DescribeKey and nothing else.
    """

    def __init__(self, aws: AwsSession, profile: str | None) -> None:
        self.aws = aws
        self.profile = profile
        self._cache: dict[tuple[str, str], Resolution] = {}
        self._lock = threading.Lock()

    def resolve(self, reference: str, region: str) -> Resolution:
        """Return the key ARN that `reference` names in `region`."""
        text = reference.strip()
        with self._lock:
            cached = self._cache.get((text, region))
        if cached is not None:
            return cached

        resolution = self._resolve_uncached(text, region)
        with self._lock:
            self._cache[(text, region)] = resolution
        return resolution

    def _resolve_uncached(self, text: str, region: str) -> Resolution:
        if KEY_ARN_RE.match(text):
            return Resolution(text, key_arn=text)

        # DescribeKey on a predefined alias/aws/ alias that has no key yet makes
        # KMS create the AWS managed key (KMS API reference, DescribeKey), so
        # such aliases are classified without a call. An AWS managed key is
        # never the customer managed key being checked.
        if text.startswith("alias/aws/") or ":alias/aws/" in text:
            return Resolution(text, aws_managed=True)

        if match := ALIAS_ARN_RE.match(text):
            return self._describe(text, match["region"])
        if ALIAS_NAME_RE.match(text) or KEY_ID_RE.match(text):
            return self._describe(text, region)
        return Resolution(
            text,
            error=(
                f"stored key identifier {text!r} is not a key ID, alias name, "
                "alias ARN or key ARN, so it cannot be compared; check the "
                "resource's encryption settings"
            ),
        )

    def _describe(self, text: str, region: str) -> Resolution:
        kms = self.aws.client("kms", region, self.profile)
        try:
            metadata = kms.describe_key(KeyId=text)["KeyMetadata"]
        except aws_errors() as exc:
            log.warning("could not resolve key identifier %s: %s", text, exc)
            action = (
                f"kms:DescribeKey in {region} (profile {self.profile or 'default'})"
            )
            return Resolution(text, error=failure_text(exc, action, text))
        return Resolution(
            text,
            key_arn=str(metadata["Arn"]),
            aws_managed=metadata.get("KeyManager") == "AWS",
        )


def validate_key_arn(key_arn: str, region: str) -> None:
    """Raise InvalidInput unless `key_arn` is a key ARN in `region`."""
    match = KEY_ARN_RE.match(key_arn)
    if not match:
        raise InvalidInput(
            f"invalid key ARN {key_arn!r}: evidence is gathered for a key ARN "
            "(arn:aws:kms:REGION:ACCOUNT:key/KEY_ID); resolve the key first"
        )
    if match["region"] != region:
        raise InvalidInput(
            f"key {key_arn} is in region {match['region']}, but the evidence "
            f"was requested for region {region}; give the environment's region"
        )
