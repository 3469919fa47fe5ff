"""The state machines built from procedure data carry every guard."""

from __future__ import annotations

import pytest
from transitions import MachineError

from kmsguard.states import PROCEDURES
from kmsguard.workflow.machine import build_machine, fire


@pytest.mark.parametrize("name", sorted(PROCEDURES))
def test_machine_has_no_auto_transitions(name: str) -> None:
    procedure = PROCEDURES[name]
    machine, model = build_machine(procedure)

    triggers = set(machine.events)

    assert not [t for t in triggers if t.startswith("to_")]
    assert triggers == {step.name for step in procedure.steps}
    assert not hasattr(model, "to_completed")


@pytest.mark.parametrize("name", sorted(PROCEDURES))
def test_unknown_stored_state_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        build_machine(PROCEDURES[name], "not_a_state")


def test_only_transition_into_disabled_needs_confirmation() -> None:
    rotation = PROCEDURES["rotation"]

    into_disabled = [
        s for s in rotation.steps if s.dest == "old_key_disabled" and not s.recovery
    ]

    assert [s.name for s in into_disabled] == ["disable_old_key"]
    assert "confirmation_recorded" in into_disabled[0].guards


def test_deletion_only_from_disabled() -> None:
    rotation = PROCEDURES["rotation"]

    into_deletion = [
        s for s in rotation.steps if s.dest == "old_key_deletion_scheduled"
    ]

    assert [s.sources for s in into_deletion] == [("old_key_disabled",)]


def test_fire_fails_when_guard_not_evaluated() -> None:
    rotation = PROCEDURES["rotation"]
    step = rotation.step("disable_old_key")

    with pytest.raises(MachineError):
        fire(rotation, "rotation_confirmed", step, {})


def test_fire_moves_with_guards_passed() -> None:
    rotation = PROCEDURES["rotation"]
    step = rotation.step("disable_old_key")

    passed = {"confirmation_recorded": True, "key_out_of_use": True}

    assert fire(rotation, "rotation_confirmed", step, passed) == "old_key_disabled"


def test_fire_rejects_trigger_from_wrong_state() -> None:
    rotation = PROCEDURES["rotation"]
    step = rotation.step("disable_old_key")

    with pytest.raises(MachineError):
        fire(rotation, "support_contacted", step, {"confirmation_recorded": True})
