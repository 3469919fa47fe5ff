"""The AWS adapter: boto3 clients, key resolution and AWS errors made readable.

boto3 is imported inside `AwsSession.client` only, so commands that never call
AWS start without paying for it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kmsguard.workflow.errors import InvalidInput, OperationFailed
from kmsguard.workflow.identifiers import (
    KEY_ARN_RE,
    account_from_arn,
    key_id_from_arn,
    parse_key_reference,
)

log = logging.getLogger(__name__)

# Plain explanations for the AWS error codes operators meet most; any other
# code is shown with AWS's own message.
ERROR_HINTS = {
    "AccessDeniedException": (
        "the credentials in use may not call this action on this key; check the "
        "IAM policy of the caller and the key policy, or use --profile"
    ),
    "AccessDenied": (
        "the credentials in use may not call this action; check the caller's "
        "IAM policy, or use --profile"
    ),
    "NotFoundException": (
        "no key or alias of that name exists in this account and region; check "
        "the key ID, ARN or alias and the region (`aws kms list-aliases` lists "
        "the aliases)"
    ),
    "KMSInvalidStateException": (
        "the key is not in a state that allows this call; run "
        "`kmsguard check key` to see its state"
    ),
    "DisabledException": "the key is disabled; see `kmsguard recover re-enable`",
    "ThrottlingException": (
        "AWS throttled the request after the standard retries; wait a minute and "
        "run the command again"
    ),
    "UnrecognizedClientException": (
        "the access key is not valid; check --profile or AWS_ACCESS_KEY_ID"
    ),
    "InvalidClientTokenId": "the access key is not valid; check --profile",
    "ExpiredToken": "the session token expired; refresh the credentials",
    "ExpiredTokenException": "the session token expired; refresh the credentials",
    "MalformedPolicyDocumentException": (
        "AWS rejected the key policy; run `kmsguard check policy` on it"
    ),
    "AlreadyExistsException": "the alias already exists; choose another --alias",
}


def _number_from_environment(name: str, default: float) -> float:
    """Return a positive number from an environment variable, else the default."""
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class AwsSettings:
    """Where and as whom to call AWS; None means the boto3 default chain.

    max_attempts counts the first call, as AWS_MAX_ATTEMPTS does in the AWS
    CLI; throttling and connection errors are retried in standard retry mode.
    The timeouts are in seconds; KMSGUARD_CONNECT_TIMEOUT sets the first.
    """

    profile: str | None = None
    endpoint_url: str | None = None
    max_attempts: int = field(
        default_factory=lambda: int(_number_from_environment("AWS_MAX_ATTEMPTS", 5))
    )
    connect_timeout: float = field(
        default_factory=lambda: _number_from_environment(
            "KMSGUARD_CONNECT_TIMEOUT", 10.0
        )
    )
    read_timeout: float = 30.0


def describe_error(
    exc: Exception, action: str, target: str, caller_arn: str | None = None
) -> OperationFailed:
    """Turn a botocore exception into an OperationFailed naming action and target.

    `caller_arn` names the principal in an AccessDenied explanation when
    AWS's message does not.
    """
    from kmsguard.workflow.aws_faults import access_denied_text, client_side_hint

    code, message = error_code(exc), str(exc)
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        message = response.get("Error", {}).get("Message", message) or message
    hint = ERROR_HINTS.get(code, "") if code else client_side_hint(exc)
    kind = code or type(exc).__name__
    text = f"AWS {action} on {target} failed: {kind}: {short_message(message)}"
    if code in ("AccessDeniedException", "AccessDenied"):
        text += ". " + access_denied_text(message, action, target, caller_arn)
    elif hint:
        text += f". Fix: {hint}"
    failed = OperationFailed(text)
    failed.aws_code = code  # type: ignore[attr-defined]
    return failed


def short_message(message: str, limit: int = 300) -> str:
    """Return an AWS error message on one line, without markup, at most `limit` long.

    A simulator or a proxy can return a whole HTML page, which would fill
    the terminal and the audit log.
    """
    import re

    if message.lstrip().startswith("<"):
        message = re.sub(r"<[^>]*>", " ", message)
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


class AwsSession:
    """Lazily built boto3 clients for one profile and endpoint, cached per region."""

    def __init__(self, settings: AwsSettings) -> None:
        self.settings = settings
        self._sessions: dict[str | None, Any] = {}
        self._clients: dict[tuple[str, str, str | None], Any] = {}
        self._caller: dict[str | None, dict[str, str]] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str, profile: str | None = None) -> Any:
        """Return a cached boto3 client with standard retry mode."""
        use_profile = profile or self.settings.profile
        cache_key = (service, region, use_profile)
        with self._lock:
            if cache_key not in self._clients:
                self._clients[cache_key] = self._make_client(
                    service, region, use_profile
                )
            return self._clients[cache_key]

    def _make_client(self, service: str, region: str, profile: str | None) -> Any:
        import boto3
        from botocore.config import Config

        if profile not in self._sessions:
            try:
                self._sessions[profile] = boto3.session.Session(profile_name=profile)
            except Exception as exc:  # botocore.exceptions.ProfileNotFound
                raise InvalidInput(
                    f"AWS profile {profile!r} not found: check --profile, "
                    "AWS_PROFILE and ~/.aws/config"
                ) from exc
        config = Config(
            retries={"mode": "standard", "max_attempts": self.settings.max_attempts},
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
            user_agent_extra="kmsguard",
        )
        kwargs: dict[str, Any] = {"region_name": region, "config": config}
        # A service-specific AWS_ENDPOINT_URL_<SERVICE> wins over --endpoint-url,
        # as in the AWS CLI, so one service can be pointed elsewhere.
        service_variable = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")
        if os.environ.get(service_variable):
            kwargs["endpoint_url"] = os.environ[service_variable]
        elif self.settings.endpoint_url:
            kwargs["endpoint_url"] = self.settings.endpoint_url
        return self._sessions[profile].client(service, **kwargs)

    @contextmanager
    def calling(self, action: str, target: str) -> Iterator[None]:
        """Translate any botocore error raised inside into OperationFailed."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            caller = self._caller.get(self.settings.profile, {}).get("Arn")
            raise describe_error(exc, action, target, caller) from exc

    def caller_identity(
        self, region: str, profile: str | None = None
    ) -> dict[str, str]:
        """Return STS GetCallerIdentity (Account, Arn), cached per profile."""
        use_profile = profile or self.settings.profile
        if use_profile not in self._caller:
            sts = self.client("sts", region, profile)
            with self.calling("sts:GetCallerIdentity", "the current credentials"):
                answer = sts.get_caller_identity()
            self._caller[use_profile] = {
                "Account": answer["Account"],
                "Arn": answer["Arn"],
            }
        return self._caller[use_profile]


