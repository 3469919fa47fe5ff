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
from kmsguard.workflow.app import App
from kmsguard.workflow.policy import PROTECTION_SID
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
