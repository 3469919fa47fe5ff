"""Tests of one protection statement that the runs of two environments share.

The statement on a key belongs to every open run that protects the key, so a
run that closes or unprotects leaves it in place while another still needs
it. Everything runs against moto's KMS in process and a real SQLite file.
moto does not evaluate key policies, so these tests read the policy documents
kmsguard writes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import (
    OWN_ACCOUNT,
    PIPELINE_ACCOUNT,
    REGION,
    ROTATION_PARAMS,
    ROTATION_PATH,
    create_key,
    step_along,
)

from kmsguard.states.rotation import ROTATION
from kmsguard.workflow.app import App
from kmsguard.workflow.aws import AwsSession
from kmsguard.workflow.engine import StepResult
from kmsguard.workflow.policy import (
    PROTECTED_ACTIONS,
    PROTECTION_SID,
    render_key_policy,
)
from kmsguard.workflow.protection import protect, start_run, unprotect
from kmsguard.workflow.protection_shared import (
    ProtectingRun,
    other_protecting_runs,
)
from kmsguard.workflow.protection_status import protection_status
from kmsguard.workflow.records import Event, NewEvent, Run, RunChange

BREAK_GLASS = f"arn:aws:iam::{OWN_ACCOUNT}:role/BreakGlass"
ACCEPTED = {"accept_risk": "test: qa1 moves off the key too"}


@pytest.fixture(autouse=True)
def short_propagation_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto applies a policy at once, so a read back that differs is final.
    monkeypatch.setenv("KMSGUARD_POLICY_PROPAGATION_SECONDS", "0")


def pipeline_key(kms: Any) -> str:
    """Create a key whose policy lets the pipeline use it, as a key in use does."""
    arn = create_key(kms, Description="key of prod and qa1")
    policy = render_key_policy(
        key_account=OWN_ACCOUNT, pipeline_account=PIPELINE_ACCOUNT
    )
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps(policy))
    return arn


def denied_actions(kms: Any, arn: str) -> list[str] | None:
    """Return the actions the live protection statement denies, or None without one."""
    text = kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"]
    for statement in json.loads(text)["Statement"]:
        if statement.get("Sid") == PROTECTION_SID:
            return list(statement["Action"])
    return None


def start_protected(app: App, env: str, key: str) -> Run:
    params = {"key": key, "protect": True, "break_glass_roles": [BREAK_GLASS]}
    return start_run(app, ROTATION, env, params).run


def start_shared(app: App, kms: Any) -> str:
    """Start protected rotations of qa1 and prod from one key; return its ARN."""
    key = pipeline_key(kms)
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    start_protected(app, "qa1", key)
    start_protected(app, "prod", key)
    return key


def latest_run(app: App, env: str) -> Run:
    return app.store.runs(env)[-1]


def step_events(app: App, env: str, step: str) -> list[Event]:
    run = latest_run(app, env)
    return [e for e in app.store.run_events(run.id) if e.step == step]


def cancel(app: App, env: str) -> Event:
    app.step(ROTATION, "cancel", env, {"reason": "wrong key"})
    return step_events(app, env, "cancel")[-1]


def kept_sentence(app: App, env: str) -> str:
    other = latest_run(app, env)
    return f"stays because run {other.id} of environment {env} still protects the key"


def disable_prod_accepting_risk(app: App) -> StepResult:
    """Step prod to its disable step and disable the key that qa1 still uses."""
    step_along(app, ROTATION, ROTATION_PATH, ROTATION_PARAMS, "rotation_confirmed")
    return app.step(ROTATION, "disable_old_key", "prod", dict(ACCEPTED))


# Closing one of two protecting runs


def test_cancel_keeps_statement_for_other_run(app: App, kms: Any) -> None:
    key = start_shared(app, kms)

    cancel(app, "prod")

    assert denied_actions(kms, key) == list(PROTECTED_ACTIONS)
    assert latest_run(app, "prod").state == "cancelled"


def test_cancel_kept_message_names_other_run(app: App, kms: Any) -> None:
    start_shared(app, kms)

    event = cancel(app, "prod")

    assert event.message.startswith("cancelled: wrong key; ")
    assert kept_sentence(app, "qa1") in event.message


def test_cancel_kept_evidence_names_other_run(app: App, kms: Any) -> None:
    key = start_shared(app, kms)
    qa1 = latest_run(app, "qa1")

    evidence = cancel(app, "prod").evidence["protection"]

    assert evidence["change"] is None
    assert evidence["key"] == key
    assert evidence["kept_for"] == [
        {
            "run_id": qa1.id,
            "environment": "qa1",
            "procedure": "rotation",
            "state": "started",
            "pending": False,
        }
    ]
    assert kept_sentence(app, "qa1") in evidence["kept_reason"]


def test_cancel_kept_writes_no_policy(app: App, kms: Any) -> None:
    start_shared(app, kms)
    run_id = latest_run(app, "prod").id

    cancel(app, "prod")
    reasons = [str(row["reason"]) for row in app.store.policy_backups(run_id)]

    assert [e.outcome for e in step_events(app, "prod", "cancel")] == ["applied"]
    assert "written by cancel" not in reasons


def test_cancel_kept_records_release(app: App, kms: Any) -> None:
    start_shared(app, kms)

    cancel(app, "prod")
    recorded = latest_run(app, "prod").data["protection"]

    assert recorded["in_place"] is True
    assert recorded["released"] is True


# Closing the last protecting run


@pytest.mark.parametrize(
    ("first", "last"),
    [("prod", "qa1"), ("qa1", "prod")],
    ids=["prod_first", "qa1_first"],
)
def test_cancel_last_protecting_run_removes_statement(
    app: App, kms: Any, first: str, last: str
) -> None:
    key = start_shared(app, kms)

    cancel(app, first)
    event = cancel(app, last)

    assert denied_actions(kms, key) is None
    assert event.evidence["protection"]["change"] == "remove"
    assert "kept_for" not in event.evidence["protection"]


def test_cancel_removes_statement_beside_unprotected_run(app: App, kms: Any) -> None:
    key = pipeline_key(kms)
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    start_run(app, ROTATION, "qa1", {"key": key})
    start_protected(app, "prod", key)

    event = cancel(app, "prod")

    assert denied_actions(kms, key) is None
    assert event.evidence["protection"]["change"] == "remove"


# The disable step and complete after an accepted risk


def test_disable_accepting_risk_narrows_shared_statement(app: App, kms: Any) -> None:
    key = start_shared(app, kms)

    disable_prod_accepting_risk(app)

    assert denied_actions(kms, key) == ["kms:ScheduleKeyDeletion"]


def test_disable_accepting_risk_names_other_protecting_run(app: App, kms: Any) -> None:
    start_shared(app, kms)
    qa1 = latest_run(app, "qa1")

    result = disable_prod_accepting_risk(app)
    lifted = result.event.evidence["protection"]["lifted_for"]
    warning = f"which run {qa1.id} of environment qa1 still relies on"

    assert [entry["run_id"] for entry in lifted] == [qa1.id]
    assert any(warning in note for note in result.outcome.notes)


def test_schedule_deletion_names_other_protecting_run(app: App, kms: Any) -> None:
    key = start_shared(app, kms)
    qa1 = latest_run(app, "qa1")
    disable_prod_accepting_risk(app)
    protect(app, "qa1", [BREAK_GLASS])

    params = dict(ROTATION_PARAMS["schedule_deletion"])
    result = app.step(ROTATION, "schedule_deletion", "prod", params)
    lifted = result.event.evidence["protection"]["lifted_for"]

    assert denied_actions(kms, key) is None
    assert [entry["run_id"] for entry in lifted] == [qa1.id]


def test_complete_keeps_statement_for_other_run(app: App, kms: Any) -> None:
    key = start_shared(app, kms)
    disable_prod_accepting_risk(app)

    app.step(ROTATION, "complete", "prod", {})
    event = step_events(app, "prod", "complete")[-1]

    assert denied_actions(kms, key) == ["kms:ScheduleKeyDeletion"]
    assert event.message.startswith("run completed; ")
    assert kept_sentence(app, "qa1") in event.message


def test_complete_then_last_cancel_removes_statement(app: App, kms: Any) -> None:
    key = start_shared(app, kms)
    disable_prod_accepting_risk(app)
    app.step(ROTATION, "complete", "prod", {})

    cancel(app, "qa1")

    assert denied_actions(kms, key) is None


# unprotect


def test_unprotect_keeps_statement_for_other_run(app: App, kms: Any) -> None:
    key = start_shared(app, kms)
    qa1 = latest_run(app, "qa1")

    result = unprotect(app, "prod", "prod moves to its own key")

    assert denied_actions(kms, key) == list(PROTECTED_ACTIONS)
    assert result.event.outcome == "recorded"
    assert kept_sentence(app, "qa1") in result.event.message
    assert result.event.evidence["protection"]["kept_for"][0]["run_id"] == qa1.id
    assert result.event.evidence["reason"] == "prod moves to its own key"


def test_unprotect_on_both_runs_removes_statement(app: App, kms: Any) -> None:
    key = start_shared(app, kms)
    unprotect(app, "prod", "prod moves to its own key")

    result = unprotect(app, "qa1", "qa1 moves to its own key")

    assert denied_actions(kms, key) is None
    assert result.event.evidence["protection"]["change"] == "remove"


def test_protect_again_after_release_counts_run(app: App, kms: Any) -> None:
    key = start_shared(app, kms)
    unprotect(app, "prod", "prod moves to its own key")
    protect(app, "prod", [BREAK_GLASS])

    result = unprotect(app, "qa1", "qa1 moves to its own key")

    assert denied_actions(kms, key) == list(PROTECTED_ACTIONS)
    assert kept_sentence(app, "prod") in result.event.message


# Which runs protect a key


def test_protecting_runs_exclude_closed_runs(app: App, kms: Any) -> None:
    key = start_shared(app, kms)
    prod = latest_run(app, "prod")
    cancel(app, "qa1")

    assert other_protecting_runs(app.store, key, prod.id) == []


def test_protecting_runs_include_pending_protect(app: App, kms: Any) -> None:
    """The intent is written with the store itself, as `protect` writes it just
    before PutKeyPolicy, because no public call stops between the two."""
    key = pipeline_key(kms)
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    qa1 = start_run(app, ROTATION, "qa1", {"key": key}).run
    prod = start_protected(app, "prod", key)
    intent = NewEvent(
        step="protect",
        outcome="intent",
        operator="bob",
        from_state=qa1.state,
        to_state=qa1.state,
        evidence={"action": "kms:PutKeyPolicy", "key": key},
    )
    app.store.compare_and_set(
        qa1, RunChange(state=qa1.state, pending_intent=True), intent
    )

    found = other_protecting_runs(app.store, key, prod.id)

    assert found == [ProtectingRun(qa1.id, "qa1", "rotation", "started", True)]


def test_cancel_rechecks_runs_before_writing(app: App, kms: Any) -> None:
    """qa1 protects the key from the confirmation callback, which the engine
    calls after prod's cancel read the runs and before it writes."""
    key = pipeline_key(kms)
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    start_protected(app, "prod", key)

    def protect_qa1(_: Any) -> bool:
        start_protected(app, "qa1", key)
        return True

    app.step(ROTATION, "cancel", "prod", {"reason": "wrong key"}, confirm=protect_qa1)
    event = step_events(app, "prod", "cancel")[-1]

    assert denied_actions(kms, key) == list(PROTECTED_ACTIONS)
    assert kept_sentence(app, "qa1") in event.message


def test_disable_accepting_risk_shows_in_other_run_status(
    app: App, kms: Any, aws: AwsSession
) -> None:
    start_shared(app, kms)
    disable_prod_accepting_risk(app)

    status = protection_status(app, aws, latest_run(app, "qa1"))

    assert status["protection_changed"] is True
    assert status["actions"] == ["kms:ScheduleKeyDeletion"]
