"""Every rotation step is refused from every state other than its source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ROTATION_PARAMS,
    ROTATION_PATH,
    drive_rotation,
    non_refusal_events,
)

from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App
from kmsguard.workflow.errors import Refused

ROTATION = PROCEDURES["rotation"]
OPEN_STATES = [state for state, _ in ROTATION_PATH]
# Recovery steps load another run than the open one; tests/test_recovery_order.py
# covers them.
STEPS = [step for step in ROTATION.steps if not step.recovery]
WRONG_STATE_CASES = [
    (step.name, state)
    for step in STEPS
    for state in OPEN_STATES
    if state not in step.sources
]


@pytest.mark.parametrize(("step_name", "state"), WRONG_STATE_CASES)
def test_step_refused_from_wrong_state(
    app: App, kms: Any, step_name: str, state: str
) -> None:
    drive_rotation(app, kms, state)
    before = app.store.open_run("prod")
    assert before is not None
    events_before = non_refusal_events(app, before.id)
    refusals_before = len(app.store.run_events(before.id)) - len(events_before)

    with pytest.raises(Refused) as refused:
        app.step(ROTATION, step_name, "prod", dict(ROTATION_PARAMS[step_name]))

    after = app.store.get_run(before.id)
    assert after.state == before.state
    assert after.version == before.version
    assert non_refusal_events(app, before.id) == events_before
    refusals = [e for e in app.store.run_events(before.id) if e.outcome == "refused"]
    assert len(refusals) == refusals_before + 1
    assert refusals[-1].step == step_name
    assert [r.guard for r in refused.value.unmet] == ["state_order"]
    assert refused.value.exit_code == 3


@pytest.mark.parametrize("step_name", [s.name for s in STEPS])
def test_step_without_open_run_writes_nothing(
    app: App, db_path: Path, step_name: str
) -> None:
    from conftest import snapshot

    before = snapshot(db_path)

    with pytest.raises(Refused) as refused:
        app.step(ROTATION, step_name, "prod", dict(ROTATION_PARAMS[step_name]))

    assert "rotation start prod" in str(refused.value)
    assert snapshot(db_path) == before


def test_whole_rotation_reaches_completed(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "old_key_deletion_scheduled")
    run = app.store.open_run("prod")
    assert run is not None

    app.step(ROTATION, "complete", "prod", {})

    closed = app.store.get_run(run.id)
    assert closed.state == "completed"
    assert closed.closed_at is not None
    assert (
        kms.describe_key(KeyId=old_key)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    )
    assert (
        kms.describe_key(KeyId=closed.new_key_arn)["KeyMetadata"]["KeyState"]
        == "Enabled"
    )
    assert app.verify()["ok"] is True


def test_complete_allowed_after_disable_without_deletion(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "old_key_disabled")

    result = app.step(ROTATION, "complete", "prod", {})

    assert result.run.state == "completed"
    assert kms.describe_key(KeyId=old_key)["KeyMetadata"]["KeyState"] == "Disabled"


def test_cancel_before_disable_closes_run(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "support_contacted")

    result = app.step(ROTATION, "cancel", "prod", {"reason": "wrong key chosen"})

    assert result.run.state == "cancelled"
    assert result.run.closed_at is not None
    assert result.event.evidence["reason"] == "wrong key chosen"
    assert app.store.open_run("prod") is None


def test_disable_refused_before_confirmation(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "support_contacted")

    with pytest.raises(Refused):
        app.step(ROTATION, "disable_old_key", "prod", {})

    assert kms.describe_key(KeyId=old_key)["KeyMetadata"]["KeyState"] == "Enabled"


def test_confirm_refused_for_other_ticket(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "support_contacted")
    run = app.store.open_run("prod")
    assert run is not None

    with pytest.raises(Refused) as refused:
        app.step(
            ROTATION, "confirm", "prod", {"ticket": "SUP-999", "confirmed_by": "Sam"}
        )

    assert [r.guard for r in refused.value.unmet] == ["ticket_matches"]
    assert "SUP-1" in refused.value.unmet[0].reason
    assert app.store.get_run(run.id).state == "support_contacted"
    assert app.store.confirmations(run.id) == []


def test_disable_guard_rejects_confirmation_before_contact(app: App, kms: Any) -> None:
    """A confirmation recorded before the latest contact does not count."""
    drive_rotation(app, kms, "rotation_confirmed")
    run = app.store.open_run("prod")
    assert run is not None
    # Contact again directly in the store, as a recovery does: the old
    # confirmation now predates the latest contact.
    from kmsguard.workflow.records import NewEvent, RunChange, utc_now

    app.store.compare_and_set(
        run,
        RunChange(state="rotation_confirmed", updates={"contacted_at": utc_now()}),
        NewEvent(
            step="test_recontact",
            outcome="recorded",
            operator="test",
            from_state="rotation_confirmed",
            to_state="rotation_confirmed",
        ),
    )

    with pytest.raises(Refused) as refused:
        app.step(ROTATION, "disable_old_key", "prod", {})

    assert [r.guard for r in refused.value.unmet] == ["confirmation_recorded"]


def test_support_request_names_both_keys(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "policy_applied")
    run = app.store.open_run("prod")
    assert run is not None

    result = app.step(ROTATION, "contact_support", "prod", {"ticket": "SUP-7"})

    text = "\n".join(result.outcome.notes)
    assert old_key in text
    assert str(run.new_key_arn) in text
    assert "prod" in text
    assert "eu-west-1" in text
    assert result.run.ticket_id == "SUP-7"


def test_confirmation_recorded_with_recorder(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "rotation_confirmed")
    run = app.store.open_run("prod")
    assert run is not None

    [confirmation] = app.store.confirmations(run.id)

    assert confirmation.ticket_id == "SUP-1"
    assert confirmation.confirmed_by == "Sam (vendor support)"
    assert confirmation.message == "switch done"
    assert confirmation.recorded_by == "alice"
    assert confirmation.confirmed_at


def test_step_of_other_procedure_refused_and_recorded(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "support_contacted")
    run = app.store.open_run("prod")
    assert run is not None
    disablement = PROCEDURES["disablement"]

    with pytest.raises(Refused) as refused:
        app.step(disablement, "disable_key", "prod", {})

    after = app.store.get_run(run.id)
    last = app.store.run_events(run.id)[-1]
    assert [r.guard for r in refused.value.unmet] == ["procedure"]
    assert after.state == "support_contacted"
    assert after.version == run.version
    assert last.outcome == "refused"
    assert last.step == "disablement.disable_key"
    assert app.verify()["ok"] is True
