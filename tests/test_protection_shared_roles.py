"""Tests of the break-glass roles of a protection statement that two runs share.

A key has one protection statement, so a second environment that protects
the key must give the roles the statement already exempts for the other run.
Other roles are refused before anything is written. KMS runs in moto in
process and the database is a real SQLite file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import OWN_ACCOUNT, PIPELINE_ACCOUNT, REGION, snapshot
from test_protection_shared import (
    BREAK_GLASS,
    latest_run,
    pipeline_key,
    start_protected,
)

from kmsguard.commands.live import live_exit_code
from kmsguard.states.rotation import ROTATION
from kmsguard.workflow.app import App
from kmsguard.workflow.errors import Refused
from kmsguard.workflow.protection import protect, start_run, unprotect
from kmsguard.workflow.protection_policy import protection_roles

OTHER_ROLE = f"arn:aws:iam::{OWN_ACCOUNT}:role/OtherBreakGlass"


@pytest.fixture(autouse=True)
def short_propagation_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto applies a policy at once, so a read back that differs is final.
    monkeypatch.setenv("KMSGUARD_POLICY_PROPAGATION_SECONDS", "0")


def live_roles(kms: Any, key: str) -> list[str]:
    text = kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]
    return sorted(protection_roles(json.loads(text)))


def qa1_protects(app: App, kms: Any, roles: list[str]) -> str:
    """Start a protected qa1 run and an unprotected prod run on one key."""
    key = pipeline_key(kms)
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    params = {"key": key, "protect": True, "break_glass_roles": roles}
    start_run(app, ROTATION, "qa1", params)
    start_run(app, ROTATION, "prod", {"key": key})
    return key


def refusal_of_protect(app: App, roles: list[str]) -> Refused:
    with pytest.raises(Refused) as caught:
        protect(app, "prod", roles)
    return caught.value


# protect with other roles


def test_protect_other_roles_refused(app: App, kms: Any) -> None:
    qa1_protects(app, kms, [BREAK_GLASS])

    refusal = refusal_of_protect(app, [OTHER_ROLE])

    assert refusal.exit_code == 3
    assert refusal.unmet[0].guard == "shared_protection_roles"


def test_protect_other_roles_message_names_run(app: App, kms: Any) -> None:
    qa1_protects(app, kms, [BREAK_GLASS])
    qa1 = latest_run(app, "qa1")

    message = str(refusal_of_protect(app, [OTHER_ROLE]))

    assert f"run {qa1.id} of environment qa1" in message
    assert BREAK_GLASS in message
    assert OTHER_ROLE in message
    assert f"kmsguard protect prod --break-glass-role {BREAK_GLASS}" in message
    assert "kmsguard unprotect qa1 --reason TEXT" in message


def test_protect_other_roles_writes_nothing(app: App, kms: Any, db_path: Path) -> None:
    key = qa1_protects(app, kms, [BREAK_GLASS])
    before = snapshot(db_path)

    refusal_of_protect(app, [OTHER_ROLE])

    assert snapshot(db_path) == before
    assert live_roles(kms, key) == [BREAK_GLASS]


def test_protect_extra_role_refused(app: App, kms: Any) -> None:
    qa1_protects(app, kms, [BREAK_GLASS])

    refusal = refusal_of_protect(app, [BREAK_GLASS, OTHER_ROLE])

    assert refusal.unmet[0].guard == "shared_protection_roles"


def test_protect_same_roles_any_order_shared(app: App, kms: Any) -> None:
    key = qa1_protects(app, kms, [BREAK_GLASS, OTHER_ROLE])

    result = protect(app, "prod", [OTHER_ROLE, BREAK_GLASS])

    assert result.event.outcome == "applied"
    assert live_roles(kms, key) == sorted([BREAK_GLASS, OTHER_ROLE])


def test_same_roles_other_run_no_drift(app: App, kms: Any) -> None:
    qa1_protects(app, kms, [BREAK_GLASS, OTHER_ROLE])
    protect(app, "prod", [OTHER_ROLE, BREAK_GLASS])

    rows = app.status("qa1", live=True)

    assert rows[0]["live"]["drift"] == []
    assert rows[0]["live"]["protection"]["problems"] == []
    assert live_exit_code(rows) == 0


def test_protect_other_roles_after_release_allowed(app: App, kms: Any) -> None:
    """A run that gave the statement up with unprotect no longer owns its roles."""
    key = qa1_protects(app, kms, [BREAK_GLASS])
    unprotect(app, "qa1", "qa1 moves to its own key")

    protect(app, "prod", [OTHER_ROLE])

    assert live_roles(kms, key) == [OTHER_ROLE]


# start --protect with other roles


def start_prod_refused(app: App, key: str, roles: list[str]) -> Refused:
    params = {"key": key, "protect": True, "break_glass_roles": roles}
    with pytest.raises(Refused) as caught:
        start_run(app, ROTATION, "prod", params)
    return caught.value


def test_start_protect_other_roles_refused(app: App, kms: Any) -> None:
    key = pipeline_key(kms)
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    qa1 = start_protected(app, "qa1", key)

    refusal = start_prod_refused(app, key, [OTHER_ROLE])

    assert refusal.unmet[0].guard == "shared_protection_roles"
    assert f"run {qa1.id} of environment qa1" in str(refusal)


def test_start_protect_other_roles_writes_nothing(
    app: App, kms: Any, db_path: Path
) -> None:
    key = pipeline_key(kms)
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    start_protected(app, "qa1", key)
    before = snapshot(db_path)

    start_prod_refused(app, key, [OTHER_ROLE])

    assert snapshot(db_path) == before
    assert app.store.open_run("prod") is None
    assert live_roles(kms, key) == [BREAK_GLASS]


def test_start_protect_same_roles_shares_statement(app: App, kms: Any) -> None:
    key = pipeline_key(kms)
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    start_protected(app, "qa1", key)

    prod = start_protected(app, "prod", key)

    assert prod.data["protection"]["in_place"] is True
    assert live_roles(kms, key) == [BREAK_GLASS]
