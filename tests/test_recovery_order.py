"""Every recovery step is refused from every state other than its sources.

A run whose key kmsguard disabled or scheduled for deletion is recoverable:
a recovery step in the wrong state of such a run is refused and recorded. A
run that retired no key is not recoverable, so the refusal writes nothing.
moto does not enforce KMS key states, so each test reads the key state back to
show that no AWS call changed the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import ROTATION_PATH, drive_rotation, snapshot
from procedure_drivers import DISABLEMENT_PATH, drive_disablement

from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App
from kmsguard.workflow.errors import Refused
from kmsguard.workflow.recovery import recover

PATHS = {
    "rotation": [state for state, _ in ROTATION_PATH],
    "disablement": [state for state, _ in DISABLEMENT_PATH if state != "completed"],
}
CASES = [
    (name, step.name, state)
    for name, states in PATHS.items()
    for step in PROCEDURES[name].steps
    if step.recovery
    for state in states
    if state not in step.sources
]


def drive(app: App, kms: Any, procedure: str, state: str) -> str:
    if procedure == "rotation":
        return drive_rotation(app, kms, state)
    return drive_disablement(app, kms, state)


def key_state(kms: Any, key: str) -> str:
    return str(kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"])


@pytest.mark.parametrize(("procedure", "step_name", "state"), CASES)
def test_recovery_step_refused_from_wrong_state(
    app: App, kms: Any, db_path: Path, procedure: str, step_name: str, state: str
) -> None:
    key = drive(app, kms, procedure, state)
    run = app.store.open_run("prod")
    assert run is not None
    retired = state in PROCEDURES[procedure].key_retired_states
    key_before = key_state(kms, key)
    before = snapshot(db_path)
    events_before = app.store.run_events(run.id)

    with pytest.raises(Refused) as refused:
        recover(app, step_name, "prod", {})

    after = app.store.get_run(run.id)
    assert after.state == run.state
    assert after.version == run.version
    assert key_state(kms, key) == key_before
    assert refused.value.exit_code == 3
    if retired:
        new_events = app.store.run_events(run.id)[len(events_before) :]
        assert [r.guard for r in refused.value.unmet] == ["state_order"]
        assert [(e.step, e.outcome) for e in new_events] == [(step_name, "refused")]
    else:
        assert [r.guard for r in refused.value.unmet] == ["recoverable_run"]
        assert snapshot(db_path) == before


def test_recovery_without_any_run_writes_nothing(app: App, db_path: Path) -> None:
    before = snapshot(db_path)

    with pytest.raises(Refused) as refused:
        recover(app, "re_enable", "prod", {})

    assert "nothing to recover" in str(refused.value)
    assert snapshot(db_path) == before


def test_recovery_steps_have_recover_commands() -> None:
    rotation = PROCEDURES["rotation"]

    commands = [
        rotation.command_for(step, "prod") for step in rotation.steps if step.recovery
    ]

    assert commands == [
        "kmsguard recover re-enable prod",
        "kmsguard recover cancel-deletion prod",
        "kmsguard recover cancel-deletion prod --enable",
    ]
