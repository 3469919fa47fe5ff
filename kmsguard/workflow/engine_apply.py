"""Applying a step: the intent claim, the handler's work and the committed outcome.

A step that writes to AWS first claims the run with an "intent" event, so a
racing process loses before it calls AWS. The outcome is committed with a
compare-and-set on the run's version, and a lost race is recorded as a refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kmsguard.workflow import machine
from kmsguard.workflow.aws_faults import botocore_errors_as_failures
from kmsguard.workflow.context import Outcome, StepContext
from kmsguard.workflow.engine_guards import (
    facts_evidence,
    next_hint,
    override_evidence,
    override_reason,
)
from kmsguard.workflow.errors import Conflict, GuardResult
from kmsguard.workflow.intents import claim_evidence, kill_point
from kmsguard.workflow.procedure import Procedure
from kmsguard.workflow.records import (
    TERMINAL_STATES,
    Event,
    NewEvent,
    Run,
    RunChange,
)

if TYPE_CHECKING:
    from kmsguard.workflow.store import SqliteStore

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    """An applied step: the run after it, its event and lines for the operator."""

    run: Run
    event: Event
    outcome: Outcome
    next_commands: list[str] = field(default_factory=list)
    reconciled: list[Event] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = self.run.to_dict()
        data.update(
            {
                "step": self.event.step,
                "outcome": self.event.outcome,
                "event_id": self.event.id,
                "evidence": self.event.evidence,
                "notes": self.outcome.notes,
                "next": self.next_commands,
            }
        )
        return data


def execute_handler(
    ctx: StepContext, handler: Any, intent: dict[str, Any] | None
) -> Outcome:
    """Run the handler's work, with the kill-test hooks around an AWS write."""
    if intent is None:
        return handler.execute(ctx)  # type: ignore[no-any-return]
    kill_point("before_aws")
    target = str(intent.get("key") or f"environment {ctx.env_name}")
    with botocore_errors_as_failures(str(intent.get("action", "AWS")), target):
        outcome: Outcome = handler.execute(ctx)
    kill_point("after_aws")
    return outcome


def annotate(ctx: StepContext, outcome: Outcome, overridden: list[GuardResult]) -> None:
    """Add the facts, overrides and drift warnings of the step to its outcome."""
    # What prepare and the guards read goes on the applied event too.
    for name, value in facts_evidence(ctx).items():
        outcome.evidence.setdefault(name, value)
    overrides = override_evidence(ctx, overridden)
    outcome.evidence.update(overrides)
    outcome.notes.extend(
        f"{name.replace('_', ' ')} by {entry['operator']}: {entry['reason']} "
        f"(overrides {', '.join(g['guard'] for g in entry['guards'])})"
        for name, entry in overrides.items()
    )
    for drift in ctx.facts.get("drift", []):
        outcome.evidence.setdefault("drift", []).append(drift.to_dict())
        outcome.notes.append(f"warning: {drift.reason}; see `{drift.recovery}`")
    if "drift_unchecked" in ctx.facts:
        outcome.evidence["drift_unchecked"] = ctx.facts["drift_unchecked"]
        outcome.notes.append(
            "warning: the run's keys were not compared with AWS: "
            f"{ctx.facts['drift_unchecked']}; check them with `kmsguard status "
            f"{ctx.env_name} --live`"
        )


def claim(
    store: SqliteStore, ctx: StepContext, intent: dict[str, Any]
) -> tuple[Run, Event]:
    """Commit the step's intent event, so that no other process runs it meanwhile."""
    assert ctx.run is not None
    evidence = claim_evidence(intent)
    event = NewEvent(
        step=ctx.step.name,
        outcome="intent",
        operator=ctx.operator,
        from_state=ctx.run.state,
        to_state=ctx.run.state,
        caller_arn=ctx.caller_arn,
        message=f"about to {ctx.step.command}",
        evidence=evidence,
    )
    change = RunChange(state=ctx.run.state, pending_intent=True)
    return compare_and_set(store, ctx, ctx.run, change, event)


