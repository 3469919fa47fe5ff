"""Evaluation of a statement's Condition block against a request context.

Results are three-valued: True, False, or None for "cannot tell". None arises only
during analysis, where a context value may stand for a set of principals (an ARN
pattern such as arn:aws:iam::111122223333:role/sp-*) and where keys that the
analysis does not model are unknown rather than absent. With such a set, True
means the condition holds for every member, False that it holds for none.

The rules follow the IAM documentation on condition operators. A key missing
from the request fails a positive operator and satisfies a negated one
(StringNotEquals, ArnNotLike, ...). IfExists turns a missing key into a match.
ForAllValues matches a missing key and ForAnyValue does not. Null tests whether
the key is present. Condition key names match without regard to case.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kmsguard.workflow.policy_glob import (
    arn_covers,
    arn_match,
    arns_overlap,
    glob_covers,
    glob_match,
    globs_overlap,
    has_wildcard,
)
from kmsguard.workflow.policy_grammar import ConditionOperator, split_operator

Tri = bool | None


@dataclass(frozen=True)
class ContextValue:
    """The values of one request context key; an empty tuple means the key is absent.

    With `pattern` set, each value is an IAM wildcard pattern that stands for
    every value it matches.
    """

    values: tuple[str, ...]
    pattern: bool = False


ABSENT = ContextValue(())


def tri_all(results: Iterable[Tri]) -> Tri:
    collected = list(results)
    if False in collected:
        return False
    return None if None in collected else True


def tri_any(results: Iterable[Tri]) -> Tri:
    collected = list(results)
    if True in collected:
        return True
    return None if None in collected else False


def tri_not(result: Tri) -> Tri:
    return None if result is None else not result


def condition_text(value: Any) -> str:
    """Return a condition or context value as the string that IAM compares."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _equals(ignore_case: bool) -> Callable[[str, str, bool], Tri]:
    def compare(expected: str, actual: str, is_pattern: bool) -> Tri:
        if ignore_case:
            expected, actual = expected.casefold(), actual.casefold()
        if is_pattern and has_wildcard(actual):
            return None if glob_match(actual, expected) else False
        return expected == actual

    return compare


def _like(expected: str, actual: str, is_pattern: bool) -> Tri:
    if is_pattern and has_wildcard(actual):
        if glob_covers(expected, actual):
            return True
        return None if globs_overlap(expected, actual) else False
    return glob_match(expected, actual)


def _arn(expected: str, actual: str, is_pattern: bool) -> Tri:
    if is_pattern and has_wildcard(actual):
        if arn_covers(expected, actual):
            return True
        return None if arns_overlap(expected, actual) else False
    return arn_match(expected, actual)


def _bool(expected: str, actual: str, is_pattern: bool) -> Tri:
    return expected.lower() == actual.lower()


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _date(value: str) -> datetime | None:
    number = _number(value)
    if number is not None:
        return datetime.fromtimestamp(number, UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _ordered(
    parse: Callable[[str], Any], test: Callable[[Any, Any], bool]
) -> Callable[[str, str, bool], Tri]:
    def compare(expected: str, actual: str, is_pattern: bool) -> Tri:
        if is_pattern:
            return None
        left, right = parse(actual), parse(expected)
        return left is not None and right is not None and test(left, right)

    return compare


def _ip(expected: str, actual: str, is_pattern: bool) -> Tri:
    if is_pattern:
        return None
    try:
        network = ipaddress.ip_network(expected, strict=False)
        return ipaddress.ip_address(actual) in network
    except ValueError:
        return False


def _comparisons() -> dict[str, Callable[[str, str, bool], Tri]]:
    table: dict[str, Callable[[str, str, bool], Tri]] = {
        "StringEquals": _equals(ignore_case=False),
        "StringEqualsIgnoreCase": _equals(ignore_case=True),
        "StringLike": _like,
        "ArnEquals": _arn,
        "ArnLike": _arn,
        "Bool": _bool,
        "BinaryEquals": _equals(ignore_case=False),
        "IpAddress": _ip,
    }
    tests: dict[str, Callable[[Any, Any], bool]] = {
        "Equals": lambda a, b: bool(a == b),
        "LessThan": lambda a, b: bool(a < b),
        "LessThanEquals": lambda a, b: bool(a <= b),
        "GreaterThan": lambda a, b: bool(a > b),
        "GreaterThanEquals": lambda a, b: bool(a >= b),
    }
    for suffix, test in tests.items():
        table[f"Numeric{suffix}"] = _ordered(_number, test)
        table[f"Date{suffix}"] = _ordered(_date, test)
    return table


_COMPARISONS = _comparisons()

# Each negated operator is the negation of a positive one over all its values.
_NEGATIONS = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "NumericNotEquals": "NumericEquals",
    "DateNotEquals": "DateEquals",
    "NotIpAddress": "IpAddress",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def _value_matches(
    base: str, expected: list[str], actual: str, is_pattern: bool
) -> Tri:
    # One context value satisfies a positive operator when it matches any of the
    # condition's values, and a negated operator when it matches none of them.
    positive = _NEGATIONS.get(base, base)
    compare = _COMPARISONS[positive]
    matched = tri_any(compare(value, actual, is_pattern) for value in expected)
    return tri_not(matched) if base in _NEGATIONS else matched


def _evaluate_key(
    operator: ConditionOperator, expected: list[str], actual: ContextValue
) -> Tri:
    present = bool(actual.values)
    if operator.base == "Null":
        return any((value.lower() == "true") != present for value in expected)
    if not present:
        if operator.if_exists or operator.qualifier == "ForAllValues":
            return True
        return operator.base in _NEGATIONS and operator.qualifier != "ForAnyValue"

    results = [
        _value_matches(operator.base, expected, value, actual.pattern)
        for value in actual.values
    ]
    # NOTE: a plain operator on a key with several values is treated like
    # ForAnyValue. AWS advises a set qualifier for multivalued keys.
    return (
        tri_all(results) if operator.qualifier == "ForAllValues" else tri_any(results)
    )


def evaluate_condition(
    condition: Mapping[str, Any],
    context: Mapping[str, ContextValue],
    *,
    closed: bool,
) -> Tri:
    """Evaluate a validated Condition block; every operator and key must hold.

    Args:
        condition: the statement's Condition element.
        context: request context values by lower-case key name.
        closed: True when a key missing from `context` is absent from the
            request; False when it is unknown, which makes its test None.
    """
    results: list[Tri] = []
    for name, block in condition.items():
        operator = split_operator(name)
        if operator is None:
            raise ValueError(f"unvalidated condition operator {name!r}")
        for key, value in block.items():
            actual = context.get(key.lower())
            if actual is None and not closed:
                results.append(None)
                continue
            expected = [
                condition_text(v)
                for v in (value if isinstance(value, list) else [value])
            ]
            results.append(_evaluate_key(operator, expected, actual or ABSENT))
    return tri_all(results)
