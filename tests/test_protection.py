"""Tests of the protection statement on a run's key: protect, the steps, unprotect.

Everything runs against moto's KMS in process and a real SQLite file. moto
does not evaluate key policies, so these tests check the policy documents
kmsguard writes, and the policy evaluator checks what they allow.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import (
    OWN_ACCOUNT,
    PIPELINE_ACCOUNT,
    ROTATION_PARAMS,
    ROTATION_PATH,
    create_key,
    snapshot,
)

from kmsguard.states.rotation import ROTATION
from kmsguard.workflow.app import App
from kmsguard.workflow.errors import InvalidInput, Refused
from kmsguard.workflow.policy import (
    ALLOW,
    EXPLICIT_DENY,
    PROTECTED_ACTIONS,
    PROTECTION_SID,
    evaluate,
    render_key_policy,
    same_statements,
)
from kmsguard.workflow.protection import protect, start_run, unprotect
from kmsguard.workflow.protection_policy import policy_problems
from kmsguard.workflow.records import Run

BREAK_GLASS = f"arn:aws:iam::{OWN_ACCOUNT}:role/BreakGlass"
OPERATOR = f"arn:aws:iam::{OWN_ACCOUNT}:role/Operator"
KEY_ROOT = f"arn:aws:iam::{OWN_ACCOUNT}:root"


@pytest.fixture(autouse=True)
def short_propagation_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto applies a policy at once, so a read back that differs is final.
    monkeypatch.setenv("KMSGUARD_POLICY_PROPAGATION_SECONDS", "0")


def pipeline_policy() -> dict[str, Any]:
    """Return a policy that lets the pipeline in, with one statement of the customer."""
    doc = render_key_policy(key_account=OWN_ACCOUNT, pipeline_account=PIPELINE_ACCOUNT)
    doc["Statement"].append(
        {
            "Sid": "AuditorsDescribe",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{OWN_ACCOUNT}:role/Auditor"},
            "Action": "kms:DescribeKey",
            "Resource": "*",
        }
    )
    return doc


def pipeline_key(kms: Any) -> str:
    """Create a key whose policy lets the pipeline use it, as a key in use does."""
    arn = create_key(kms, Description="old pipeline key")
    kms.put_key_policy(
        KeyId=arn, PolicyName="default", Policy=json.dumps(pipeline_policy())
    )
    return arn


def live_policy(kms: Any, arn: str) -> dict[str, Any]:
    text = kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"]
    policy: dict[str, Any] = json.loads(text)
    return policy


def protection_of(doc: dict[str, Any]) -> dict[str, Any] | None:
    found = [s for s in doc["Statement"] if s.get("Sid") == PROTECTION_SID]
    assert len(found) <= 1
    return found[0] if found else None


def others(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in doc["Statement"] if s.get("Sid") != PROTECTION_SID]


def key_state(kms: Any, arn: str) -> str:
    return str(kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"])


def open_run(app: App) -> Run:
    run = app.store.open_run("prod")
    assert run is not None
    return run


def start_protected(app: App, kms: Any) -> str:
    old_key = pipeline_key(kms)
    params = {"key": old_key, "protect": True, "break_glass_roles": [BREAK_GLASS]}
    start_run(app, ROTATION, "prod", params)
    return old_key


def step_to(app: App, state: str) -> None:
    """Step the open rotation run forward until it reaches `state`."""
    for reached, step in ROTATION_PATH[1:]:
        if open_run(app).state == state:
            return
        assert step is not None
        app.step(ROTATION, step, "prod", dict(ROTATION_PARAMS[step]))
        assert open_run(app).state == reached


def events_of(app: App, step: str) -> list[str]:
    return [e.outcome for e in app.store.run_events(open_run(app).id) if e.step == step]


def backup_reasons(app: App, run_id: int) -> list[str]:
    return [str(row["reason"]) for row in app.store.policy_backups(run_id)]


# Protecting at the start of a run


def test_start_protect_keeps_every_original_statement(app: App, kms: Any) -> None:
    old_key = start_protected(app, kms)

    assert others(live_policy(kms, old_key)) == pipeline_policy()["Statement"]


def test_start_protect_adds_one_deny_statement(app: App, kms: Any) -> None:
    old_key = start_protected(app, kms)
    policy = live_policy(kms, old_key)

    assert len(policy["Statement"]) == len(pipeline_policy()["Statement"]) + 1
    assert protection_of(policy) == {
        "Sid": PROTECTION_SID,
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": list(PROTECTED_ACTIONS),
        "Resource": "*",
        "Condition": {"ArnNotLike": {"aws:PrincipalArn": [BREAK_GLASS]}},
    }


def test_start_protect_policy_passes_checks(app: App, kms: Any) -> None:
    old_key = start_protected(app, kms)

    assert policy_problems(live_policy(kms, old_key), old_key, PIPELINE_ACCOUNT) == []


def test_start_protect_denies_disable_except_break_glass(app: App, kms: Any) -> None:
    policy = live_policy(kms, start_protected(app, kms))

    assert evaluate(policy, principal_arn=OPERATOR, action="kms:DisableKey") == (
        EXPLICIT_DENY
    )
    assert evaluate(policy, principal_arn=BREAK_GLASS, action="kms:DisableKey") == (
        ALLOW
    )
    assert evaluate(policy, principal_arn=KEY_ROOT, action="kms:PutKeyPolicy") == (
        ALLOW
    )


def test_start_protect_records_both_policy_versions(app: App, kms: Any) -> None:
    start_protected(app, kms)
    run = open_run(app)
    rows = app.store.policy_backups(run.id)

    assert [row["reason"] for row in rows] == ["before protect", "written by protect"]
    assert json.loads(rows[0]["policy"]) == pipeline_policy()
    assert protection_of(json.loads(rows[1]["policy"])) is not None


def test_start_protect_records_intent_then_applied(app: App, kms: Any) -> None:
    start_protected(app, kms)
    events = [e for e in app.store.run_events(open_run(app).id) if e.step == "protect"]

    assert [e.outcome for e in events] == ["intent", "applied"]
    assert events[1].resolves == events[0].id
    assert open_run(app).pending_intent_id is None


def test_start_protect_keeps_run_state(app: App, kms: Any) -> None:
    start_protected(app, kms)
    run = open_run(app)

    assert run.state == "started"
    assert run.data["protection"]["in_place"] is True
    assert run.data["protection"]["break_glass_roles"] == [BREAK_GLASS]
    assert app.verify()["ok"] is True


def test_start_protect_refused_when_pipeline_not_allowed(
    app: App, kms: Any, db_path: Any
) -> None:
    old_key = create_key(kms, Description="default policy only")
    before = live_policy(kms, old_key)
    rows = snapshot(db_path)
    params = {"key": old_key, "protect": True, "break_glass_roles": [BREAK_GLASS]}

    with pytest.raises(Refused, match="pipeline account"):
        start_run(app, ROTATION, "prod", params)

    assert snapshot(db_path) == rows
    assert live_policy(kms, old_key) == before


def test_start_protect_requires_break_glass_role(
    app: App, kms: Any, db_path: Any
) -> None:
    old_key = pipeline_key(kms)
    rows = snapshot(db_path)

    with pytest.raises(InvalidInput, match="break-glass"):
        start_run(app, ROTATION, "prod", {"key": old_key, "protect": True})

    assert snapshot(db_path) == rows


def test_break_glass_role_without_protect_rejected(app: App, kms: Any) -> None:
    params = {"key": pipeline_key(kms), "break_glass_roles": [BREAK_GLASS]}

    with pytest.raises(InvalidInput, match="only with --protect"):
        start_run(app, ROTATION, "prod", params)

    assert app.store.open_run("prod") is None


def test_start_without_protect_leaves_policy(app: App, kms: Any) -> None:
    old_key = pipeline_key(kms)
    start_run(app, ROTATION, "prod", {"key": old_key})

    assert live_policy(kms, old_key) == pipeline_policy()
    assert "protection" not in open_run(app).data


# The disable step


def test_disable_narrows_protection(app: App, kms: Any) -> None:
    old_key = start_protected(app, kms)
    step_to(app, "old_key_disabled")
    policy = live_policy(kms, old_key)

    assert key_state(kms, old_key) == "Disabled"
    assert protection_of(policy)["Action"] == ["kms:ScheduleKeyDeletion"]  # type: ignore[index]
    assert others(policy) == pipeline_policy()["Statement"]


def test_disable_narrowing_records_both_versions(app: App, kms: Any) -> None:
    start_protected(app, kms)
    step_to(app, "old_key_disabled")
    run = open_run(app)
    disabled = [e for e in app.store.run_events(run.id) if e.outcome == "applied"][-1]

    assert backup_reasons(app, run.id)[-2:] == [
        "before disable-old-key",
        "written by disable-old-key",
    ]
    assert disabled.evidence["protection"]["change"] == "narrow"
    assert run.data["protection"]["actions"] == ["kms:ScheduleKeyDeletion"]


def test_disable_intent_names_policy_change(app: App, kms: Any) -> None:
    start_protected(app, kms)
    step_to(app, "old_key_disabled")
    run = open_run(app)
    intent = next(
        e
        for e in app.store.run_events(run.id)
        if e.step == "disable_old_key" and e.outcome == "intent"
    )

    assert intent.evidence["protection"]["change"] == "narrow"


def test_disable_without_protection_leaves_policy(app: App, kms: Any) -> None:
    old_key = pipeline_key(kms)
    start_run(app, ROTATION, "prod", {"key": old_key})
    step_to(app, "old_key_disabled")

    assert key_state(kms, old_key) == "Disabled"
    assert live_policy(kms, old_key) == pipeline_policy()
    assert backup_reasons(app, open_run(app).id) == ["before apply-policy"]


def test_refused_disable_leaves_protection(app: App, kms: Any) -> None:
    old_key = start_protected(app, kms)
    step_to(app, "support_contacted")
    before = kms.get_key_policy(KeyId=old_key, PolicyName="default")["Policy"]

    with pytest.raises(Refused):
        app.step(ROTATION, "disable_old_key", "prod", {})

    after = kms.get_key_policy(KeyId=old_key, PolicyName="default")["Policy"]
    assert after == before
    assert key_state(kms, old_key) == "Enabled"


# Schedule deletion, complete and cancel


def test_schedule_deletion_removes_protection(app: App, kms: Any) -> None:
    old_key = start_protected(app, kms)
    step_to(app, "old_key_deletion_scheduled")
    policy = live_policy(kms, old_key)

    assert key_state(kms, old_key) == "PendingDeletion"
    assert protection_of(policy) is None
    assert policy["Statement"] == pipeline_policy()["Statement"]
    assert open_run(app).data["protection"]["in_place"] is False


def test_refused_schedule_deletion_leaves_protection(app: App, kms: Any) -> None:
    old_key = start_protected(app, kms)
    step_to(app, "old_key_disabled")
    before = kms.get_key_policy(KeyId=old_key, PolicyName="default")["Policy"]

    # Without accept_risk the observation period since the disable is unmet.
    with pytest.raises(Refused):
        app.step(ROTATION, "schedule_deletion", "prod", {"window_days": 30})

    after = kms.get_key_policy(KeyId=old_key, PolicyName="default")["Policy"]
    assert after == before
    assert key_state(kms, old_key) == "Disabled"


def test_complete_without_deletion_removes_protection(app: App, kms: Any) -> None:
    old_key = start_protected(app, kms)
    step_to(app, "old_key_disabled")
    run_id = open_run(app).id
    app.step(ROTATION, "complete", "prod", {})
    outcomes = [e.outcome for e in app.store.run_events(run_id) if e.step == "complete"]

    assert protection_of(live_policy(kms, old_key)) is None
    assert same_statements(live_policy(kms, old_key), pipeline_policy())
    assert outcomes == ["intent", "applied"]
    assert app.store.get_run(run_id).state == "completed"


def test_complete_after_deletion_writes_no_intent(app: App, kms: Any) -> None:
    start_protected(app, kms)
    step_to(app, "old_key_deletion_scheduled")
    run_id = open_run(app).id
    app.step(ROTATION, "complete", "prod", {})
    outcomes = [e.outcome for e in app.store.run_events(run_id) if e.step == "complete"]

    assert outcomes == ["applied"]


def test_cancel_removes_protection(app: App, kms: Any) -> None:
    old_key = start_protected(app, kms)
    step_to(app, "policy_applied")
    run_id = open_run(app).id
    app.step(ROTATION, "cancel", "prod", {"reason": "another key instead"})
    outcomes = [e.outcome for e in app.store.run_events(run_id) if e.step == "cancel"]

    assert live_policy(kms, old_key) == pipeline_policy()
    assert outcomes == ["intent", "applied"]
    assert backup_reasons(app, run_id)[-1] == "written by cancel"


def test_cancel_unprotected_run_writes_no_intent(app: App, kms: Any) -> None:
    start_run(app, ROTATION, "prod", {"key": pipeline_key(kms)})
    run_id = open_run(app).id
    app.step(ROTATION, "cancel", "prod", {"reason": "testing"})
    outcomes = [e.outcome for e in app.store.run_events(run_id) if e.step == "cancel"]

    assert outcomes == ["applied"]


# protect and unprotect on an open run


def test_protect_open_run_adds_statement(app: App, kms: Any) -> None:
    old_key = pipeline_key(kms)
    start_run(app, ROTATION, "prod", {"key": old_key})
    version = open_run(app).version

    result = protect(app, "prod", [BREAK_GLASS])

    assert protection_of(live_policy(kms, old_key)) is not None
    assert result.run.state == "started"
    assert result.run.version == version + 2
    assert events_of(app, "protect") == ["intent", "applied"]


def test_protect_after_disable_denies_only_deletion(app: App, kms: Any) -> None:
    old_key = pipeline_key(kms)
    start_run(app, ROTATION, "prod", {"key": old_key})
    step_to(app, "old_key_disabled")

    protect(app, "prod", [BREAK_GLASS])

    actions = protection_of(live_policy(kms, old_key))["Action"]  # type: ignore[index]
    assert actions == ["kms:ScheduleKeyDeletion"]


def test_protect_twice_records_no_second_write(app: App, kms: Any) -> None:
    start_protected(app, kms)

    result = protect(app, "prod", [BREAK_GLASS])

    assert result.event.outcome == "recorded"
    assert events_of(app, "protect") == ["intent", "applied", "recorded"]


def test_protect_without_open_run_refused(app: App, kms: Any) -> None:
    with pytest.raises(Refused, match="no open run"):
        protect(app, "prod", [BREAK_GLASS])


def test_protect_unknown_environment_rejected(app: App) -> None:
    with pytest.raises(InvalidInput, match="unknown environment"):
        protect(app, "staging", [BREAK_GLASS])


def test_protect_malformed_role_rejected(app: App, kms: Any, db_path: Any) -> None:
    start_run(app, ROTATION, "prod", {"key": pipeline_key(kms)})
    rows = snapshot(db_path)

    with pytest.raises(InvalidInput, match="invalid IAM role ARN"):
        protect(app, "prod", ["BreakGlass"])

    assert snapshot(db_path) == rows


def test_unprotect_restores_original_policy(app: App, kms: Any) -> None:
    old_key = start_protected(app, kms)

    unprotect(app, "prod", "support asked for a console change")

    policy = live_policy(kms, old_key)
    assert policy["Statement"] == pipeline_policy()["Statement"]
    assert same_statements(policy, pipeline_policy())


def test_unprotect_records_reason_and_versions(app: App, kms: Any) -> None:
    start_protected(app, kms)

    result = unprotect(app, "prod", "support asked for a console change")

    assert result.event.evidence["reason"] == "support asked for a console change"
    assert backup_reasons(app, result.run.id)[-2:] == [
        "before unprotect",
        "written by unprotect",
    ]
    assert result.run.data["protection"]["in_place"] is False


def test_unprotect_without_statement_changes_nothing(app: App, kms: Any) -> None:
    old_key = pipeline_key(kms)
    start_run(app, ROTATION, "prod", {"key": old_key})

    result = unprotect(app, "prod", "cleanup")

    assert result.event.outcome == "recorded"
    assert live_policy(kms, old_key) == pipeline_policy()
    assert "protection" not in result.run.data


def test_unprotect_empty_reason_rejected(app: App, kms: Any) -> None:
    start_protected(app, kms)

    with pytest.raises(InvalidInput, match="--reason"):
        unprotect(app, "prod", "  ")