def compare_and_set(
    store: SqliteStore,
    ctx: StepContext,
    run: Run,
    change: RunChange,
    event: NewEvent,
    before_commit: Callable[[], None] | None = None,
) -> tuple[Run, Event]:
    """Compare-and-set; a lost race is recorded as a refusal and raised."""
    try:
        return store.compare_and_set(run, change, event, before_commit)
    except Conflict as conflict:
        current = store.get_run(run.id)
        lost = NewEvent(
            step=ctx.step.name,
            outcome="refused",
            operator=ctx.operator,
            from_state=current.state,
            to_state=current.state,
            caller_arn=ctx.caller_arn,
            message=str(conflict),
            evidence={
                "guards": [
                    {
                        "guard": "run_version",
                        "passed": False,
                        "reason": str(conflict),
                        "next": "",
                    }
                ]
            },
        )
        store.append_event(current, ctx.env_name, lost)
        raise


def record_failure(
    store: SqliteStore, ctx: StepContext, run: Run, message: str
) -> Event:
    event = NewEvent(
        step=ctx.step.name,
        outcome="failed",
        operator=ctx.operator,
        from_state=run.state,
        to_state=run.state,
        caller_arn=ctx.caller_arn,
        message=message,
        resolves=run.pending_intent_id,
    )
    _, stored = store.compare_and_set(run, RunChange(state=run.state), event)
    log.info("step %s failed on run %d: %s", ctx.step.name, run.id, message)
    return stored


def commit(
    store: SqliteStore,
    ctx: StepContext,
    run: Run,
    outcome: Outcome,
    resolves: int | None,
) -> StepResult:
    """Move the run to the step's destination and record the "applied" event."""
    results = {
        r.guard: r.passed or bool(override_reason(ctx, r))
        for r in ctx.facts.get("guard_results", [])
    }
    dest = machine.fire(ctx.procedure, run.state, ctx.step, results)
    change = run_change(dest, outcome, close=dest in TERMINAL_STATES)
    event = new_event(ctx, outcome, "applied", run.state, dest, resolves)
    before_commit = None
    if resolves is not None:
        before_commit = lambda: kill_point("before_commit")  # noqa: E731
    run, stored = compare_and_set(store, ctx, run, change, event, before_commit)
    log.info(
        "applied %s on run %d (%s -> %s) by %s",
        ctx.step.name,
        run.id,
        event.from_state,
        dest,
        ctx.operator,
    )
    return step_result(ctx.procedure, run, stored, outcome)


def run_change(dest: str, outcome: Outcome, close: bool = False) -> RunChange:
    return RunChange(
        state=dest,
        updates=outcome.updates,
        data_updates=outcome.data_updates,
        close=close,
        reopen=not close and dest not in TERMINAL_STATES,
        confirmation=outcome.confirmation,
        backups=outcome.backups,
    )


def new_event(
    ctx: StepContext,
    outcome: Outcome,
    result: str,
    source: str | None,
    dest: str,
    resolves: int | None = None,
) -> NewEvent:
    return NewEvent(
        step=ctx.step.name,
        outcome=result,
        operator=ctx.operator,
        from_state=source,
        to_state=dest,
        caller_arn=ctx.caller_arn,
        message=outcome.message,
        evidence=outcome.evidence,
        resolves=resolves,
    )


def step_result(
    procedure: Procedure, run: Run, event: Event, outcome: Outcome
) -> StepResult:
    recovered = any(s.name == event.step and s.recovery for s in procedure.steps)
    # A recovery that leaves the key disabled continues with the next
    # recovery (re-enable after cancel-deletion), not with the procedure.
    hint = procedure.recovery_command(run.state, run.environment) if recovered else ""
    hint = hint or next_hint(procedure, run)
    return StepResult(run, event, outcome, [hint] if hint else [])
