"""Tests of protection_status, status --live, and intents left by a stopped process.

KMS runs in moto in process; the database is a real SQLite file.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from typing import Any

import pytest
from conftest import OWN_ACCOUNT, REGION
from test_protection import (
    BREAK_GLASS,
    open_run,
    pipeline_key,
    pipeline_policy,
    start_protected,
)

from kmsguard.states.rotation import ROTATION
from kmsguard.workflow.app import App
from kmsguard.workflow.aws import Kms
from kmsguard.workflow.errors import Conflict, Refused
from kmsguard.workflow.protection import (
    protect,
    protection_status,
    start_run,
    unprotect,
)
from kmsguard.workflow.protection_kms import (
    read_policy,
)
from kmsguard.workflow.protection_policy import (
    plan_protect,
)
from kmsguard.workflow.records import NewEvent, Run, RunChange

AUDITOR = f"arn:aws:iam::{OWN_ACCOUNT}:role/Auditor"


@pytest.fixture(autouse=True)
def short_propagation_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMSGUARD_POLICY_PROPAGATION_SECONDS", "0")


def put_policy(kms: Any, arn: str, doc: dict[str, Any]) -> None:
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps(doc))


def status_of(app: App) -> dict[str, Any]:
    return protection_status(app, app.aws(), open_run(app))


# protection_status


def test_status_in_place_after_protect(app: App, kms: Any) -> None:
    start_protected(app, kms)
    status = status_of(app)

    assert status["in_place"] is True
    assert status["full"] is True
    assert status["break_glass_roles"] == [BREAK_GLASS]
    assert status["changed_outside_kmsguard"] is False
    assert status["problems"] == []


def test_status_statement_removed_outside_kmsguard(app: App, kms: Any) -> None:
    old_key = start_protected(app, kms)
    put_policy(kms, old_key, pipeline_policy())
    status = status_of(app)

    assert status["in_place"] is False
    assert status["recorded_in_place"] is True
    assert status["protection_changed"] is True
    assert status["other_statements_changed"] is False
    assert "removed outside kmsguard" in status["problems"][0]


def test_unprotect_records_removal_by_hand(app: App, kms: Any) -> None:
    old_key = start_protected(app, kms)
    put_policy(kms, old_key, pipeline_policy())

    unprotect(app, "prod", "removed with the AWS CLI during an incident")
    status = status_of(app)
    rows = app.status("prod", live=True)

    assert status["recorded_in_place"] is False
    assert status["changed_outside_kmsguard"] is False
    assert status["problems"] == []
    assert rows[0]["live"]["drift"] == []


def test_unprotect_keeps_other_changes_reported(app: App, kms: Any) -> None:
    old_key = start_protected(app, kms)
    changed = pipeline_policy()
    changed["Statement"] = changed["Statement"][:-1]
    put_policy(kms, old_key, changed)

    unprotect(app, "prod", "removed with the AWS CLI during an incident")
    status = status_of(app)

    assert status["other_statements_changed"] is True
    assert status["changed_outside_kmsguard"] is True


def test_status_other_statement_changed_outside(app: App, kms: Any) -> None:
    old_key = start_protected(app, kms)
    policy = json.loads(
        kms.get_key_policy(KeyId=old_key, PolicyName="default")["Policy"]
    )
    policy["Statement"].append(
        {
            "Sid": "AuditorsList",
            "Effect": "Allow",
            "Principal": {"AWS": AUDITOR},
            "Action": "kms:ListGrants",
            "Resource": "*",
        }
    )
    put_policy(kms, old_key, policy)
    status = status_of(app)

    assert status["in_place"] is True
    assert status["protection_changed"] is False
    assert status["other_statements_changed"] is True
    assert status["changed_outside_kmsguard"] is True


def test_status_statement_added_by_hand(app: App, kms: Any) -> None:
    old_key = pipeline_key(kms)
    start_run(app, ROTATION, "prod", {"key": old_key})
    policy = plan_protect(
        old_key, read_policy(Kms(app.aws(), REGION), old_key), "210987654321", [AUDITOR]
    ).after
    put_policy(kms, old_key, policy)
    status = status_of(app)

    assert status["in_place"] is True
    assert status["recorded_in_place"] is False
    assert "does not record" in status["problems"][0]


def test_status_narrowed_after_disable(app: App, kms: Any) -> None:
    from test_protection import step_to

    start_protected(app, kms)
    step_to(app, "old_key_disabled")
    status = status_of(app)

    assert status["actions"] == ["kms:ScheduleKeyDeletion"]
    assert status["full"] is False
    assert status["changed_outside_kmsguard"] is False


def test_status_live_includes_protection(app: App, kms: Any) -> None:
    start_protected(app, kms)
    rows = app.status("prod", live=True)

    assert rows[0]["live"]["protection"]["in_place"] is True


def test_status_live_omits_unprotected_run(app: App, kms: Any) -> None:
    start_run(app, ROTATION, "prod", {"key": pipeline_key(kms)})
    rows = app.status("prod", live=True)

    assert "protection" not in rows[0]["live"]


def test_drift_check_sees_statement_removed(app: App, kms: Any) -> None:
    old_key = start_protected(app, kms)
    put_policy(kms, old_key, pipeline_policy())
    rows = app.status("prod", live=True)
    drifts = rows[0]["live"]["drift"]

    assert [d["kind"] for d in drifts] == ["policy"]
    assert drifts[0]["key_arn"] == old_key


# Intents of protect and unprotect


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def leave_intent(
    app: App, run: Run, step: str, evidence: dict[str, Any], pid: int
) -> None:
    """Record an intent as a process that stopped before its outcome would."""
    event = NewEvent(
        step=step,
        outcome="intent",
        operator="bob",
        from_state=run.state,
        to_state=run.state,
        message=f"about to {step}",
        evidence={**evidence, "pid": pid, "host": socket.gethostname()},
    )
    app.store.compare_and_set(
        run, RunChange(state=run.state, pending_intent=True), event
    )


def protect_intent(app: App, old_key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    change = plan_protect(
        old_key,
        read_policy(Kms(app.aws(), REGION), old_key),
        "210987654321",
        [BREAK_GLASS],
    )
    evidence = {"action": "kms:PutKeyPolicy", "key": old_key}
    evidence["protection"] = change.intent_evidence()
    return evidence, change.after


def test_protect_reconciles_intent_that_took_effect(app: App, kms: Any) -> None:
    old_key = pipeline_key(kms)
    start_run(app, ROTATION, "prod", {"key": old_key})
    evidence, after = protect_intent(app, old_key)
    leave_intent(app, open_run(app), "protect", evidence, dead_pid())
    put_policy(kms, old_key, after)

    protect(app, "prod", [BREAK_GLASS])

    events = [e for e in app.store.run_events(open_run(app).id) if e.step == "protect"]
    assert [e.outcome for e in events] == ["intent", "applied", "recorded"]
    assert events[1].resolves == events[0].id
    assert "took effect" in events[1].message
    assert open_run(app).data["protection"]["in_place"] is True


def test_protect_reconciles_intent_without_effect(app: App, kms: Any) -> None:
    old_key = pipeline_key(kms)
    start_run(app, ROTATION, "prod", {"key": old_key})
    evidence, _ = protect_intent(app, old_key)
    leave_intent(app, open_run(app), "protect", evidence, dead_pid())

    protect(app, "prod", [BREAK_GLASS])

    events = [e for e in app.store.run_events(open_run(app).id) if e.step == "protect"]
    assert [e.outcome for e in events] == ["intent", "failed", "intent", "applied"]
    assert "did not take effect" in events[1].message


def test_protect_refused_while_intent_running(app: App, kms: Any) -> None:
    import os

    old_key = pipeline_key(kms)
    start_run(app, ROTATION, "prod", {"key": old_key})
    evidence, _ = protect_intent(app, old_key)
    leave_intent(app, open_run(app), "protect", evidence, os.getpid())

    with pytest.raises(Conflict, match="in progress"):
        protect(app, "prod", [BREAK_GLASS])


def test_protect_refused_with_step_intent_pending(app: App, kms: Any) -> None:
    old_key = pipeline_key(kms)
    start_run(app, ROTATION, "prod", {"key": old_key})
    evidence = {"action": "kms:CreateKey", "params": {"create": True}}
    leave_intent(app, open_run(app), "new_key", evidence, dead_pid())

    with pytest.raises(Refused, match="unresolved intent"):
        protect(app, "prod", [BREAK_GLASS])

    assert open_run(app).pending_intent_id is not None
