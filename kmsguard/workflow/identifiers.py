"""Parsing and validation of the identifiers operators type: ARNs, IDs, names."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kmsguard.workflow.errors import InvalidInput

ACCOUNT_RE = re.compile(r"^\d{12}$")
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
KEY_ID_RE = re.compile(
    r"^(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
KEY_ARN_RE = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z0-9-]+):"
    r"(?P<account>\d{12}):key/(?P<key_id>[A-Za-z0-9-]+)$"
)
ALIAS_ARN_RE = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z0-9-]+):"
    r"(?P<account>\d{12}):(?P<alias>alias/[A-Za-z0-9/_-]+)$"
)
ALIAS_NAME_RE = re.compile(r"^alias/[A-Za-z0-9/_-]{1,250}$")
ROLE_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:iam::(?P<account>\d{12}):role/(?P<name>[\w+=,.@/*-]+)$"
)
ENV_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class KeyReference:
    """A key identifier as typed, classified by its form."""

    text: str
    form: str  # "key_arn", "alias_arn", "alias_name" or "key_id"
    region: str | None = None
    account: str | None = None


def parse_key_reference(text: str) -> KeyReference:
    """Classify a key identifier, rejecting anything that is none of the four forms.

    Raises:
        InvalidInput: the text is not a key ID, alias name, alias ARN or key ARN.
    """
    value = text.strip()
    if match := KEY_ARN_RE.match(value):
        return KeyReference(value, "key_arn", match["region"], match["account"])
    if match := ALIAS_ARN_RE.match(value):
        return KeyReference(value, "alias_arn", match["region"], match["account"])
    if ALIAS_NAME_RE.match(value):
        if value.startswith("alias/aws/"):
            raise InvalidInput(
                f"key {value!r} is an AWS managed key alias; kmsguard works only "
                "with customer managed keys. Give the alias or ARN of a key you own."
            )
        return KeyReference(value, "alias_name")
    if KEY_ID_RE.match(value):
        return KeyReference(value, "key_id")
    raise InvalidInput(
        f"invalid key identifier {text!r}: give a key ID "
        "(1234abcd-12ab-34cd-56ef-1234567890ab), an alias name (alias/my-key), "
        "an alias ARN or a key ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY_ID)"
    )


def key_id_from_arn(key_arn: str) -> str:
    """Return the key ID part of a key ARN."""
    match = KEY_ARN_RE.match(key_arn)
    if not match:
        raise InvalidInput(f"invalid key ARN {key_arn!r}")
    return match["key_id"]


def region_from_arn(arn: str) -> str:
    """Return the region field of an ARN (its fourth field)."""
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 else ""


def account_from_arn(arn: str) -> str:
    """Return the account field of an ARN (its fifth field)."""
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else ""


def validate_account(value: str, option: str = "--pipeline-account") -> str:
    value = value.strip()
    if not ACCOUNT_RE.match(value):
        raise InvalidInput(
            f"invalid AWS account ID {value!r} for {option}: "
            "an account ID is exactly 12 digits, for example 123456789012"
        )
    return value


def validate_region(value: str) -> str:
    value = value.strip()
    if not REGION_RE.match(value):
        raise InvalidInput(
            f"invalid AWS region {value!r}: give a region code such as eu-west-1"
        )
    return value


def validate_environment_name(value: str) -> str:
    # fullmatch, because `$` also matches before a trailing newline.
    if not ENV_NAME_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid environment name {value!r}: use lower-case letters, digits, "
            "'-' and '_', starting with a letter or digit (for example prod, qa1)"
        )
    return value


def validate_role_arn(value: str, option: str) -> str:
    value = value.strip()
    if not ROLE_ARN_RE.match(value):
        raise InvalidInput(
            f"invalid IAM role ARN {value!r} for {option}: "
            "give arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME"
        )
    return value


# The embeddings, overrides and isolates that reorder the text around them on
# a terminal, so that what an operator reads differs from what is stored. The
# plain direction marks (U+200E, U+200F, U+061C) are ordinary in Hebrew and
# Arabic text and stay allowed.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def control_characters(value: str, allowed: str = "") -> str:
    """Return the control characters in `value`, other than `allowed`, escaped.

    A stored control character, such as an ANSI escape sequence in a ticket
    ID, would reach an operator's terminal in every listing of the run.
    """
    found = {
        ch
        for ch in value
        if (ord(ch) < 32 or 127 <= ord(ch) < 160 or ch in BIDI_CONTROLS)
        and ch not in allowed
    }
    return ", ".join(sorted(repr(ch) for ch in found))


def check_text_params(params: Mapping[str, Any], allowed: str = "\r\n\t") -> None:
    """Raise InvalidInput for a text parameter that contains a control character.

    Leading and trailing white space is not checked, because the handlers
    strip it. By default line breaks (Windows ones too) and tabs are allowed,
    because a reason or a message from support may span lines.
    """
    for name, value in params.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            text = item.strip() if isinstance(item, str) else ""
            found = control_characters(text, allowed)
            if found:
                option = "--" + name.replace("_", "-")
                raise InvalidInput(
                    f"invalid {option} {item!r}: it contains control characters "
                    f"({found}); remove them"
                )


def validate_ticket(value: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidInput(
            "missing ticket ID: --ticket is empty; give the support ticket ID, "
            "for example --ticket SUP-1234"
        )
    if len(value) > 200 or control_characters(value):
        raise InvalidInput(
            f"invalid ticket ID {value!r}: use one line of at most 200 characters, "
            "without control characters"
        )
    return value


def validate_alias(value: str) -> str:
    name = value if value.startswith("alias/") else f"alias/{value}"
    if not ALIAS_NAME_RE.fullmatch(name) or name.startswith("alias/aws/"):
        raise InvalidInput(
            f"invalid alias {value!r}: use letters, digits, '/', '_' and '-', "
            "not starting with alias/aws/ (for example alias/pipeline-key-2026)"
        )
    return name
