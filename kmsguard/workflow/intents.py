"""Intents: a step's AWS write survives a crash between the call and its record.

A step that writes to AWS first commits an "intent" event in a compare-and-set
that bumps the run's version, so a racing process loses before it calls AWS.
An "applied" or "failed" event resolves the intent after the call. A process
that dies in between leaves the run's pending_intent_id set, and the next step
command on the environment has the handler reconcile it from AWS before
anything else, so the write is never repeated blindly.

The engine calls the functions below at those points; they use the engine's
own helpers to build contexts and to commit.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.aws_faults import (
    botocore_errors_as_failures,
    explain_step_failure,
)
from kmsguard.workflow.context import Outcome, StepContext
from kmsguard.workflow.errors import (
    Conflict,
    GuardResult,
    IntegrityError,
    KmsguardError,
)
from kmsguard.workflow.records import Event, NewEvent, Run, parse_time

if TYPE_CHECKING:
    from kmsguard.workflow.engine import Engine, StepResult

log = logging.getLogger(__name__)

# An intent whose process is gone, or older than this, is reconciled from AWS.
# It exceeds the worst case of the AWS calls of one step with standard retries.
INTENT_LEASE = timedelta(minutes=10)

# Test hook: the kill tests set this variable to one of KILL_POINTS.
KILL_AT_VARIABLE = "KMSGUARD_TEST_KILL_AT"
KILL_POINTS = ("before_aws", "after_aws", "before_commit")


def kill_point(name: str) -> None:
    """Test hook: end this process with SIGKILL at `name` when asked to.

    KMSGUARD_TEST_KILL_AT names the point: before_aws (intent committed, AWS
    not called yet), after_aws (AWS called, nothing recorded) or before_commit
    (outcome written inside a transaction that never commits). The kill tests
    set it to prove that the next command reconciles; normal use never does.
    """
    if os.environ.get(KILL_AT_VARIABLE) == name:
        log.warning("%s=%s: killing process %d", KILL_AT_VARIABLE, name, os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)


def claim_evidence(intent: dict[str, Any]) -> dict[str, Any]:
    """Return the intent's evidence with the process that makes the AWS call."""
    evidence = dict(intent)
    evidence.update({"pid": os.getpid(), "host": socket.gethostname()})
    return evidence


def running_owner(intent: Event, now: datetime | None = None) -> str:
    """Return the process that may still be making an intent's AWS call, or "".

    An intent is abandoned when its process has ended or its lease has run
    out. Processes of another host cannot be checked, so their intents wait
    out the lease.
    """
    age = (now or datetime.now(UTC)) - parse_time(intent.created_at)
    if age >= INTENT_LEASE:
        return ""
    host, pid = intent.evidence.get("host"), intent.evidence.get("pid")
    if host != socket.gethostname():
        return f"process {pid} on host {host}"
    if isinstance(pid, int) and process_alive(pid):
        return f"process {pid}"
    return ""


def busy_conflict(run: Run, intent: Event, owner: str) -> Conflict:
    return Conflict(
        f"another operator's {intent.step} on run {run.id} of {run.environment!r} "
        f"is in progress ({owner}, since {intent.created_at}); wait for it, then "
        f"run `kmsguard status {run.environment}`. If that process has died, the "
        "next step command reconciles its step from AWS, at the latest "
        f"{int(INTENT_LEASE.total_seconds() // 60)} minutes after it started"
    )


def process_alive(pid: int) -> bool:
    """Return whether a process of this host exists (this process counts).

    NOTE: a pid the system has reused for another process counts as alive,
    so such an intent waits out the lease.
    """
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reconcile_environment(engine: Engine, ctx: StepContext) -> list[Event]:
    """Resolve every interrupted AWS write of the environment, before anything else.

    A closed run can hold one too (a recovery step on a completed run).
    Returns the events that resolved them, oldest run first.

    Raises:
        Conflict: the process that claimed an intent may still be running.
    """
    resolved: list[Event] = []
    for run in engine.store.pending_intent_runs(ctx.env_name):
        if ctx.run is None or run.id != ctx.run.id:
            engine.check_integrity(run)
        resolved.append(reconcile_run(engine, ctx, run))
    return resolved


