"""Loading a step's run: the registered procedure and the run the step acts on.

A step runs on the environment's open run, or, for a recovery step, on the
newest run whose key kmsguard retired. A step aimed at another procedure's
open run is refused and recorded on that run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kmsguard.workflow.errors import GuardResult, InvalidInput, Refused
from kmsguard.workflow.procedure import Procedure, Step
from kmsguard.workflow.records import NewEvent, Run

if TYPE_CHECKING:
    from kmsguard.workflow.store import SqliteStore


def require_registered(procedure: Procedure) -> None:
    """Reject a procedure that is not the registered one of its name.

    The guards and the order a step runs under come from the procedure
    object, so a modified copy could disable a key from any state.

    Raises:
        InvalidInput: the procedure differs from PROCEDURES[procedure.name].
    """
    from kmsguard.states import PROCEDURES

    if PROCEDURES.get(procedure.name) != procedure:
        raise InvalidInput(
            f"procedure {procedure.name!r} is not one of kmsguard's registered "
            f"procedures ({', '.join(sorted(PROCEDURES))}); pass "
            "kmsguard.states.PROCEDURES[NAME] unchanged"
        )


def no_open_run(procedure: Procedure, step: Step, env_name: str) -> Refused:
    """Return the refusal of a step on an environment with no run to act on."""
    return Refused(
        f"{env_name!r} has no open {procedure.name} run, so `{step.command}` "
        f"cannot run; start one with `{procedure.command_for(procedure.start, env_name)}`",
        [
            GuardResult(
                "open_run",
                False,
                "no open run",
                procedure.command_for(procedure.start, env_name),
            )
        ],
    )


def find_recoverable(store: SqliteStore, env_name: str) -> Run | None:
    """Return the newest run whose key kmsguard retired, unless a newer run is open."""
    for run in reversed(store.runs(env_name)):
        if run.data.get("key_retired"):
            return run
        if run.closed_at is None:
            break
    return None


def refuse_other_procedure(
    store: SqliteStore, operator: str, procedure: Procedure, step: Step, run: Run
) -> None:
    """Record and raise the refusal of a step aimed at another procedure's run."""
    env_name = run.environment
    unmet = GuardResult(
        "procedure",
        False,
        f"open run is a {run.procedure} run",
        f"kmsguard status {env_name}",
    )
    message = (
        f"{env_name!r} has an open {run.procedure} run in state {run.state}, "
        f"not a {procedure.name} run; use `kmsguard {run.procedure} ...` or "
        f"cancel it with `kmsguard {run.procedure} cancel {env_name} --reason TEXT`"
    )
    # The step belongs to another procedure, so its name carries that
    # procedure's name to keep the run's own step names unambiguous.
    event = NewEvent(
        step=f"{procedure.name}.{step.name}",
        outcome="refused",
        operator=operator,
        from_state=run.state,
        to_state=run.state,
        message=message,
        evidence={"guards": [unmet.to_dict()]},
    )
    store.append_event(run, env_name, event)
    raise Refused(message, [unmet])
