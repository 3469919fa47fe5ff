"""Every disablement step is refused from every state other than its source.

moto does not enforce KMS key states, so each test reads the key state back to
show that a refused step made no AWS call that changes the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ROTATION_PARAMS,
    create_key,
    drive_rotation,
    non_refusal_events,
    snapshot,
)
from procedure_drivers import (
    DISABLEMENT,
    DISABLEMENT_PARAMS,
    DISABLEMENT_PATH,
    drive_disablement,
)

from kmsguard.workflow.app import App
from kmsguard.workflow.errors import Conflict, Refused

OPEN_STATES = [state for state, _ in DISABLEMENT_PATH if state != "completed"]
STEPS = [step for step in DISABLEMENT.steps if not step.recovery]
WRONG_STATE_CASES = [
    (step.name, state)
    for step in STEPS
    for state in OPEN_STATES
    if state not in step.sources
]


def key_state(kms: Any, key: str) -> str:
    return str(kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"])


@pytest.mark.parametrize(("step_name", "state"), WRONG_STATE_CASES)
def test_step_refused_from_wrong_state(
    app: App, kms: Any, step_name: str, state: str
) -> None:
    key = drive_disablement(app, kms, state)
    before = app.store.open_run("prod")
    assert before is not None
    key_state_before = key_state(kms, key)
    events_before = non_refusal_events(app, before.id)
    refusals_before = len(app.store.run_events(before.id)) - len(events_before)

    with pytest.raises(Refused) as refused:
        app.step(DISABLEMENT, step_name, "prod", dict(DISABLEMENT_PARAMS[step_name]))

    after = app.store.get_run(before.id)
    assert after.state == before.state
    assert after.version == before.version
    assert non_refusal_events(app, before.id) == events_before
    refusals = [e for e in app.store.run_events(before.id) if e.outcome == "refused"]
    assert len(refusals) == refusals_before + 1
    assert refusals[-1].step == step_name
    assert [r.guard for r in refused.value.unmet] == ["state_order"]
    assert refused.value.exit_code == 3
    assert key_state(kms, key) == key_state_before


@pytest.mark.parametrize("step_name", [s.name for s in STEPS])
def test_step_without_open_run_writes_nothing(
    app: App, db_path: Path, step_name: str
) -> None:
    before = snapshot(db_path)

    with pytest.raises(Refused) as refused:
        app.step(DISABLEMENT, step_name, "prod", dict(DISABLEMENT_PARAMS[step_name]))

    assert "disablement start prod --key KEY" in str(refused.value)
    assert snapshot(db_path) == before


def test_whole_disablement_reaches_completed(app: App, kms: Any) -> None:
    key = drive_disablement(app, kms, "completed")

    run = app.store.runs("prod")[-1]

    assert run.state == "completed"
    assert run.closed_at is not None
    assert run.current_key_arn == key
    assert key_state(kms, key) == "PendingDeletion"
    assert app.verify()["ok"] is True


def test_complete_allowed_after_disable_without_deletion(app: App, kms: Any) -> None:
    key = drive_disablement(app, kms, "key_disabled")

    result = app.step(DISABLEMENT, "complete", "prod", {})

    assert result.run.state == "completed"
    assert key_state(kms, key) == "Disabled"


def test_disable_refused_before_confirmation(app: App, kms: Any) -> None:
    key = drive_disablement(app, kms, "removal_requested")

    with pytest.raises(Refused):
        app.step(DISABLEMENT, "disable_key", "prod", {})

    assert key_state(kms, key) == "Enabled"


def test_deletion_refused_before_disable(app: App, kms: Any) -> None:
    key = drive_disablement(app, kms, "removal_confirmed")

    with pytest.raises(Refused):
        app.step(DISABLEMENT, "schedule_deletion", "prod", {"window_days": 7})

    assert key_state(kms, key) == "Enabled"


def test_deletion_refused_when_key_enabled_outside(app: App, kms: Any) -> None:
    key = drive_disablement(app, kms, "key_disabled")
    kms.enable_key(KeyId=key.split("/")[-1])

    with pytest.raises(Refused) as refused:
        app.step(
            DISABLEMENT,
            "schedule_deletion",
            "prod",
            dict(DISABLEMENT_PARAMS["schedule_deletion"]),
        )

    # Either the engine's drift check or the step's own guard reports it.
    assert "reads Enabled" in str(refused.value)
    assert key_state(kms, key) == "Enabled"


@pytest.mark.parametrize("state", ["started", "removal_requested", "removal_confirmed"])
def test_cancel_allowed_before_disable(app: App, kms: Any, state: str) -> None:
    key = drive_disablement(app, kms, state)

    result = app.step(DISABLEMENT, "cancel", "prod", {"reason": "keep the key"})

    assert result.run.state == "cancelled"
    assert app.store.open_run("prod") is None
    assert key_state(kms, key) == "Enabled"


def test_request_removal_prints_request(app: App, kms: Any) -> None:
    key = drive_disablement(app, kms, "started")

    result = app.step(DISABLEMENT, "request_removal", "prod", {"ticket": "SUP-20"})

    text = "\n".join(result.outcome.notes)
    assert "ticket SUP-20" in text
    assert key in text
    assert "Environment: prod" in text
    assert "Region: eu-west-1" in text
    assert "no longer references the key" in text
    assert result.run.ticket_id == "SUP-20"


def test_next_hints_read_as_commands(app: App, kms: Any) -> None:
    drive_disablement(app, kms, "started")
    hints = []
    for _, step in DISABLEMENT_PATH[1:5]:
        assert step is not None
        result = app.step(DISABLEMENT, step, "prod", dict(DISABLEMENT_PARAMS[step]))
        hints.append(result.next_commands[0])

    assert hints == [
        "kmsguard disablement confirm prod --ticket SUP-20 --confirmed-by NAME",
        "kmsguard disablement disable-key prod",
        "kmsguard disablement schedule-deletion prod --window-days 30",
        "kmsguard disablement complete prod",
    ]


def test_start_refused_while_rotation_open(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "support_contacted")
    other = create_key(kms, Description="other key")
    before = snapshot(db_path)

    with pytest.raises(Conflict) as conflict:
        app.start(DISABLEMENT, "prod", {"key": other})

    assert conflict.value.exit_code == 3
    assert "already has an open rotation run" in str(conflict.value)
    assert snapshot(db_path) == before


def test_rotation_step_refused_on_disablement_run(app: App, kms: Any) -> None:
    from kmsguard.states import PROCEDURES

    drive_disablement(app, kms, "removal_requested")

    with pytest.raises(Refused) as refused:
        app.step(
            PROCEDURES["rotation"],
            "confirm",
            "prod",
            dict(ROTATION_PARAMS["confirm"]),
        )

    assert "not a rotation run" in str(refused.value)
