"""Tests of `status --live` for a run that released a shared protection statement.

`unprotect` of one of two runs that protect a key keeps the statement for the
other run and records it as released. The released run no longer expects the
statement, so its removal by the other run is no drift, while any other
change of the policy still is. KMS runs in moto in process and the database
is a real SQLite file.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import OWN_ACCOUNT
from test_protection_shared import (
    BREAK_GLASS,
    denied_actions,
    latest_run,
    start_shared,
)

from kmsguard.commands.live import live_exit_code, protection_lines
from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App
from kmsguard.workflow.policy import PROTECTION_SID, add_protection
from kmsguard.workflow.protection import protect, unprotect

AUDITOR = f"arn:aws:iam::{OWN_ACCOUNT}:role/Auditor"


@pytest.fixture(autouse=True)
def short_propagation_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto applies a policy at once, so a read back that differs is final.
    monkeypatch.setenv("KMSGUARD_POLICY_PROPAGATION_SECONDS", "0")


def release_both(app: App, kms: Any) -> str:
    """Unprotect prod (kept for qa1), then qa1 (removed); return the key ARN."""
    key = start_shared(app, kms)
    unprotect(app, "prod", "prod moves to its own key")
    unprotect(app, "qa1", "qa1 moves to its own key")
    return key


def add_auditor_statement(kms: Any, key: str) -> None:
    """Change the key policy by hand, as someone with the console would."""
    doc = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    doc["Statement"].append(
        {
            "Sid": "Auditor",
            "Effect": "Allow",
            "Principal": {"AWS": AUDITOR},
            "Action": "kms:DescribeKey",
            "Resource": "*",
        }
    )
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(doc))


# Released, then removed by the last run


def test_released_run_no_drift_after_removal(app: App, kms: Any) -> None:
    key = release_both(app, kms)

    rows = app.status("prod", live=True)

    assert denied_actions(kms, key) is None
    assert rows[0]["live"]["drift"] == []
    assert live_exit_code(rows) == 0


def test_released_run_no_problem_after_removal(app: App, kms: Any) -> None:
    release_both(app, kms)

    protection = app.status("prod", live=True)[0]["live"]["protection"]

    assert protection["released"] is True
    assert protection["problems"] == []
    assert protection["changed_outside_kmsguard"] is False


def test_released_run_line_after_removal(app: App, kms: Any) -> None:
    key = release_both(app, kms)
    run_id = latest_run(app, "prod").id

    protection = app.status("prod", live=True)[0]["live"]["protection"]
    lines = protection_lines("prod", protection)

    assert lines == [
        f"prod: protection released by run {run_id} on {key}; the statement is removed"
    ]


# Released while the other run keeps the statement


def test_released_run_no_drift_while_kept(app: App, kms: Any) -> None:
    start_shared(app, kms)
    unprotect(app, "prod", "prod moves to its own key")

    rows = app.status("prod", live=True)

    assert rows[0]["live"]["drift"] == []
    assert rows[0]["live"]["protection"]["problems"] == []
    assert live_exit_code(rows) == 0


def test_released_run_line_while_kept(app: App, kms: Any) -> None:
    key = start_shared(app, kms)
    unprotect(app, "prod", "prod moves to its own key")
    run_id = latest_run(app, "prod").id

    protection = app.status("prod", live=True)[0]["live"]["protection"]
    lines = protection_lines("prod", protection)

    assert lines == [
        f"prod: protection released by run {run_id} on {key}; the statement "
        "stays for the other runs that protect the key"
    ]


def test_keeping_run_no_drift_after_other_release(app: App, kms: Any) -> None:
    start_shared(app, kms)
    unprotect(app, "prod", "prod moves to its own key")

    rows = app.status("qa1", live=True)

    assert rows[0]["live"]["drift"] == []
    assert rows[0]["live"]["protection"]["problems"] == []


# Changes outside kmsguard still show for a released run


def test_released_run_reports_other_policy_change(app: App, kms: Any) -> None:
    key = release_both(app, kms)
    add_auditor_statement(kms, key)

    rows = app.status("prod", live=True)
    protection = rows[0]["live"]["protection"]

    assert [d["kind"] for d in rows[0]["live"]["drift"]] == ["policy"]
    assert protection["other_statements_changed"] is True
    assert live_exit_code(rows) == 3


def test_protect_again_after_release_expects_statement(app: App, kms: Any) -> None:
    """A run that protects again relies on the statement, so its loss is reported."""
    key = start_shared(app, kms)
    unprotect(app, "prod", "prod moves to its own key")
    protect(app, "prod", [BREAK_GLASS])
    doc = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    doc["Statement"] = [s for s in doc["Statement"] if s.get("Sid") != PROTECTION_SID]
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(doc))

    protection = app.status("prod", live=True)[0]["live"]["protection"]

    assert protection["released"] is False
    assert "removed outside kmsguard" in protection["problems"][0]


# Removed by its only run, then protected by another run


def protect_by_hand(kms: Any, key: str) -> None:
    """Put a protection statement on the key outside kmsguard."""
    doc = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    updated = add_protection(doc, [BREAK_GLASS])
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(updated))


def protect_after_removal(app: App, kms: Any) -> str:
    """Protect prod's key, unprotect it (removed), then start qa1 protected on it."""
    from conftest import PIPELINE_ACCOUNT, REGION
    from test_protection_shared import pipeline_key, start_protected

    key = pipeline_key(kms)
    start_protected(app, "prod", key)
    unprotect(app, "prod", "prod moves to its own key")
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    start_protected(app, "qa1", key)
    return key


def test_removed_run_no_drift_when_other_protects(app: App, kms: Any) -> None:
    key = protect_after_removal(app, kms)

    rows = app.status("prod", live=True)
    protection = rows[0]["live"]["protection"]

    assert denied_actions(kms, key) is not None
    assert rows[0]["live"]["drift"] == []
    assert protection["problems"] == []
    assert protection["shared_with"] == [
        f"run {latest_run(app, 'qa1').id} of environment qa1"
    ]
    assert live_exit_code(rows) == 0


def test_removed_run_line_names_other_run(app: App, kms: Any) -> None:
    key = protect_after_removal(app, kms)

    protection = app.status("prod", live=True)[0]["live"]["protection"]

    assert protection_lines("prod", protection) == [
        f"prod: no protection of this run on {key}; the statement there is that "
        f"of run {latest_run(app, 'qa1').id} of environment qa1"
    ]


def test_removed_run_reports_statement_no_run_records(app: App, kms: Any) -> None:
    """With no other run protecting the key, a statement put back by hand is reported."""
    key = protect_after_removal(app, kms)
    app.step(PROCEDURES["rotation"], "cancel", "qa1", {"reason": "wrong key"})
    assert denied_actions(kms, key) is None
    protect_by_hand(kms, key)

    protection = app.status("prod", live=True)[0]["live"]["protection"]

    assert any("does not record" in problem for problem in protection["problems"])


def test_statement_put_back_after_unprotect_exits_three(app: App, kms: Any) -> None:
    from test_protection_shared import pipeline_key, start_protected

    key = pipeline_key(kms)
    start_protected(app, "prod", key)
    unprotect(app, "prod", "testing")
    protect_by_hand(kms, key)

    rows = app.status("prod", live=True)

    assert rows[0]["live"]["protection"]["problems"]
    assert live_exit_code(rows) == 3
