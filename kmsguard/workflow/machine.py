"""State machines built from procedure data with the `transitions` library.

Every machine is built with `auto_transitions=False`, so no unguarded
`to_<state>()` trigger exists, and every step carries its guards as
conditions. A condition reads the guard result the engine computed; a guard
that was not evaluated counts as failed.
"""

from __future__ import annotations

from typing import Any

from transitions import Machine, MachineError

from kmsguard.workflow.procedure import Procedure, Step


class RunModel:
    """The model a machine drives: the run's state plus the guard results."""

    state: str

    def __init__(self) -> None:
        self.guard_results: dict[str, bool] = {}

    def guard_passed(self, name: str) -> bool:
        return self.guard_results.get(name) is True


def _guard_method(name: str) -> Any:
    def check(self: RunModel) -> bool:
        return self.guard_passed(name)

    check.__name__ = name
    return check


def model_class(procedure: Procedure) -> type[RunModel]:
    """Build a model class with one condition method per guard name."""
    names = {guard for step in procedure.steps for guard in step.guards}
    methods = {name: _guard_method(name) for name in sorted(names)}
    return type(f"{procedure.name.title()}Run", (RunModel,), methods)


def transition_table(procedure: Procedure) -> list[dict[str, Any]]:
    table = []
    for step in procedure.steps:
        table.append(
            {
                "trigger": step.name,
                "source": list(step.sources),
                "dest": step.dest,
                "conditions": list(step.guards),
            }
        )
    return table


def build_machine(
    procedure: Procedure, state: str | None = None
) -> tuple[Machine, RunModel]:
    """Build a guarded machine and its model, set to `state` (default: initial).

    Raises:
        ValueError: `state` is not a state of the procedure.
    """
    model = model_class(procedure)()
    machine = Machine(
        model=None,
        states=list(procedure.states),
        transitions=transition_table(procedure),
        initial=procedure.initial,
        auto_transitions=False,
        ordered_transitions=False,
        ignore_invalid_triggers=False,
    )
    # add_model rejects an unknown initial state, unlike Machine(initial=...).
    machine.add_model(model, initial=state or procedure.initial)
    return machine, model


def fire(procedure: Procedure, state: str, step: Step, results: dict[str, bool]) -> str:
    """Fire a step's trigger from `state` with the given guard results.

    Returns the new state, or raises MachineError when the step is not valid
    from `state` or a guard did not pass.
    """
    _, model = build_machine(procedure, state)
    model.guard_results = dict(results)
    if not getattr(model, step.name)():
        raise MachineError(f"guards of {step.name} did not pass in state {state}")
    return model.state


def valid_triggers(procedure: Procedure, state: str) -> list[str]:
    machine, _ = build_machine(procedure, state)
    return list(machine.get_triggers(state))