def reconcile_run(engine: Engine, ctx: StepContext, run: Run) -> Event:
    """Ask the intent's handler whether its AWS write took effect; record the result.

    Returns the "applied" event that completes the interrupted step, or the
    "failed" event that resolves an intent that did not take effect.
    """
    from kmsguard.states import PROCEDURES
    from kmsguard.workflow.protection_writes import (
        PROTECTION_STEPS,
        RunWriter,
        reconcile_intent,
    )

    intent = pending_intent(engine, run)
    owner = running_owner(intent)
    if owner:
        busy = busy_conflict(run, intent, owner)
        record_refusal(engine, ctx, run, str(busy), busy.unmet)
        raise busy
    if intent.step in PROTECTION_STEPS:
        # protect and unprotect are not procedure steps; their own module
        # reconciles them from the key's live policy.
        reconcile_intent(
            RunWriter(engine.store, engine.aws_factory(), engine.operator), run, intent
        )
        return engine.store.run_events(run.id)[-1]
    procedure = PROCEDURES[run.procedure]
    step = procedure.step(intent.step)
    params = dict(intent.evidence.get("params", {}))
    intent_ctx = engine._context(procedure, step, ctx.env_name, run, params)
    with botocore_errors_as_failures(f"reconciling {step.command}", ctx.env_name):
        intent_ctx.identify_caller()
        outcome = engine._handler(step).reconcile(intent_ctx, intent)
    if outcome is None:
        message = (
            f"reconciled: the interrupted {step.command} (intent event "
            f"{intent.id}) did not take effect in AWS; it is recorded as failed"
        )
        log.warning("run %d: %s", run.id, message)
        return engine._record_failure(intent_ctx, run, message)
    outcome.message = (
        f"reconciled: the interrupted {step.command} (intent event {intent.id}) "
        f"took effect in AWS; {outcome.message or 'it is recorded as applied'}"
    )
    intent_ctx.facts["guard_results"] = [
        GuardResult(name, True, "checked before the intent was recorded")
        for name in step.guards
    ]
    result = engine._commit(intent_ctx, run, outcome, resolves=intent.id)
    log.warning("run %d: %s", run.id, outcome.message)
    return result.event


def pending_intent(engine: Engine, run: Run) -> Event:
    """Return the run's unresolved intent event.

    Raises:
        IntegrityError: the run points at an event that is not its intent.
    """
    event_id = run.pending_intent_id
    intent = engine.store.get_event(event_id) if event_id is not None else None
    if intent is None or intent.run_id != run.id or intent.outcome != "intent":
        raise IntegrityError(
            f"run {run.id} points at intent event {event_id}, which is not an "
            "intent of the run; writes to it are stopped. Run `kmsguard audit verify`"
        )
    return intent


def finished_by_reconcile(
    engine: Engine, ctx: StepContext, reconciled: list[Event]
) -> StepResult | None:
    """Return the result of a step that reconciling just completed, or None.

    Running an interrupted step again is the natural retry. When AWS shows
    that the step took effect, the reconciliation is the command's result,
    and the command changes nothing more.
    """
    assert ctx.run is not None
    run_id = ctx.run.id
    event = next((e for e in reconciled if e.run_id == run_id), None)
    if event is None or event.outcome != "applied" or event.step != ctx.step.name:
        return None
    outcome = Outcome(
        evidence=event.evidence,
        notes=[f"{ctx.step.command} had already taken effect; nothing more to do"],
    )
    return engine._result(ctx.procedure, ctx.run, event, outcome)


def settle_failure(
    engine: Engine,
    ctx: StepContext,
    handler: Any,
    claimed: Event,
    error: KmsguardError,
) -> StepResult:
    """Record a failed AWS write, unless AWS shows that it took effect.

    An error can come after the write: a timeout on the response, or a read
    that follows the write. The handler's reconcile reads AWS, as it does
    after a crash, so a retry never repeats a write that happened.

    Raises:
        KmsguardError: the write did not take effect; the run's state is
            unchanged and a "failed" event resolves the intent.
    """
    assert ctx.run is not None
    run = ctx.run
    try:
        outcome = handler.reconcile(ctx, claimed)
    except KmsguardError as exc:
        log.warning("could not check whether %s took effect: %s", claimed.step, exc)
        outcome = None
    if outcome is not None:
        outcome.notes.append(
            f"AWS reported an error ({error}), but the change took effect, so "
            "the step is recorded as applied"
        )
        return engine._commit(ctx, run, outcome, resolves=claimed.id)
    explained = explain_step_failure(ctx, error)
    engine._record_failure(ctx, run, str(explained))
    raise explained


def record_refusal(
    engine: Engine,
    ctx: StepContext,
    run: Run,
    message: str,
    unmet: list[GuardResult],
) -> None:
    event = NewEvent(
        step=ctx.step.name,
        outcome="refused",
        operator=ctx.operator,
        from_state=run.state,
        to_state=run.state,
        caller_arn=ctx.caller_arn,
        message=message,
        evidence={"guards": [r.to_dict() for r in unmet]},
    )
    engine.store.append_event(run, ctx.env_name, event)
