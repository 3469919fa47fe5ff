"""Recovery: undo kmsguard's disable or scheduled deletion of a key.

Recovery acts on the environment's most recent run whose key kmsguard disabled
or scheduled for deletion, whatever its procedure, open or completed. The run's
procedure supplies the recovery step, and the engine runs it like any step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.errors import GuardResult, Refused

if TYPE_CHECKING:
    from kmsguard.workflow.app import App
    from kmsguard.workflow.context import StepContext
    from kmsguard.workflow.engine import StepResult
    from kmsguard.workflow.records import Run

RE_ENABLE = "re_enable"
CANCEL_DELETION = "cancel_deletion"
CANCEL_DELETION_AND_ENABLE = "cancel_deletion_and_enable"


def recoverable_run(app: App, environment: str) -> Run:
    """Return the run recovery acts on.

    Raises:
        InvalidInput: the environment is unknown.
        Refused: no run of the environment has a key kmsguard retired, or a
            newer run is open.
    """
    app.environment(environment)
    # The engine's own search, so that this run is the one the step loads.
    run = app.engine._find_recoverable(environment)
    if run is not None:
        return run
    reason = (
        f"environment {environment!r} has no run whose key kmsguard disabled or "
        "scheduled for deletion since its newest open run, so there is nothing "
        "to recover"
    )
    raise Refused(
        f"{reason}; see `kmsguard history {environment}`",
        [
            GuardResult(
                "recoverable_run", False, reason, f"kmsguard status {environment}"
            )
        ],
    )


def recover(
    app: App,
    step_name: str,
    environment: str,
    params: dict[str, Any],
    confirm: Callable[[StepContext], bool] | None = None,
) -> StepResult:
    """Run a recovery step on the environment's recoverable run."""
    from kmsguard.states import PROCEDURES

    run = recoverable_run(app, environment)
    procedure = PROCEDURES[run.procedure]
    step = next((s for s in procedure.steps if s.name == step_name), None)
    if step is None or not step.recovery:
        raise Refused(
            f"the {procedure.name} procedure has no recovery step {step_name!r}",
            [GuardResult("recovery_step", False, f"no step {step_name!r}")],
        )
    return app.step(procedure, step_name, environment, params, confirm)
