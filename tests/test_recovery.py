"""Recovery: re-enable a disabled key, cancel a scheduled deletion, reopen runs.

moto accepts EnableKey on a key pending deletion, which AWS rejects, so the
tests read the key state back to show that kmsguard never tried it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import ROTATION_PARAMS, drive_rotation, snapshot
from procedure_drivers import DISABLEMENT, DISABLEMENT_PARAMS, drive_disablement

from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App
from kmsguard.workflow.errors import Aborted, Refused
from kmsguard.workflow.recovery import (
    CANCEL_DELETION,
    CANCEL_DELETION_AND_ENABLE,
    RE_ENABLE,
    recover,
)

ROTATION = PROCEDURES["rotation"]


def key_state(kms: Any, key: str) -> str:
    return str(kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"])


def completed_rotation(app: App, kms: Any, last_state: str) -> str:
    key = drive_rotation(app, kms, last_state)
    app.step(ROTATION, "complete", "prod", {})
    return key


def test_cancel_deletion_leaves_key_disabled(app: App, kms: Any) -> None:
    key = drive_rotation(app, kms, "old_key_deletion_scheduled")

    result = recover(app, CANCEL_DELETION, "prod", {})

    assert key_state(kms, key) == "Disabled"
    assert result.run.state == "old_key_disabled"
    assert result.run.data["key_retired"] is True
    assert result.run.data["deletion_date"] is None
    notes = "\n".join(result.outcome.notes)
    assert "now Disabled" in notes
    assert "still fail" in notes


def test_cancel_deletion_with_enable_ends_enabled(app: App, kms: Any) -> None:
    key = drive_rotation(app, kms, "old_key_deletion_scheduled")

    result = recover(app, CANCEL_DELETION_AND_ENABLE, "prod", {})

    assert key_state(kms, key) == "Enabled"
    assert result.run.state == "support_contacted"
    assert result.run.data["key_retired"] is False


def test_re_enable_returns_run_to_waiting_for_support(app: App, kms: Any) -> None:
    key = drive_rotation(app, kms, "old_key_disabled")

    result = recover(app, RE_ENABLE, "prod", {})

    assert key_state(kms, key) == "Enabled"
    assert result.run.state == "support_contacted"
    assert result.run.data["key_retired"] is False
    assert result.next_commands == [
        "kmsguard rotation confirm prod --ticket SUP-1 --confirmed-by NAME"
    ]


def test_disable_after_re_enable_needs_new_confirmation(app: App, kms: Any) -> None:
    key = drive_rotation(app, kms, "old_key_disabled")
    run = app.store.open_run("prod")
    assert run is not None
    [old_confirmation] = app.store.confirmations(run.id)
    recover(app, RE_ENABLE, "prod", {})

    with pytest.raises(Refused):
        app.step(ROTATION, "disable_old_key", "prod", {})

    assert key_state(kms, key) == "Enabled"
    stale = dict(ROTATION_PARAMS["confirm"], confirmed_at=old_confirmation.confirmed_at)
    with pytest.raises(Refused) as refused:
        app.step(ROTATION, "confirm", "prod", stale)
    assert [r.guard for r in refused.value.unmet] == ["confirmation_after_contact"]

    app.step(ROTATION, "confirm", "prod", dict(ROTATION_PARAMS["confirm"]))
    result = app.step(ROTATION, "disable_old_key", "prod", {})

    assert result.run.state == "old_key_disabled"
    assert key_state(kms, key) == "Disabled"
    assert len(app.store.confirmations(run.id)) == 2


def test_re_enable_sets_contact_after_old_confirmation(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "old_key_disabled")
    run = app.store.open_run("prod")
    assert run is not None
    [confirmation] = app.store.confirmations(run.id)

    result = recover(app, RE_ENABLE, "prod", {})

    assert result.run.contacted_at is not None
    assert result.run.contacted_at > confirmation.recorded_at


def test_completed_run_reopened_by_cancel_deletion(app: App, kms: Any) -> None:
    key = completed_rotation(app, kms, "old_key_deletion_scheduled")
    run = app.store.runs("prod")[-1]
    assert run.closed_at is not None

    result = recover(app, CANCEL_DELETION, "prod", {})

    assert result.run.id == run.id
    assert result.run.closed_at is None
    assert result.run.state == "old_key_disabled"
    assert result.event.from_state == "completed"
    assert result.event.evidence["reopened"]["state"] == "completed"
    assert "reopened" in result.event.message
    assert app.store.open_run("prod") == result.run
    assert key_state(kms, key) == "Disabled"


def test_completed_run_reopened_by_re_enable(app: App, kms: Any) -> None:
    key = completed_rotation(app, kms, "old_key_disabled")

    result = recover(app, RE_ENABLE, "prod", {})

    assert result.run.state == "support_contacted"
    assert result.run.closed_at is None
    assert result.event.evidence["reopened"]["run_id"] == result.run.id
    assert key_state(kms, key) == "Enabled"


def test_re_enable_refused_for_key_pending_deletion(app: App, kms: Any) -> None:
    key = completed_rotation(app, kms, "old_key_deletion_scheduled")
    run = app.store.runs("prod")[-1]

    with pytest.raises(Refused) as refused:
        recover(app, RE_ENABLE, "prod", {})

    assert [r.guard for r in refused.value.unmet] == ["key_can_be_enabled"]
    assert refused.value.unmet[0].next == (
        "kmsguard recover cancel-deletion prod --enable"
    )
    assert key_state(kms, key) == "PendingDeletion"
    assert app.store.get_run(run.id).state == "completed"
    assert app.store.run_events(run.id)[-1].outcome == "refused"


def test_cancel_deletion_refused_without_deletion(app: App, kms: Any) -> None:
    key = completed_rotation(app, kms, "old_key_disabled")

    with pytest.raises(Refused) as refused:
        recover(app, CANCEL_DELETION_AND_ENABLE, "prod", {})

    assert [r.guard for r in refused.value.unmet] == ["key_pending_deletion"]
    assert refused.value.unmet[0].next == "kmsguard recover re-enable prod"
    assert key_state(kms, key) == "Disabled"


def test_recovery_refused_while_newer_run_open(
    app: App, kms: Any, db_path: Path
) -> None:
    key = drive_disablement(app, kms, "completed")
    app.start(PROCEDURES["onboarding"], "prod", {})
    before = snapshot(db_path)

    with pytest.raises(Refused) as refused:
        recover(app, CANCEL_DELETION, "prod", {})

    assert [r.guard for r in refused.value.unmet] == ["recoverable_run"]
    assert snapshot(db_path) == before
    assert key_state(kms, key) == "PendingDeletion"


def test_recovery_declined_writes_nothing(app: App, kms: Any, db_path: Path) -> None:
    key = drive_rotation(app, kms, "old_key_disabled")
    before = snapshot(db_path)

    with pytest.raises(Aborted):
        recover(app, RE_ENABLE, "prod", {}, confirm=lambda ctx: False)

    assert snapshot(db_path) == before
    assert key_state(kms, key) == "Disabled"


def test_disablement_re_enable_waits_for_removal_confirmation(
    app: App, kms: Any
) -> None:
    key = drive_disablement(app, kms, "key_disabled")

    result = recover(app, RE_ENABLE, "prod", {})

    assert result.run.state == "removal_requested"
    assert key_state(kms, key) == "Enabled"
    with pytest.raises(Refused):
        app.step(DISABLEMENT, "disable_key", "prod", {})
    assert key_state(kms, key) == "Enabled"


def test_disablement_completed_recovered_with_enable(app: App, kms: Any) -> None:
    key = drive_disablement(app, kms, "completed")

    result = recover(app, CANCEL_DELETION_AND_ENABLE, "prod", {})

    assert result.run.state == "removal_requested"
    assert result.run.closed_at is None
    assert key_state(kms, key) == "Enabled"
    app.step(DISABLEMENT, "confirm", "prod", dict(DISABLEMENT_PARAMS["confirm"]))
    again = app.step(DISABLEMENT, "disable_key", "prod", {})
    assert again.run.state == "key_disabled"
    assert key_state(kms, key) == "Disabled"


def test_recovery_recorded_in_history(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "old_key_deletion_scheduled")

    recover(app, CANCEL_DELETION, "prod", {})
    recover(app, RE_ENABLE, "prod", {})

    steps = [(e["step"], e["outcome"]) for e in app.history("prod")]
    assert ("cancel_deletion", "applied") in steps
    assert ("re_enable", "applied") in steps
    assert ("re_enable", "intent") in steps
    assert app.verify()["ok"] is True


def test_recover_picks_most_recent_retired_run(app: App, kms: Any) -> None:
    first = completed_rotation(app, kms, "old_key_disabled")
    second = drive_disablement(app, kms, "key_disabled")
    app.step(DISABLEMENT, "complete", "prod", {})

    result = recover(app, RE_ENABLE, "prod", {})

    assert result.run.procedure == "disablement"
    assert key_state(kms, second) == "Enabled"
    assert key_state(kms, first) == "Disabled"


def test_confirmation_time_before_recovery_rejected(app: App, kms: Any) -> None:
    drive_disablement(app, kms, "key_disabled")
    recover(app, RE_ENABLE, "prod", {})
    earlier = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

    with pytest.raises(Refused) as refused:
        app.step(
            DISABLEMENT,
            "confirm",
            "prod",
            dict(DISABLEMENT_PARAMS["confirm"], confirmed_at=earlier),
        )

    assert [r.guard for r in refused.value.unmet] == ["confirmation_after_contact"]


def test_re_enable_refused_before_cancel_deletion_names_it(app: App, kms: Any) -> None:
    drive_disablement(app, kms, "key_deletion_scheduled")

    with pytest.raises(Refused) as refused:
        recover(app, RE_ENABLE, "prod", {})

    [unmet] = refused.value.unmet
    assert unmet.guard == "state_order"
    assert unmet.next == "kmsguard recover cancel-deletion prod --enable"
