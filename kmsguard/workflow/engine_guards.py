"""A step's checks before it writes: state order, guards, overrides and drift.

An unmet check raises Refused and, once the step has a run, is recorded on it
as a "refused" event. An unmet guard whose override parameter is given a
reason does not stop the step, and the override is recorded on the applied
event.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kmsguard.workflow import machine
from kmsguard.workflow.context import StepContext
from kmsguard.workflow.errors import GuardResult, KmsguardError, Refused
from kmsguard.workflow.procedure import Procedure, Step
from kmsguard.workflow.records import NewEvent, Run

if TYPE_CHECKING:
    from kmsguard.workflow.store import SqliteStore

log = logging.getLogger(__name__)


def guard_registry() -> dict[str, Any]:
    from kmsguard.workflow.guards import GUARDS

    return GUARDS


def next_hint(procedure: Procedure, run: Run) -> str:
    """Return the command that moves the run on from its state, or ""."""
    return procedure.next_command(run.state, run.environment, run.ticket_id)


def wrong_state(procedure: Procedure, step: Step, run: Run) -> Refused:
    """Return the refusal of a step that cannot run in the run's state."""
    return Refused(
        f"{procedure.step_label(step)} cannot run in state {run.state}",
        [
            GuardResult(
                "state_order",
                False,
                f"the run is in state {run.state}",
                next_hint(procedure, run),
            )
        ],
    )


def check_order(store: SqliteStore, ctx: StepContext) -> None:
    assert ctx.run is not None
    state = ctx.run.state
    if state in ctx.step.sources and ctx.step.name in machine.valid_triggers(
        ctx.procedure, state
    ):
        return
    # A refused recovery step points to the recovery that fits the state
    # (cancel-deletion before re-enable), not to the procedure's next step.
    hint = ""
    if ctx.step.recovery:
        hint = _recovery_hint(ctx, state)
    result = GuardResult(
        "state_order",
        False,
        f"the run is in state {state}; `{ctx.step.command}` needs one of "
        f"{', '.join(ctx.step.sources)}",
        hint or next_hint(ctx.procedure, ctx.run),
    )
    refuse(store, ctx, [result], [result])


def _recovery_hint(ctx: StepContext, state: str) -> str:
    """Return the recovery from `state` that ends where the refused one would.

    A re-enable refused while deletion is scheduled points to cancel-deletion
    with --enable, which also leaves the key enabled.
    """
    assert ctx.run is not None
    steps = [s for s in ctx.procedure.steps_from(state) if s.recovery]
    same_end = [s for s in steps if s.dest == ctx.step.dest]
    chosen = (same_end or steps)[:1]
    return ctx.procedure.command_for(chosen[0], ctx.run.environment) if chosen else ""


def check_guards(
    store: SqliteStore, ctx: StepContext, record: bool
) -> list[GuardResult]:
    """Evaluate the step's guards and return the unmet ones that an override skips.

    Raises:
        Refused: a guard is unmet and not overridden. With `record`, the
            refusal is also written to the run as an event.
    """
    from kmsguard.workflow.guards import GUARDS

    results = [GUARDS[name](ctx) for name in ctx.step.guards]
    unmet = [r for r in results if not r.passed and not override_reason(ctx, r)]
    overridden = [r for r in results if not r.passed and override_reason(ctx, r)]
    ctx.facts["guard_results"] = results
    if unmet:
        if record:
            refuse(store, ctx, unmet, results)
        raise Refused(refusal_message(ctx, unmet), unmet)
    return overridden


def refuse(
    store: SqliteStore,
    ctx: StepContext,
    unmet: list[GuardResult],
    results: list[GuardResult],
) -> None:
    """Record a "refused" event with every guard result, then raise Refused."""
    assert ctx.run is not None
    event = NewEvent(
        step=ctx.step.name,
        outcome="refused",
        operator=ctx.operator,
        from_state=ctx.run.state,
        to_state=ctx.run.state,
        caller_arn=ctx.caller_arn,
        message=refusal_message(ctx, unmet),
        evidence={
            "guards": [r.to_dict() for r in results],
            **facts_evidence(ctx),
        },
    )
    store.append_event(ctx.run, ctx.env_name, event)
    log.info(
        "refused %s on run %d: %s",
        ctx.step.name,
        ctx.run.id,
        [r.guard for r in unmet],
    )
    raise Refused(refusal_message(ctx, unmet), unmet)


def refusal_message(ctx: StepContext, unmet: list[GuardResult]) -> str:
    state = ctx.run.state if ctx.run else "(no run)"
    lines = [
        f"{ctx.procedure.step_label(ctx.step)} refused for {ctx.env_name!r} in state {state}:"
    ]
    for result in unmet:
        line = f"  - {result.guard}: {result.reason}"
        if result.next:
            line += f"\n    next: {result.next}"
        lines.append(line)
    return "\n".join(lines)


def facts_evidence(ctx: StepContext) -> dict[str, Any]:
    evidence = ctx.facts.get("evidence")
    return dict(evidence) if isinstance(evidence, dict) else {}


def override_reason(ctx: StepContext, result: GuardResult) -> str:
    """Return the reason given to override a guard result, or "" when none applies."""
    param = result.override_param
    return str(ctx.params.get(param) or "").strip() if param else ""


def override_evidence(
    ctx: StepContext, overridden: list[GuardResult]
) -> dict[str, Any]:
    """Record each override, keyed accepted_risk for accept_risk and so on."""
    evidence: dict[str, Any] = {}
    for result in overridden:
        param = result.override_param
        entry = evidence.setdefault(
            "accepted_" + param.removeprefix("accept_"),
            {
                "reason": override_reason(ctx, result),
                "operator": ctx.operator,
                "guards": [],
            },
        )
        entry["guards"].append(result.to_dict())
    return evidence


def check_drift(store: SqliteStore, ctx: StepContext) -> None:
    """Refuse a step when a key's live state or policy drifted from the run.

    Drift that does not stop the step goes on its event and its notes. When
    AWS cannot be read, a destructive step is refused, and any other step
    goes on with a warning (a ticket or a confirmation needs no AWS).
    """
    from kmsguard.workflow.drift import DRIFT_GUARD, drift_applies, step_drift

    if not drift_applies(ctx.step):
        return
    try:
        drifts = step_drift(ctx)
    except KmsguardError as exc:
        run_id = ctx.run.id if ctx.run else None
        if ctx.step.destructive:
            # A step that retires a key must not go on unchecked: the new
            # key may be unusable too, which would leave the pipeline none.
            unchecked = GuardResult(
                DRIFT_GUARD,
                False,
                f"the run's keys could not be compared with AWS: {exc}",
                f"kmsguard status {ctx.env_name} --live",
            )
            refuse(store, ctx, [unchecked], [unchecked])
        log.warning("keys of run %s not compared with AWS: %s", run_id, exc)
        ctx.facts["drift_unchecked"] = str(exc)
        return
    blocking = [drift.guard_result() for drift in drifts if drift.blocking]
    if blocking:
        refuse(store, ctx, blocking, blocking)
    ctx.facts["drift"] = drifts
