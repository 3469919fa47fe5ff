"""Every onboarding step is refused from every state other than its source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import non_refusal_events, snapshot
from procedure_drivers import (
    ONBOARDING,
    ONBOARDING_PARAMS,
    ONBOARDING_PATH,
    drive_onboarding,
)

from kmsguard.workflow.app import App
from kmsguard.workflow.errors import InvalidInput, Refused

OPEN_STATES = [state for state, _ in ONBOARDING_PATH]
WRONG_STATE_CASES = [
    (step.name, state)
    for step in ONBOARDING.steps
    for state in OPEN_STATES
    if state not in step.sources
]


@pytest.mark.parametrize(("step_name", "state"), WRONG_STATE_CASES)
def test_step_refused_from_wrong_state(app: App, step_name: str, state: str) -> None:
    drive_onboarding(app, state)
    before = app.store.open_run("prod")
    assert before is not None
    events_before = non_refusal_events(app, before.id)
    refusals_before = len(app.store.run_events(before.id)) - len(events_before)

    with pytest.raises(Refused) as refused:
        app.step(ONBOARDING, step_name, "prod", dict(ONBOARDING_PARAMS[step_name]))

    after = app.store.get_run(before.id)
    assert after.state == before.state
    assert after.version == before.version
    assert non_refusal_events(app, before.id) == events_before
    refusals = [e for e in app.store.run_events(before.id) if e.outcome == "refused"]
    assert len(refusals) == refusals_before + 1
    assert refusals[-1].step == step_name
    assert [r.guard for r in refused.value.unmet] == ["state_order"]
    assert refused.value.exit_code == 3


@pytest.mark.parametrize("step_name", [s.name for s in ONBOARDING.steps])
def test_step_without_open_run_writes_nothing(
    app: App, db_path: Path, step_name: str
) -> None:
    before = snapshot(db_path)

    with pytest.raises(Refused) as refused:
        app.step(ONBOARDING, step_name, "prod", dict(ONBOARDING_PARAMS[step_name]))

    assert "onboarding start prod" in str(refused.value)
    assert snapshot(db_path) == before


def test_whole_onboarding_reaches_completed(app: App, kms: Any) -> None:
    drive_onboarding(app, "verified")
    run = app.store.open_run("prod")
    assert run is not None

    result = app.step(ONBOARDING, "complete", "prod", {})

    assert result.run.state == "completed"
    assert result.run.closed_at is not None
    key = kms.describe_key(KeyId=run.new_key_arn)["KeyMetadata"]
    assert key["KeyState"] == "Enabled"
    assert app.verify()["ok"] is True


@pytest.mark.parametrize("state", OPEN_STATES)
def test_cancel_allowed_before_completed(app: App, state: str) -> None:
    drive_onboarding(app, state)

    result = app.step(ONBOARDING, "cancel", "prod", {"reason": "not this quarter"})

    assert result.run.state == "cancelled"
    assert app.store.open_run("prod") is None


def test_next_hint_after_each_step_reads_as_command(app: App) -> None:
    app.start(ONBOARDING, "prod", {})
    hints = []
    for _, step in ONBOARDING_PATH[1:5]:
        assert step is not None
        result = app.step(ONBOARDING, step, "prod", dict(ONBOARDING_PARAMS[step]))
        hints.append(result.next_commands[0])

    assert hints == [
        "kmsguard onboarding apply-policy prod",
        "kmsguard onboarding share prod --ticket ID",
        "kmsguard onboarding confirm prod --ticket SUP-10 --confirmed-by NAME",
        "kmsguard onboarding verify prod",
    ]


def test_share_prints_what_support_needs(app: App) -> None:
    drive_onboarding(app, "policy_applied")
    run = app.store.open_run("prod")
    assert run is not None

    result = app.step(
        ONBOARDING, "share", "prod", {"ticket": "SUP-3", "components": "s3,kinesis"}
    )

    text = "\n".join(result.outcome.notes)
    assert str(run.new_key_arn) in text
    assert "Environment: prod" in text
    assert "Cross-account access: configured" in text
    assert "210987654321" in text
    assert "S3 buckets, Kinesis streams" in text
    assert "SQS" not in text
    assert result.run.data["components"] == ["s3", "kinesis"]
    assert result.run.ticket_id == "SUP-3"


def test_share_all_components_by_default(app: App) -> None:
    drive_onboarding(app, "policy_applied")

    result = app.step(ONBOARDING, "share", "prod", {"ticket": "SUP-3"})

    assert result.run.data["components"] == ["s3", "kinesis", "sqs"]
    assert "all pipeline components" in "\n".join(result.outcome.notes)


@pytest.mark.parametrize("components", ["", "s3,ebs", "everything", ","])
def test_share_rejects_bad_components(app: App, db_path: Path, components: str) -> None:
    drive_onboarding(app, "policy_applied")
    before = snapshot(db_path)

    with pytest.raises(InvalidInput) as invalid:
        app.step(
            ONBOARDING, "share", "prod", {"ticket": "SUP-3", "components": components}
        )

    assert "--components" in str(invalid.value)
    assert invalid.value.exit_code == 2
    assert snapshot(db_path) == before


def test_confirm_refused_for_other_ticket(app: App) -> None:
    drive_onboarding(app, "shared_with_support")
    run = app.store.open_run("prod")
    assert run is not None

    with pytest.raises(Refused) as refused:
        app.step(
            ONBOARDING, "confirm", "prod", {"ticket": "SUP-999", "confirmed_by": "Sam"}
        )

    assert [r.guard for r in refused.value.unmet] == ["ticket_matches"]
    assert app.store.get_run(run.id).state == "shared_with_support"
    assert app.store.confirmations(run.id) == []


def test_new_key_adopts_existing_key(app: App, kms: Any) -> None:
    from conftest import create_key

    key = create_key(kms, Description="made by the security team")
    app.start(ONBOARDING, "prod", {})

    result = app.step(ONBOARDING, "new_key", "prod", {"key": key})

    assert result.run.new_key_arn == key
    assert result.run.state == "key_ready"
