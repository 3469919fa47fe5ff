"""KMS action names: the ones the pipeline needs, and how policy patterns match them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kmsguard.workflow.policy_glob import glob_covers, glob_match

PIPELINE_USE_ACTIONS: tuple[str, ...] = (
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:DescribeKey",
)
PIPELINE_GRANT_ACTIONS: tuple[str, ...] = (
    "kms:CreateGrant",
    "kms:ListGrants",
    "kms:RevokeGrant",
)

# The administrator actions of the key policy that the KMS console proposes,
# which the vendor's procedure also lists for key administrators.
KEY_ADMIN_ACTIONS: tuple[str, ...] = (
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:RotateKeyOnDemand",
)

# The KMS API operations that a policy action can name. Required patterns such as
# kms:GenerateDataKey* are expanded against this list, so that a policy granting
# only kms:GenerateDataKey is seen to miss kms:GenerateDataKeyWithoutPlaintext.
# NOTE: written from the AWS KMS API reference as of 2025. An operation added
# later is unknown here until it is added to this tuple.
KMS_OPERATIONS: tuple[str, ...] = (
    "kms:CancelKeyDeletion",
    "kms:ConnectCustomKeyStore",
    "kms:CreateAlias",
    "kms:CreateCustomKeyStore",
    "kms:CreateGrant",
    "kms:CreateKey",
    "kms:Decrypt",
    "kms:DeleteAlias",
    "kms:DeleteCustomKeyStore",
    "kms:DeleteImportedKeyMaterial",
    "kms:DeriveSharedSecret",
    "kms:DescribeCustomKeyStores",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:DisconnectCustomKeyStore",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyPairWithoutPlaintext",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GenerateMac",
    "kms:GenerateRandom",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:GetParametersForImport",
    "kms:GetPublicKey",
    "kms:ImportKeyMaterial",
    "kms:ListAliases",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListKeyRotations",
    "kms:ListKeys",
    "kms:ListResourceTags",
    "kms:ListRetirableGrants",
    "kms:PutKeyPolicy",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:ReplicateKey",
    "kms:RetireGrant",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:Sign",
    "kms:SynchronizeMultiRegionKey",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateCustomKeyStore",
    "kms:UpdateKeyDescription",
    "kms:UpdatePrimaryRegion",
    "kms:Verify",
    "kms:VerifyMac",
)


def action_matches(pattern: str, action: str) -> bool:
    """Return whether a policy action pattern matches one action name.

    AWS compares action names without regard to case, so kms:decrypt in a policy
    matches a kms:Decrypt request.
    """
    return glob_match(pattern, action, ignore_case=True)


def action_pattern_covers(pattern: str, required: str) -> bool:
    """Return whether `pattern` matches every action that `required` names."""
    return glob_covers(pattern, required, ignore_case=True)


def expand_actions(patterns: Iterable[str]) -> tuple[str, ...]:
    """Expand action patterns into the known KMS operations they match, in order.

    A pattern without wildcards is kept even when it is not a known operation.
    """
    expanded: list[str] = []
    for pattern in patterns:
        names = [op for op in KMS_OPERATIONS if action_matches(pattern, op)]
        if not names and "*" not in pattern and "?" not in pattern:
            names = [pattern]
        expanded.extend(name for name in names if name not in expanded)
    return tuple(expanded)


def actions_in_element(
    element_values: Sequence[str], action: str, *, negated: bool
) -> bool:
    """Return whether a statement's Action (or NotAction, when negated) applies."""
    listed = any(action_matches(pattern, action) for pattern in element_values)
    return not listed if negated else listed
