"""The least-privilege IAM policy that an operator of kmsguard needs.

The policy is built from the AWS operations kmsguard calls. Each step handler
and each read-only command names the groups of operations it calls, and each
operation names the IAM actions AWS authorizes it with, which are not always
spelled like the operation (S3 HeadObject is authorized as s3:GetObject).
A test parses the package for boto3 calls and fails when one is missing here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.identifiers import validate_account, validate_region
from kmsguard.workflow.procedure import Procedure

# Scopes of an action in the policy: KMS keys, keys and aliases, or every
# resource because the action has no resource-level permissions.
KEY = "key"
KEY_AND_ALIAS = "key_and_alias"
ANY = "any"


@dataclass(frozen=True)
class Operation:
    """One AWS API operation kmsguard calls, and the IAM actions it needs."""

    service: str  # boto3 service name, which is also the IAM prefix here
    name: str  # API operation name, for example DescribeKey
    actions: tuple[str, ...]
    scope: str = ANY

    @property
    def key(self) -> str:
        return f"{self.service}:{self.name}"


def _kms(name: str, scope: str = KEY, *extra: str) -> Operation:
    return Operation("kms", name, (f"kms:{name}", *extra), scope)


def _plain(service: str, name: str) -> Operation:
    return Operation(service, name, (f"{service}:{name}",))


OPERATIONS: dict[str, Operation] = {
    op.key: op
    for op in (
        _plain("sts", "GetCallerIdentity"),
        _kms("DescribeKey"),
        _kms("GetKeyRotationStatus"),
        _kms("GetKeyPolicy"),
        _kms("PutKeyPolicy"),
        # CreateKey with Tags is authorized for kms:TagResource too.
        _kms("CreateKey", ANY, "kms:TagResource"),
        # CreateAlias is authorized on the alias and on the key it points to.
        _kms("CreateAlias", KEY_AND_ALIAS),
        _kms("ListAliases", ANY),
        _kms("ListKeys", ANY),
        _kms("ListResourceTags"),
        _kms("EnableKeyRotation"),
        _kms("ListGrants"),
        _kms("DisableKey"),
        _kms("EnableKey"),
        _kms("ScheduleKeyDeletion"),
        _kms("CancelKeyDeletion"),
        Operation("s3", "GetBucketEncryption", ("s3:GetEncryptionConfiguration",)),
        Operation("s3", "ListObjectsV2", ("s3:ListBucket",)),
        Operation("s3", "HeadObject", ("s3:GetObject",)),
        _plain("kinesis", "DescribeStreamSummary"),
        _plain("sqs", "GetQueueAttributes"),
        _plain("cloudtrail", "LookupEvents"),
        _plain("cloudtrail", "DescribeTrails"),
        _plain("cloudtrail", "GetEventSelectors"),
    )
}

# Groups of operations, named for the work that calls them.
CALL_GROUPS: dict[str, tuple[str, ...]] = {
    "identity": ("sts:GetCallerIdentity",),
    "read_key": ("kms:DescribeKey", "kms:GetKeyRotationStatus"),
    "read_policy": ("kms:GetKeyPolicy",),
    "write_policy": ("kms:GetKeyPolicy", "kms:PutKeyPolicy"),
    "create_key": (
        "kms:CreateKey",
        "kms:CreateAlias",
        "kms:ListAliases",
        "kms:EnableKeyRotation",
        "kms:DescribeKey",
        "kms:GetKeyRotationStatus",
        # A retried CreateKey finds the key it created by its tag.
        "kms:ListKeys",
        "kms:ListResourceTags",
    ),
    "disable_key": ("kms:DisableKey",),
    "enable_key": ("kms:EnableKey",),
    "schedule_deletion": ("kms:ScheduleKeyDeletion",),
    "cancel_deletion": ("kms:CancelKeyDeletion", "kms:EnableKey"),
    "usage_evidence": (
        "kms:DescribeKey",
        "kms:ListGrants",
        "s3:GetBucketEncryption",
        "s3:ListObjectsV2",
        "s3:HeadObject",
        "kinesis:DescribeStreamSummary",
        "sqs:GetQueueAttributes",
        "cloudtrail:LookupEvents",
        "cloudtrail:DescribeTrails",
        "cloudtrail:GetEventSelectors",
    ),
}

# The groups each step handler calls. Steps that disable a key or schedule its
# deletion read the usage evidence first, and starting a run may add the
# protection statement to the key policy.
HANDLER_GROUPS: dict[str, tuple[str, ...]] = {
    "record_key": ("identity", "read_key", "write_policy"),
    "open_run": (),
    "new_key": ("identity", "create_key"),
    "apply_policy": ("identity", "write_policy"),
    "record_ticket": (),
    "share_key": (),
    "record_confirmation": (),
    "verify_onboarding": ("identity", "usage_evidence"),
    "disable_key": ("identity", "read_key", "usage_evidence", "disable_key"),
    "schedule_deletion": (
        "identity",
        "read_key",
        "usage_evidence",
        "schedule_deletion",
    ),
    "enable_key": ("identity", "read_key", "enable_key"),
    "cancel_key_deletion": ("identity", "read_key", "cancel_deletion"),
    "recover_enable_key": ("identity", "read_key", "enable_key"),
    "recover_cancel_deletion": ("identity", "read_key", "cancel_deletion"),
    "recover_cancel_deletion_and_enable": (
        "identity",
        "read_key",
        "cancel_deletion",
    ),
    "complete": (),
    "cancel": (),
}

# The groups the read-only commands call: check, doctor and evidence.
COMMAND_GROUPS: tuple[str, ...] = (
    "identity",
    "read_key",
    "read_policy",
    "usage_evidence",
)


def handler_operations(handler: str) -> set[str]:
    """Return the operations a step handler calls.

    Raises:
        KeyError: the handler is not listed in HANDLER_GROUPS.
    """
    return {op for group in HANDLER_GROUPS[handler] for op in CALL_GROUPS[group]}


def procedure_operations(procedure: Procedure) -> set[str]:
    """Return the operations the steps of one procedure call."""
    operations: set[str] = set()
    for step in (procedure.start, *procedure.steps):
        operations |= handler_operations(step.handler)
    return operations


def all_operations(procedures: Iterable[Procedure]) -> set[str]:
    """Return the operations of every procedure and of the read-only commands."""
    operations = {op for group in COMMAND_GROUPS for op in CALL_GROUPS[group]}
    for procedure in procedures:
        operations |= procedure_operations(procedure)
    return operations


def iam_actions(operations: Iterable[str]) -> list[str]:
    """Return the sorted IAM actions that authorize the given operations."""
    return sorted({a for op in operations for a in OPERATIONS[op].actions})


SERVICE_SIDS = {
    "s3": "S3Read",
    "kinesis": "KinesisRead",
    "sqs": "SqsRead",
    "cloudtrail": "CloudTrailRead",
    "sts": "StsIdentity",
}


@dataclass(frozen=True)
class ResourceScope:
    """The region and account that KMS key ARNs in the policy are limited to."""

    region: str = "*"
    account: str = "*"

    def validated(self) -> ResourceScope:
        region = self.region if self.region == "*" else validate_region(self.region)
        account = self.account
        if account != "*":
            account = validate_account(account, "--key-account")
        return ResourceScope(region, account)

    def kms_arn(self, kind: str) -> str:
        return f"arn:aws:kms:{self.region}:{self.account}:{kind}/*"


def render_iam_policy(
    operations: Iterable[str], scope: ResourceScope = ResourceScope()
) -> dict[str, Any]:
    """Render an IAM policy document that allows exactly the given operations.

    KMS actions with resource-level permissions are limited to the keys (and
    aliases) of `scope`. The other actions get Resource "*": they have no
    resource-level permissions, or they read pipeline resources that may live
    in another account.
    """
    scope = scope.validated()
    selected = [OPERATIONS[name] for name in sorted(set(operations))]
    statements = [
        _statement("KmsKeys", selected, {KEY}, "kms", [scope.kms_arn("key")]),
        _statement(
            "KmsAliases",
            selected,
            {KEY_AND_ALIAS},
            "kms",
            [scope.kms_arn("alias"), scope.kms_arn("key")],
        ),
        _statement("KmsAccount", selected, {ANY}, "kms", ["*"]),
    ]
    for service, sid in SERVICE_SIDS.items():
        statements.append(_statement(sid, selected, {ANY}, service, ["*"]))
    return {
        "Version": "2012-10-17",
        "Statement": [s for s in statements if s["Action"]],
    }


def _statement(
    sid: str,
    operations: list[Operation],
    scopes: set[str],
    service: str,
    resources: list[str],
) -> dict[str, Any]:
    chosen = [op for op in operations if op.service == service and op.scope in scopes]
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": iam_actions(op.key for op in chosen),
        "Resource": resources[0] if len(resources) == 1 else resources,
    }


def operations_for(procedure_name: str | None) -> set[str]:
    """Return the operations of one procedure by name, or of everything for None.

    Raises:
        InvalidInput: no procedure has that name.
    """
    from kmsguard.states import PROCEDURES

    if procedure_name is None:
        return all_operations(PROCEDURES.values())
    procedure = PROCEDURES.get(procedure_name)
    if procedure is None:
        raise InvalidInput(
            f"unknown procedure {procedure_name!r}: use one of "
            f"{', '.join(sorted(PROCEDURES))}, or leave --procedure out for all"
        )
    return procedure_operations(procedure) | set(CALL_GROUPS["identity"])