@dataclass(frozen=True)
class KeyFacts:
    """The facts DescribeKey and GetKeyRotationStatus return for one key."""

    arn: str
    metadata: dict[str, Any]
    rotation_enabled: bool | None

    @property
    def key_id(self) -> str:
        return key_id_from_arn(self.arn)

    @property
    def region(self) -> str:
        return self.arn.split(":")[3]

    @property
    def account(self) -> str:
        return account_from_arn(self.arn)

    @property
    def state(self) -> str:
        return str(self.metadata.get("KeyState", ""))

    def to_evidence(self) -> dict[str, Any]:
        """Return the key metadata as JSON-safe evidence for the audit log."""
        fields = (
            "KeyId",
            "Arn",
            "KeyState",
            "KeySpec",
            "KeyUsage",
            "Origin",
            "KeyManager",
            "MultiRegion",
            "AWSAccountId",
            "DeletionDate",
        )
        data: dict[str, Any] = {}
        for name in fields:
            value = self.metadata.get(name)
            if isinstance(value, datetime):
                value = value.isoformat()
            if value is not None:
                data[name] = value
        data["KeyRotationEnabled"] = self.rotation_enabled
        return data


class Kms:
    """KMS calls in one region, with key identifiers resolved to key ARNs."""

    def __init__(self, aws: AwsSession, region: str) -> None:
        self.aws = aws
        self.region = region

    @property
    def client(self) -> Any:
        return self.aws.client("kms", self.region)

    def resolve(self, text: str) -> KeyFacts:
        """Resolve a key ID, alias name, alias ARN or key ARN to the key's facts.

        A key ARN from another region is not looked up in this region: its
        facts carry only the ARN, so the region guard reports it.

        Raises:
            InvalidInput: malformed identifier, or no such key in the region.
        """
        reference = parse_key_reference(text)
        if reference.region and reference.region != self.region:
            if reference.form == "key_arn":
                return KeyFacts(reference.text, {"Arn": reference.text}, None)
            raise InvalidInput(
                f"alias {text!r} is in region {reference.region}, but the "
                f"environment's region is {self.region}; give a key in {self.region}"
            )
        return self.describe(reference.text)

    def describe(self, key: str) -> KeyFacts:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            metadata = self.client.describe_key(KeyId=key)["KeyMetadata"]
        except ClientError as exc:
            if error_code(exc) in ("NotFoundException", "InvalidArnException"):
                raise InvalidInput(
                    f"key {key!r} not found in region {self.region}: check the "
                    "identifier, the region of the environment and --profile"
                ) from exc
            raise describe_error(exc, "kms:DescribeKey", key) from exc
        except BotoCoreError as exc:
            raise describe_error(exc, "kms:DescribeKey", key) from exc
        return KeyFacts(metadata["Arn"], metadata, self.rotation_status(metadata))

    def rotation_status(self, metadata: dict[str, Any]) -> bool | None:
        """Return whether automatic rotation is on, or None when AWS cannot tell."""
        from botocore.exceptions import BotoCoreError, ClientError

        if metadata.get("KeySpec") != "SYMMETRIC_DEFAULT":
            return None
        if (
            metadata.get("KeyManager") != "CUSTOMER"
            or metadata.get("Origin") != "AWS_KMS"
        ):
            return None
        try:
            answer = self.client.get_key_rotation_status(KeyId=metadata["Arn"])
        except ClientError:
            return None
        except BotoCoreError as exc:
            raise describe_error(
                exc, "kms:GetKeyRotationStatus", str(metadata["Arn"])
            ) from exc
        return bool(answer.get("KeyRotationEnabled"))

    def alias_target(self, alias: str) -> str | None:
        """Return the key ID an alias points to, or None when it does not exist."""
        paginator = self.client.get_paginator("list_aliases")
        with self.aws.calling("kms:ListAliases", alias):
            for page in paginator.paginate():
                for entry in page.get("Aliases", []):
                    if entry.get("AliasName") == alias:
                        target = entry.get("TargetKeyId")
                        return str(target) if target else None
        return None

    def find_key_by_tag(self, tag_key: str, tag_value: str) -> str | None:
        """Return the ARN of the key carrying a tag, or None (ListKeys, ListResourceTags)."""
        paginator = self.client.get_paginator("list_keys")
        with self.aws.calling("kms:ListKeys", f"tag {tag_key}={tag_value}"):
            for page in paginator.paginate():
                for entry in page.get("Keys", []):
                    tags = self.client.list_resource_tags(KeyId=entry["KeyId"])
                    for tag in tags.get("Tags", []):
                        if tag["TagKey"] == tag_key and tag["TagValue"] == tag_value:
                            return str(entry["KeyArn"])
        return None

    def create_key(self, description: str, tags: dict[str, str]) -> str:
        """Create a symmetric single-Region key with AWS key material; return its ARN."""
        with self.aws.calling("kms:CreateKey", f"a new key in {self.region}"):
            answer = self.client.create_key(
                Description=description,
                KeyUsage="ENCRYPT_DECRYPT",
                KeySpec="SYMMETRIC_DEFAULT",
                Origin="AWS_KMS",
                MultiRegion=False,
                Tags=[{"TagKey": k, "TagValue": v} for k, v in tags.items()],
            )
        arn = str(answer["KeyMetadata"]["Arn"])
        log.info("created key %s", arn)
        return arn

    def create_alias(self, alias: str, key_arn: str) -> None:
        with self.aws.calling("kms:CreateAlias", alias):
            self.client.create_alias(
                AliasName=alias, TargetKeyId=key_id_from_arn(key_arn)
            )
        log.info("created alias %s for key %s", alias, key_arn)

    def enable_key_rotation(self, key_arn: str) -> None:
        with self.aws.calling("kms:EnableKeyRotation", key_arn):
            self.client.enable_key_rotation(KeyId=key_arn)
        log.info("enabled automatic rotation on key %s", key_arn)

    def get_key_policy(self, key_arn: str) -> str:
        with self.aws.calling("kms:GetKeyPolicy", key_arn):
            answer = self.client.get_key_policy(KeyId=key_arn, PolicyName="default")
        return str(answer["Policy"])

    def put_key_policy(self, key_arn: str, policy_text: str) -> None:
        # BypassPolicyLockoutSafetyCheck is deliberately never passed.
        with self.aws.calling("kms:PutKeyPolicy", key_arn):
            self.client.put_key_policy(
                KeyId=key_arn, PolicyName="default", Policy=policy_text
            )
        log.info("put key policy on key %s", key_arn)

    # moto 5.2 fails the four state calls below when KeyId is a key ARN; AWS
    # accepts the key ID for keys in the caller's own account, so pass that.
    def disable_key(self, key_arn: str) -> None:
        with self.aws.calling("kms:DisableKey", key_arn):
            self.client.disable_key(KeyId=key_id_from_arn(key_arn))
        log.info("disabled key %s", key_arn)

    def enable_key(self, key_arn: str) -> None:
        with self.aws.calling("kms:EnableKey", key_arn):
            self.client.enable_key(KeyId=key_id_from_arn(key_arn))
        log.info("enabled key %s", key_arn)

    def schedule_key_deletion(self, key_arn: str, window_days: int) -> str:
        with self.aws.calling("kms:ScheduleKeyDeletion", key_arn):
            answer = self.client.schedule_key_deletion(
                KeyId=key_id_from_arn(key_arn), PendingWindowInDays=window_days
            )
        log.info("scheduled deletion of key %s in %d days", key_arn, window_days)
        deletion = answer.get("DeletionDate")
        return deletion.isoformat() if isinstance(deletion, datetime) else str(deletion)

    def cancel_key_deletion(self, key_arn: str) -> None:
        with self.aws.calling("kms:CancelKeyDeletion", key_arn):
            self.client.cancel_key_deletion(KeyId=key_id_from_arn(key_arn))
        log.info("cancelled deletion of key %s", key_arn)


def is_key_arn(text: str) -> bool:
    return bool(KEY_ARN_RE.match(text))
