"""Parsing and grammar validation of KMS key policy documents.

Every error is a PolicyDocumentError (an InvalidInput, exit status 2) whose message
names the JSON path of the bad element, such as Statement[2].Principal.AWS[1],
and tells how to fix it. Invalid JSON is reported with its line and column.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, cast

from kmsguard.workflow.errors import InvalidInput

POLICY_VERSIONS = ("2012-10-17", "2008-10-17")
TOP_LEVEL_ELEMENTS = ("Version", "Id", "Statement")
STATEMENT_ELEMENTS = (
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
)
PRINCIPAL_TYPES = ("AWS", "Service", "Federated", "CanonicalUser")
EFFECTS = ("Allow", "Deny")

# AWS KMS rejects a key policy longer than 32,768 bytes.
MAX_POLICY_BYTES = 32_768

CONDITION_OPERATORS = (
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
    "Null",
)
SET_QUALIFIERS = ("ForAnyValue", "ForAllValues")
IF_EXISTS = "IfExists"

ACTION_RE = re.compile(r"^[A-Za-z0-9-]+:[A-Za-z0-9*?]+$")

# Besides printable ASCII and Latin-1 characters, a key policy may contain only
# tab, line feed and carriage return.
_ALLOWED_CONTROL = "\t\n\r"


class PolicyDocumentError(InvalidInput):
    """A key policy document that is not valid JSON or breaks the policy grammar."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column


@dataclass(frozen=True)
class ConditionOperator:
    """A condition operator name split into its set qualifier, base and IfExists."""

    qualifier: str  # "", "ForAnyValue" or "ForAllValues"
    base: str
    if_exists: bool


def split_operator(name: str) -> ConditionOperator | None:
    """Split a condition operator name, or return None when it is not a known one."""
    qualifier, _, base = name.rpartition(":")
    if qualifier and qualifier not in SET_QUALIFIERS:
        return None
    if_exists = base.endswith(IF_EXISTS) and base != IF_EXISTS
    if if_exists:
        base = base.removesuffix(IF_EXISTS)
    if base not in CONDITION_OPERATORS or (if_exists and base == "Null"):
        return None
    return ConditionOperator(qualifier, base, if_exists)


def element_values(element: Any) -> list[Any]:
    """Return a policy element that may be one value or a list as a list."""
    return list(element) if isinstance(element, list) else [element]


