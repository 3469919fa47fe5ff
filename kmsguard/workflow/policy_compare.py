"""Canonical text of key policies, and comparison of two policies by meaning."""

from __future__ import annotations

import difflib
import json
from typing import Any

from kmsguard.workflow.policy_conditions import condition_text
from kmsguard.workflow.policy_grammar import element_values, statement_list

_LIST_ELEMENTS = ("Action", "NotAction", "Resource", "NotResource")


def canonical_json(doc: Any) -> str:
    """Return a document as JSON with sorted keys and a 2-space indent."""
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False)


def _sorted_unique(values: list[Any]) -> list[str]:
    return sorted({condition_text(value) for value in values})


def _normal_principal(principal: Any) -> dict[str, list[str]]:
    # "*" and {"AWS": "*"} both name every principal.
    if principal == "*":
        return {"AWS": ["*"]}
    return {kind: _sorted_unique(element_values(v)) for kind, v in principal.items()}


def _normal_condition(condition: dict[str, Any]) -> dict[str, Any]:
    return {
        operator: {key: _sorted_unique(element_values(v)) for key, v in block.items()}
        for operator, block in condition.items()
        if block
    }


def normal_statement(statement: dict[str, Any]) -> dict[str, Any]:
    """Return a statement with one spelling per meaning.

    Single values become lists, lists are sorted without duplicates, condition
    values become the strings IAM compares, and an empty Condition is dropped.
    """
    normal: dict[str, Any] = {}
    for element, value in statement.items():
        if element in _LIST_ELEMENTS:
            normal[element] = _sorted_unique(element_values(value))
        elif element in ("Principal", "NotPrincipal"):
            normal[element] = _normal_principal(value)
        elif element == "Condition":
            if _normal_condition(value):
                normal[element] = _normal_condition(value)
        else:
            normal[element] = value
    return normal


def _normal_statements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    statements = [normal_statement(s) for s in statement_list(doc)]
    return sorted(statements, key=lambda s: (str(s.get("Sid", "")), canonical_json(s)))


def same_statements(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Return whether two validated policies have the same statements in any order."""
    return _normal_statements(first) == _normal_statements(second)


def _normal_document(doc: dict[str, Any]) -> dict[str, Any]:
    normal = {key: value for key, value in doc.items() if key != "Statement"}
    normal["Statement"] = _normal_statements(doc)
    return normal


def diff_policies(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Return a unified diff from `old` to `new`, or "" when they mean the same.

    Both sides are compared in normal form (see normal_statement), with their
    statements sorted by Sid, so order and spelling alone give no diff. The Id
    element has no effect on access and is ignored when deciding equality, but
    it shows in the diff when something else differs.
    """
    same_version = old.get("Version") == new.get("Version")
    if same_version and same_statements(old, new):
        return ""
    old_lines = canonical_json(_normal_document(old)).splitlines()
    new_lines = canonical_json(_normal_document(new)).splitlines()
    diff = difflib.unified_diff(
        old_lines, new_lines, fromfile="current", tofile="proposed", lineterm=""
    )
    return "\n".join(diff) + "\n"
