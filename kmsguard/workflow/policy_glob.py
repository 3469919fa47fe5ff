"""Wildcard matching as IAM policies use it: `*` is any run of characters, `?` one.

Besides matching a pattern against a text, the analysis needs to compare two
patterns: whether one covers every text the other matches, and whether they can
match a common text. Both are decided exactly for patterns built from `*`, `?`
and literal characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache, lru_cache

# An ARN has six colon-separated fields, and the last one may itself contain colons.
ARN_FIELD_COUNT = 6


@lru_cache(maxsize=1024)
def _compile(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    wildcards = {"*": ".*", "?": "."}
    parts = [wildcards.get(char, re.escape(char)) for char in pattern]
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts), flags)


def has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def glob_match(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    """Return whether `text` matches the IAM wildcard `pattern` as a whole."""
    return _compile(pattern, ignore_case).fullmatch(text) is not None


def _same_char(ignore_case: bool) -> Callable[[str, str], bool]:
    if ignore_case:
        return lambda a, b: a.casefold() == b.casefold()
    return lambda a, b: a == b


def glob_covers(outer: str, inner: str, *, ignore_case: bool = False) -> bool:
    """Return whether every text that `inner` matches is also matched by `outer`.

    Both arguments are IAM wildcard patterns. A plain text is a pattern that
    matches only itself, so `glob_covers(p, text)` equals `glob_match(p, text)`.
    """
    same = _same_char(ignore_case)

    @cache
    def covers(i: int, j: int) -> bool:
        if i == len(outer):
            return j == len(inner)
        if outer[i] == "*":
            # The outer star takes nothing, or takes one more token of `inner`.
            return covers(i + 1, j) or (j < len(inner) and covers(i, j + 1))
        if j == len(inner) or inner[j] == "*":
            # An inner star can stand for any length, which one outer character
            # cannot cover.
            return False
        if outer[i] == "?":
            return covers(i + 1, j + 1)
        if inner[j] == "?":
            return False
        return same(outer[i], inner[j]) and covers(i + 1, j + 1)

    return covers(0, 0)


def globs_overlap(first: str, second: str, *, ignore_case: bool = False) -> bool:
    """Return whether some text is matched by both IAM wildcard patterns."""
    same = _same_char(ignore_case)

    @cache
    def overlap(i: int, j: int) -> bool:
        if i == len(first) and j == len(second):
            return True
        if i < len(first) and first[i] == "*":
            return overlap(i + 1, j) or (j < len(second) and overlap(i, j + 1))
        if j < len(second) and second[j] == "*":
            return overlap(i, j + 1) or (i < len(first) and overlap(i + 1, j))
        if i == len(first) or j == len(second):
            return False
        if first[i] == "?" or second[j] == "?" or same(first[i], second[j]):
            return overlap(i + 1, j + 1)
        return False

    return overlap(0, 0)


def _arn_fields(value: str) -> list[str] | None:
    fields = value.split(":", ARN_FIELD_COUNT - 1)
    return fields if len(fields) == ARN_FIELD_COUNT else None


def _fieldwise(pattern: str, value: str, compare: Callable[[str, str], bool]) -> bool:
    # ArnLike and ArnEquals compare each of the six ARN fields on its own, so a
    # wildcard never reaches across a colon, and a pattern with fewer fields
    # matches no ARN. A lone "*" matches every ARN.
    if pattern == "*":
        return True
    pattern_fields = _arn_fields(pattern)
    value_fields = _arn_fields(value)
    if pattern_fields is None and value_fields is None:
        return compare(pattern, value)
    if pattern_fields is None or value_fields is None:
        return False
    return all(compare(p, v) for p, v in zip(pattern_fields, value_fields, strict=True))


def arn_match(pattern: str, arn: str) -> bool:
    """Return whether `arn` matches `pattern` under ArnLike (case-sensitive)."""
    return _fieldwise(pattern, arn, glob_match)


def arn_covers(outer: str, inner: str) -> bool:
    """Return whether ARN pattern `outer` matches every ARN that `inner` matches."""
    return _fieldwise(outer, inner, glob_covers)


def arns_overlap(first: str, second: str) -> bool:
    """Return whether some ARN matches both ARN patterns."""
    if second == "*":
        return True
    return _fieldwise(first, second, globs_overlap)