def statement_list(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the statements of a validated document; Statement may be one object."""
    return cast(list[dict[str, Any]], element_values(doc["Statement"]))


def statement_label(doc: dict[str, Any], index: int) -> str:
    """Return the Sid of a statement, or "statement N" counted from 1 without one.

    Args:
        index: the statement's position in the policy, counted from 0.
    """
    sid = statement_list(doc)[index].get("Sid")
    return sid if isinstance(sid, str) and sid else f"statement {index + 1}"


def _fail(path: str, problem: str, fix: str) -> NoReturn:
    raise PolicyDocumentError(f"invalid key policy: {path} {problem}. {fix}", path=path)


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_policy_text(text: str) -> dict[str, Any]:
    """Parse key policy JSON and validate it against the key policy grammar.

    Raises:
        PolicyDocumentError: the text is too long, has a character AWS rejects, is
            not valid JSON, repeats a key in one object, or breaks the grammar.
    """
    size = len(text.encode("utf-8"))
    if size > MAX_POLICY_BYTES:
        raise PolicyDocumentError(
            f"invalid key policy: the document is {size} bytes, over the "
            f"{MAX_POLICY_BYTES}-byte limit of AWS KMS. Remove or merge statements."
        )
    _check_characters(text)

    try:
        doc = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise PolicyDocumentError(
            f"invalid key policy JSON at line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}. Correct the JSON syntax there (a missing comma, quote "
            "or bracket is the usual cause).",
            line=exc.lineno,
            column=exc.colno,
        ) from exc
    except _DuplicateKeyError as exc:
        raise PolicyDocumentError(
            f'invalid key policy JSON: the key "{exc.key}" appears twice in one '
            "object, and JSON readers keep only the last one. Merge the two "
            "values or remove one of them."
        ) from exc

    return validate_policy(doc)


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _check_characters(text: str) -> None:
    for offset, char in enumerate(text):
        code = ord(char)
        printable = 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF
        if printable or char in _ALLOWED_CONTROL:
            continue
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        raise PolicyDocumentError(
            f"invalid key policy: character U+{code:04X} at line {line}, column "
            f"{column} is not allowed. A key policy may contain only printable "
            "ASCII and Latin-1 characters, tab, line feed and carriage return, "
            "so replace or remove it.",
            line=line,
            column=column,
        )


def validate_policy(doc: Any) -> dict[str, Any]:
    """Validate an already parsed key policy and return it unchanged.

    Raises:
        PolicyDocumentError: the document breaks the key policy grammar. The
            message names the JSON path of the first bad element.
    """
    if not isinstance(doc, dict):
        _fail("(document)", f"is {_describe(doc)}", "A key policy is a JSON object.")
    _check_keys(doc, "", TOP_LEVEL_ELEMENTS)

    version = doc.get("Version")
    if version not in POLICY_VERSIONS:
        _fail(
            "Version",
            "is missing" if version is None else f"is {_describe(version)}",
            'Set "Version": "2012-10-17".',
        )
    if "Id" in doc and not isinstance(doc["Id"], str):
        _fail("Id", f"is {_describe(doc['Id'])}", "Give Id as a string or remove it.")

    _validate_statements(doc.get("Statement"))
    return cast(dict[str, Any], doc)


def _check_keys(obj: dict[str, Any], path: str, allowed: tuple[str, ...]) -> None:
    for key in obj:
        if key in allowed:
            continue
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f'Did you mean "{close[0]}"? ' if close else ""
        _fail(
            _child(path, key),
            "is not a key policy element",
            f"{hint}The allowed elements here are {', '.join(allowed)}.",
        )


def _validate_statements(statements: Any) -> None:
    if isinstance(statements, dict):
        _validate_statement(statements, "Statement")
        return
    if not isinstance(statements, list) or not statements:
        _fail(
            "Statement",
            "is missing" if statements is None else f"is {_describe(statements)}",
            "Give Statement as a non-empty list of statement objects.",
        )
    for index, statement in enumerate(statements):
        _validate_statement(statement, f"Statement[{index}]")


def _validate_statement(statement: Any, path: str) -> None:
    if not isinstance(statement, dict):
        _fail(path, f"is {_describe(statement)}", "Each statement is a JSON object.")
    _check_keys(statement, path, STATEMENT_ELEMENTS)

    if "Sid" in statement and not isinstance(statement["Sid"], str):
        _fail(
            _child(path, "Sid"), f"is {_describe(statement['Sid'])}", "Give a string."
        )
    effect = statement.get("Effect")
    if effect not in EFFECTS:
        _fail(
            _child(path, "Effect"),
            "is missing" if effect is None else f"is {_describe(effect)}",
            'Write "Allow" or "Deny" (the names are case-sensitive).',
        )

    name = _exactly_one(statement, path, "Principal", "NotPrincipal")
    _validate_principal(statement[name], _child(path, name))
    name = _exactly_one(statement, path, "Action", "NotAction")
    _validate_strings(statement[name], _child(path, name), _check_action)
    name = _exactly_one(statement, path, "Resource", "NotResource")
    _validate_strings(statement[name], _child(path, name), _check_plain_string)
    if "Condition" in statement:
        _validate_condition(statement["Condition"], _child(path, "Condition"))


def _exactly_one(statement: dict[str, Any], path: str, name: str, negated: str) -> str:
    if name in statement and negated in statement:
        _fail(path, f"has both {name} and {negated}", "Keep only one of them.")
    if name not in statement and negated not in statement:
        _fail(path, f"has no {name}", f"Add {name} (or {negated}) to the statement.")
    return name if name in statement else negated


def _validate_principal(principal: Any, path: str) -> None:
    if principal == "*":
        return
    if isinstance(principal, str):
        _fail(
            path,
            f"is {_describe(principal)}",
            f'Write "*" or an object such as {{"AWS": {_describe(principal)}}}.',
        )
    if not isinstance(principal, dict) or not principal:
        _fail(
            path,
            f"is {_describe(principal)}",
            'Write "*" or an object such as {"AWS": "arn:aws:iam::111122223333:root"}.',
        )
    _check_keys(principal, path, PRINCIPAL_TYPES)
    for kind, value in principal.items():
        _validate_strings(value, _child(path, kind), _check_plain_string)


def _validate_strings(value: Any, path: str, check: Callable[[str, str], None]) -> None:
    if isinstance(value, str):
        check(value, path)
        return
    if not isinstance(value, list) or not value:
        _fail(
            path,
            f"is {_describe(value)}",
            "Give a string or a non-empty list of strings.",
        )
    for index, item in enumerate(value):
        item_path = _child(path, index)
        if not isinstance(item, str):
            _fail(item_path, f"is {_describe(item)}", "Give a string.")
        check(item, item_path)


def _check_plain_string(value: str, path: str) -> None:
    if not value:
        _fail(path, "is an empty string", "Give a value or remove the entry.")
    if value != value.strip():
        _fail(path, f"is {_describe(value)}", "Remove the spaces around the value.")


def _check_action(value: str, path: str) -> None:
    _check_plain_string(value, path)
    if value == "*":
        return
    if not ACTION_RE.match(value):
        _fail(
            path,
            f"is {_describe(value)}, not an action name",
            "Write an action as kms:OperationName, for example kms:Decrypt; "
            "the wildcards * and ? are allowed in the name.",
        )
    prefix = value.split(":", 1)[0]
    if prefix.lower() != "kms":
        _fail(
            path,
            f"is {_describe(value)}, which is not a KMS action",
            "A key policy controls only KMS operations, so use the kms: prefix.",
        )


def _validate_condition(condition: Any, path: str) -> None:
    if not isinstance(condition, dict):
        _fail(
            path,
            f"is {_describe(condition)}",
            'Write {"Operator": {"condition-key": "value"}}, for example '
            '{"Bool": {"kms:GrantIsForAWSResource": "true"}}.',
        )
    for name, block in condition.items():
        _validate_condition_block(name, block, _child(path, name))


def _validate_condition_block(name: str, block: Any, path: str) -> None:
    if split_operator(name) is None:
        known = [
            *CONDITION_OPERATORS,
            *(f"{op}{IF_EXISTS}" for op in CONDITION_OPERATORS),
        ]
        close = difflib.get_close_matches(name.rpartition(":")[2], known, n=1)
        hint = f'Did you mean "{close[0]}"? ' if close else ""
        _fail(
            path,
            "is not a known condition operator",
            f"{hint}Use an IAM operator such as StringEquals, ArnLike or Bool, "
            "optionally prefixed by ForAnyValue: or ForAllValues: and suffixed by "
            "IfExists (not on Null). Operator names are case-sensitive.",
        )
    if not isinstance(block, dict) or not block:
        _fail(
            path,
            f"is {_describe(block)}",
            'Map condition keys to values, for example {"aws:PrincipalAccount": '
            '"111122223333"}.',
        )
    for key, value in block.items():
        key_path = _child(path, key)
        if not key.strip():
            _fail(key_path, "is an empty condition key", "Name a condition key.")
        _validate_condition_value(value, key_path)


def _validate_condition_value(value: Any, path: str) -> None:
    items = value if isinstance(value, list) else [value]
    if not items:
        _fail(path, "is an empty list", "Give at least one value.")
    for index, item in enumerate(items):
        item_path = _child(path, index) if isinstance(value, list) else path
        if not isinstance(item, str | bool | int | float):
            _fail(
                item_path,
                f"is {_describe(item)}",
                "A condition value is a string, a boolean, a number, or a list of "
                "them.",
            )
