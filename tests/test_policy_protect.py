"""Tests of the protection statement: add, narrow, remove, and its effect on requests."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.policy import (
    ALLOW,
    EXPLICIT_DENY,
    PROTECTED_ACTIONS,
    PROTECTION_SID,
    add_protection,
    analyse_policy,
    evaluate,
    merge_policy,
    narrow_protection,
    policy_errors,
    protection_actions,
    remove_protection,
    render_key_policy,
)

KEY = "111122223333"
PIPE = "444455556789"
KEY_ROOT = f"arn:aws:iam::{KEY}:root"
BREAK_GLASS = f"arn:aws:iam::{KEY}:role/BreakGlass"
SECOND_BREAK_GLASS = f"arn:aws:iam::{KEY}:role/IncidentResponse"
OPERATOR = f"arn:aws:iam::{KEY}:role/Operator"
PIPELINE_ROLE = f"arn:aws:iam::{PIPE}:role/sp-enrich"


def customer_policy() -> dict[str, Any]:
    """Return a policy with a customer statement besides the rendered ones."""
    doc = render_key_policy(
        key_account=KEY,
        pipeline_account=PIPE,
        admin_roles=[f"arn:aws:iam::{KEY}:role/KeyAdmin"],
    )
    doc["Statement"].append(
        {
            "Sid": "AuditorsDescribe",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{KEY}:role/Auditor"},
            "Action": "kms:DescribeKey",
            "Resource": "*",
        }
    )
    return doc


def protected() -> dict[str, Any]:
    return add_protection(customer_policy(), [BREAK_GLASS])


def protection_of(doc: dict[str, Any]) -> dict[str, Any]:
    statement: dict[str, Any] = next(
        s for s in doc["Statement"] if s.get("Sid") == PROTECTION_SID
    )
    return statement


def decide(doc: dict[str, Any], principal: str, action: str) -> str:
    return evaluate(doc, principal_arn=principal, action=action)


def test_add_protection_keeps_original_statements() -> None:
    original = customer_policy()
    doc = add_protection(original, [BREAK_GLASS])

    assert doc["Statement"][: len(original["Statement"])] == original["Statement"]


def test_add_protection_adds_exactly_one_statement() -> None:
    original = customer_policy()
    doc = add_protection(original, [BREAK_GLASS])

    assert len(doc["Statement"]) == len(original["Statement"]) + 1
    assert [s.get("Sid") for s in doc["Statement"]].count(PROTECTION_SID) == 1


def test_add_protection_statement_content() -> None:
    statement = protection_of(protected())

    assert statement == {
        "Sid": PROTECTION_SID,
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": ["kms:DisableKey", "kms:ScheduleKeyDeletion"],
        "Resource": "*",
        "Condition": {"ArnNotLike": {"aws:PrincipalArn": [BREAK_GLASS]}},
    }


def test_add_protection_lists_every_break_glass_role() -> None:
    doc = add_protection(
        customer_policy(), [BREAK_GLASS, SECOND_BREAK_GLASS, BREAK_GLASS]
    )
    roles = protection_of(doc)["Condition"]["ArnNotLike"]["aws:PrincipalArn"]

    assert roles == [BREAK_GLASS, SECOND_BREAK_GLASS]


def test_add_protection_never_denies_put_key_policy() -> None:
    actions = protection_of(protected())["Action"]

    assert "kms:PutKeyPolicy" not in actions
    assert tuple(actions) == PROTECTED_ACTIONS


@pytest.mark.parametrize("form", ["root", "roles"])
def test_protected_policy_passes_analysis(form: str) -> None:
    doc = render_key_policy(key_account=KEY, pipeline_account=PIPE, principal_form=form)
    findings = analyse_policy(
        add_protection(doc, [BREAK_GLASS]),
        key_account=KEY,
        pipeline_account=PIPE,
        principal_form=form,
    )

    assert policy_errors(findings) == []
    assert findings == []


def test_add_protection_does_not_change_input() -> None:
    original = customer_policy()
    before = copy.deepcopy(original)
    add_protection(original, [BREAK_GLASS])

    assert original == before


def test_add_protection_twice_replaces_statement() -> None:
    doc = add_protection(protected(), [SECOND_BREAK_GLASS])
    statements = [s for s in doc["Statement"] if s.get("Sid") == PROTECTION_SID]

    assert len(statements) == 1
    assert statements[0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"] == [
        SECOND_BREAK_GLASS
    ]


def test_add_protection_replaces_in_place() -> None:
    doc = protected()
    doc["Statement"].append({**doc["Statement"][0], "Sid": "Later"})
    position = [s.get("Sid") for s in doc["Statement"]].index(PROTECTION_SID)

    again = add_protection(doc, [SECOND_BREAK_GLASS])

    assert again["Statement"][position]["Sid"] == PROTECTION_SID
    assert again["Statement"][-1]["Sid"] == "Later"


def test_add_protection_requires_a_role() -> None:
    with pytest.raises(InvalidInput, match="break-glass"):
        add_protection(customer_policy(), [])


@pytest.mark.parametrize(
    "role",
    [
        pytest.param("BreakGlass", id="name-only"),
        pytest.param(f"arn:aws:iam::{KEY}:user/alice", id="user"),
        pytest.param("arn:aws:iam::1111:role/BreakGlass", id="short-account"),
    ],
)
def test_add_protection_rejects_malformed_role(role: str) -> None:
    with pytest.raises(InvalidInput):
        add_protection(customer_policy(), [role])


def test_remove_protection_restores_original_statements() -> None:
    original = customer_policy()

    assert remove_protection(add_protection(original, [BREAK_GLASS])) == original


def test_remove_protection_keeps_statement_order() -> None:
    doc = protected()
    doc["Statement"].insert(0, doc["Statement"].pop())
    restored = remove_protection(doc)

    assert restored["Statement"] == customer_policy()["Statement"]


def test_remove_protection_does_not_change_input() -> None:
    doc = protected()
    before = copy.deepcopy(doc)
    remove_protection(doc)

    assert doc == before


def test_remove_protection_without_statement_returns_copy() -> None:
    original = customer_policy()
    result = remove_protection(original)

    assert result == original
    assert result is not original


def test_remove_protection_rejects_policy_of_only_protection() -> None:
    doc = protected()
    doc["Statement"] = protection_of(doc)

    with pytest.raises(InvalidInput):
        remove_protection(doc)


def test_protection_actions_of_protected_policy() -> None:
    assert protection_actions(protected()) == PROTECTED_ACTIONS


def test_protection_actions_without_statement() -> None:
    assert protection_actions(customer_policy()) is None


def test_disable_by_other_principal_explicitly_denied() -> None:
    assert decide(protected(), OPERATOR, "kms:DisableKey") == EXPLICIT_DENY


def test_disable_by_account_root_explicitly_denied() -> None:
    assert decide(protected(), KEY_ROOT, "kms:DisableKey") == EXPLICIT_DENY


def test_schedule_deletion_by_pipeline_role_explicitly_denied() -> None:
    assert (
        decide(protected(), PIPELINE_ROLE, "kms:ScheduleKeyDeletion") == EXPLICIT_DENY
    )


def test_disable_by_break_glass_role_not_denied() -> None:
    decision = decide(protected(), BREAK_GLASS, "kms:DisableKey")

    assert decision != EXPLICIT_DENY
    assert decision == ALLOW


def test_disable_by_break_glass_session_not_denied() -> None:
    session = f"arn:aws:sts::{KEY}:assumed-role/BreakGlass/incident-42"

    assert decide(protected(), session, "kms:DisableKey") == ALLOW


def test_put_key_policy_by_account_root_still_allowed() -> None:
    assert decide(protected(), KEY_ROOT, "kms:PutKeyPolicy") == ALLOW


def test_pipeline_use_unaffected_by_protection() -> None:
    assert decide(protected(), PIPELINE_ROLE, "kms:Decrypt") == ALLOW


def test_narrow_protection_leaves_only_schedule_deletion() -> None:
    doc = narrow_protection(protected(), ["kms:ScheduleKeyDeletion"])

    assert protection_actions(doc) == ("kms:ScheduleKeyDeletion",)
    assert decide(doc, OPERATOR, "kms:DisableKey") == ALLOW
    assert decide(doc, OPERATOR, "kms:ScheduleKeyDeletion") == EXPLICIT_DENY


def test_narrow_protection_keeps_other_statements() -> None:
    doc = narrow_protection(protected(), ["kms:ScheduleKeyDeletion"])
    others = [s for s in doc["Statement"] if s.get("Sid") != PROTECTION_SID]

    assert others == customer_policy()["Statement"]


def test_narrow_protection_matches_action_case() -> None:
    doc = narrow_protection(protected(), ["KMS:schedulekeydeletion"])

    assert protection_actions(doc) == ("kms:ScheduleKeyDeletion",)


def test_narrow_protection_does_not_change_input() -> None:
    doc = protected()
    before = copy.deepcopy(doc)
    narrow_protection(doc, ["kms:ScheduleKeyDeletion"])

    assert doc == before


@pytest.mark.parametrize(
    "actions",
    [
        pytest.param([], id="empty"),
        pytest.param(["kms:PutKeyPolicy"], id="not-denied-now"),
    ],
)
def test_narrow_protection_rejects_actions(actions: list[str]) -> None:
    with pytest.raises(InvalidInput):
        narrow_protection(protected(), actions)


def test_narrow_protection_cannot_widen_after_narrowing() -> None:
    doc = narrow_protection(protected(), ["kms:ScheduleKeyDeletion"])

    with pytest.raises(InvalidInput):
        narrow_protection(doc, ["kms:DisableKey"])


def test_narrow_protection_without_statement_rejected() -> None:
    with pytest.raises(InvalidInput, match="no KmsguardProtectKeyState"):
        narrow_protection(customer_policy(), ["kms:DisableKey"])


def test_merge_keeps_protection_through_apply_policy() -> None:
    rendered = render_key_policy(key_account=KEY, pipeline_account=PIPE)
    merged = merge_policy(protected(), rendered)

    assert protection_of(merged) == protection_of(protected())
    assert decide(merged, OPERATOR, "kms:DisableKey") == EXPLICIT_DENY
