"""The generic engine: load a run, evaluate a step's guards, apply or refuse.

The engine knows no procedure by name. A procedure is data (states, steps,
guard names); the work of each kind of step is a handler from the handler
registry, and each guard a function from the guard registry.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kmsguard.workflow import machine
from kmsguard.workflow.context import Outcome, StepContext
from kmsguard.workflow.errors import (
    Aborted,
    Conflict,
    GuardResult,
    IntegrityError,
    InvalidInput,
    KmsguardError,
    Refused,
)
from kmsguard.workflow.procedure import Procedure, Step
from kmsguard.workflow.records import (
    TERMINAL_STATES,
    Environment,
    Event,
    NewEvent,
    Run,
    RunChange,
    parse_time,
)

if TYPE_CHECKING:
    from kmsguard.workflow.aws import AwsSession
    from kmsguard.workflow.store import SqliteStore

log = logging.getLogger(__name__)

# An intent whose process is gone, or older than this, is reconciled from AWS.
# It exceeds the worst case of the AWS calls of one step with standard retries.
INTENT_LEASE = timedelta(minutes=10)


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


class Engine:
    """Runs steps of procedures against a store, with AWS reached lazily."""

    def __init__(
        self,
        store: SqliteStore,
        aws_factory: Callable[[], AwsSession],
        operator: str,
    ) -> None:
        self.store = store
        self.aws_factory = aws_factory
        self.operator = operator

    # Public entry points

    def start(
        self, procedure: Procedure, env_name: str, params: dict[str, Any]
    ) -> StepResult:
        """Open a new run of a procedure for an environment."""
        ctx = self._context(procedure, procedure.start, env_name, None, params)
        handler = self._handler(procedure.start)
        handler.validate(ctx)
        existing = self.store.open_run(env_name)
        if existing is not None:
            raise Conflict(
                f"environment {env_name!r} already has an open {existing.procedure} "
                f"run in state {existing.state}; finish it or cancel it with "
                f"`kmsguard {existing.procedure} cancel {env_name} --reason TEXT`"
            )
        handler.prepare(ctx)
        self._check_guards(ctx, record=False)
        outcome = handler.execute(ctx)
        change = self._change(procedure.initial, outcome)
        run, event = self.store.create_run(
            env_name,
            procedure.name,
            procedure.initial,
            change,
            self._event(ctx, outcome, "applied", None, procedure.initial),
        )
        log.info(
            "started %s run %d for %s by %s",
            procedure.name,
            run.id,
            env_name,
            self.operator,
        )
        return self._result(procedure, run, event, outcome)

    def step(
        self,
        procedure: Procedure,
        step_name: str,
        env_name: str,
        params: dict[str, Any],
        confirm: Callable[[StepContext], bool] | None = None,
    ) -> StepResult:
        """Run one step of the environment's run, or raise why it was refused.

        `confirm` is asked after every guard passed and before any write; when
        it returns False nothing is written and Aborted is raised.
        """
        step = procedure.step(step_name)
        ctx = self._context(procedure, step, env_name, None, params)
        handler = self._handler(step)
        handler.validate(ctx)
        run = self._load_run(procedure, step, env_name)
        ctx.run = run
        reconciled = self._reconcile(procedure, ctx)
        if reconciled:
            run = self.store.get_run(run.id)
            ctx.run = run
        self._check_order(ctx)
        handler.prepare(ctx)
        overridden = self._check_guards(ctx, record=True)
        if confirm is not None and not confirm(ctx):
            raise Aborted(
                f"{procedure.name} {step.command} for {env_name!r} not confirmed; nothing was changed"
            )
        result = self._apply(ctx, handler, overridden)
        result.reconciled = reconciled
        return result

    def preview(
        self,
        procedure: Procedure,
        step_name: str,
        env_name: str,
        params: dict[str, Any],
    ) -> StepContext:
        """Validate and prepare a step and evaluate its guards, writing nothing."""
        step = procedure.step(step_name)
        ctx = self._context(procedure, step, env_name, None, params)
        handler = self._handler(step)
        handler.validate(ctx)
        ctx.run = self._load_run(procedure, step, env_name)
        if ctx.run.state not in step.sources:
            raise Refused(
                f"{procedure.name} {step.command} cannot run in state {ctx.run.state}",
                [
                    GuardResult(
                        "state_order",
                        False,
                        f"the run is in state {ctx.run.state}",
                        self._next_hint(procedure, ctx.run),
                    )
                ],
            )
        handler.prepare(ctx)
        ctx.facts["guard_results"] = [_guards()[name](ctx) for name in step.guards]
        return ctx

    # Loading and integrity

    def _context(
        self,
        procedure: Procedure,
        step: Step,
        env_name: str,
        run: Run | None,
        params: dict[str, Any],
    ) -> StepContext:
        environment = self.get_environment(env_name)
        return StepContext(
            store=self.store,
            aws_factory=self.aws_factory,
            environment=environment,
            procedure=procedure,
            step=step,
            run=run,
            operator=self.operator,
            params=params,
        )

    def get_environment(self, env_name: str) -> Environment:
        environment = self.store.get_environment(env_name)
        if environment is None:
            raise InvalidInput(
                f"unknown environment {env_name!r}: add it with `kmsguard env add "
                f"{env_name} --region REGION --pipeline-account ACCOUNT_ID`, or see "
                "`kmsguard env list`"
            )
        return environment

    def _load_run(self, procedure: Procedure, step: Step, env_name: str) -> Run:
        run = (
            self._find_recoverable(env_name)
            if step.recovery
            else self.store.open_run(env_name)
        )
        if run is None:
            raise Refused(
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
        self.check_integrity(run)
        if run.procedure != procedure.name:
            raise Refused(
                f"{env_name!r} has an open {run.procedure} run in state {run.state}, "
                f"not a {procedure.name} run; use `kmsguard {run.procedure} ...` or "
                f"cancel it with `kmsguard {run.procedure} cancel {env_name} --reason TEXT`",
                [
                    GuardResult(
                        "procedure",
                        False,
                        f"open run is a {run.procedure} run",
                        f"kmsguard status {env_name}",
                    )
                ],
            )
        return run

    def _find_recoverable(self, env_name: str) -> Run | None:
        for run in reversed(self.store.runs(env_name)):
            if run.data.get("key_retired"):
                return run
            if run.closed_at is None:
                break
        return None

    def check_integrity(self, run: Run) -> None:
        """Stop writes to a run whose stored state does not match its audit log."""
        from kmsguard.states import PROCEDURES

        procedure = PROCEDURES.get(run.procedure)
        if procedure is None or run.state not in procedure.states:
            raise IntegrityError(
                f"run {run.id} of {run.environment!r} has an unknown procedure or "
                f"state ({run.procedure}, {run.state!r}); writes to it are stopped. "
                "Run `kmsguard audit verify`"
            )
        self.store.check_run_head(run)
        if run.state in procedure.confirmed_states and not self.store.confirmations(
            run.id
        ):
            raise IntegrityError(
                f"run {run.id} of {run.environment!r} is in state {run.state}, which "
                "needs a recorded support confirmation, but none exists; writes to it "
                "are stopped. Run `kmsguard audit verify`"
            )

    # Guards

    def _check_order(self, ctx: StepContext) -> None:
        assert ctx.run is not None
        state = ctx.run.state
        if state in ctx.step.sources and ctx.step.name in machine.valid_triggers(
            ctx.procedure, state
        ):
            return
        result = GuardResult(
            "state_order",
            False,
            f"the run is in state {state}; `{ctx.step.command}` needs one of "
            f"{', '.join(ctx.step.sources)}",
            self._next_hint(ctx.procedure, ctx.run),
        )
        self._refuse(ctx, [result], [result])

    def _check_guards(self, ctx: StepContext, record: bool) -> list[GuardResult]:
        from kmsguard.workflow.guards import GUARDS

        results = [GUARDS[name](ctx) for name in ctx.step.guards]
        accept_risk = (ctx.params.get("accept_risk") or "").strip()
        unmet = [
            r for r in results if not r.passed and not (r.overridable and accept_risk)
        ]
        overridden = [
            r for r in results if not r.passed and r.overridable and accept_risk
        ]
        ctx.facts["guard_results"] = results
        if unmet:
            if record:
                self._refuse(ctx, unmet, results)
            raise Refused(self._refusal_message(ctx, unmet), unmet)
        return overridden

    def _refuse(
        self, ctx: StepContext, unmet: list[GuardResult], results: list[GuardResult]
    ) -> None:
        assert ctx.run is not None
        event = NewEvent(
            step=ctx.step.name,
            outcome="refused",
            operator=ctx.operator,
            from_state=ctx.run.state,
            to_state=ctx.run.state,
            caller_arn=ctx.caller_arn,
            message=self._refusal_message(ctx, unmet),
            evidence={
                "guards": [r.to_dict() for r in results],
                **self._facts_evidence(ctx),
            },
        )
        self.store.append_event(ctx.run, ctx.env_name, event)
        log.info(
            "refused %s on run %d: %s",
            ctx.step.name,
            ctx.run.id,
            [r.guard for r in unmet],
        )
        raise Refused(self._refusal_message(ctx, unmet), unmet)

    @staticmethod
    def _refusal_message(ctx: StepContext, unmet: list[GuardResult]) -> str:
        state = ctx.run.state if ctx.run else "(no run)"
        lines = [
            f"{ctx.procedure.name} {ctx.step.command} refused for {ctx.env_name!r} in state {state}:"
        ]
        for result in unmet:
            line = f"  - {result.guard}: {result.reason}"
            if result.next:
                line += f"\n    next: {result.next}"
            lines.append(line)
        return "\n".join(lines)

    @staticmethod
    def _facts_evidence(ctx: StepContext) -> dict[str, Any]:
        evidence = ctx.facts.get("evidence")
        return dict(evidence) if isinstance(evidence, dict) else {}

    # Applying

    def _apply(
        self, ctx: StepContext, handler: Any, overridden: list[GuardResult]
    ) -> StepResult:
        assert ctx.run is not None
        run = ctx.run
        intent = handler.intent(ctx)
        if intent is not None:
            run = self._claim(ctx, intent)
            ctx.run = run
        try:
            outcome = handler.execute(ctx)
        except KmsguardError as exc:
            if intent is not None:
                self._record_failure(ctx, run, str(exc))
            raise
        if overridden:
            outcome.evidence["accepted_risk"] = {
                "reason": ctx.params.get("accept_risk"),
                "operator": ctx.operator,
                "guards": [r.to_dict() for r in overridden],
            }
        return self._commit(ctx, run, outcome, resolves=run.pending_intent_id)

    def _claim(self, ctx: StepContext, intent: dict[str, Any]) -> Run:
        assert ctx.run is not None
        evidence = dict(intent)
        evidence.update({"pid": os.getpid(), "host": socket.gethostname()})
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
        run, _ = self._compare_and_set(ctx, ctx.run, change, event)
        return run

    def _compare_and_set(
        self, ctx: StepContext, run: Run, change: RunChange, event: NewEvent
    ) -> tuple[Run, Event]:
        """Compare-and-set; a lost race is recorded as a refusal and raised."""
        try:
            return self.store.compare_and_set(run, change, event)
        except Conflict as conflict:
            current = self.store.get_run(run.id)
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
            self.store.append_event(current, ctx.env_name, lost)
            raise

    def _record_failure(self, ctx: StepContext, run: Run, message: str) -> None:
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
        self.store.compare_and_set(run, RunChange(state=run.state), event)
        log.info("step %s failed on run %d: %s", ctx.step.name, run.id, message)

    def _commit(
        self, ctx: StepContext, run: Run, outcome: Outcome, resolves: int | None
    ) -> StepResult:
        results = {
            r.guard: r.passed or r.overridable
            for r in ctx.facts.get("guard_results", [])
        }
        dest = machine.fire(ctx.procedure, run.state, ctx.step, results)
        change = self._change(dest, outcome, close=dest in TERMINAL_STATES)
        event = self._event(ctx, outcome, "applied", run.state, dest, resolves)
        run, stored = self._compare_and_set(ctx, run, change, event)
        log.info(
            "applied %s on run %d (%s -> %s) by %s",
            ctx.step.name,
            run.id,
            event.from_state,
            dest,
            ctx.operator,
        )
        return self._result(ctx.procedure, run, stored, outcome)

    def _change(self, dest: str, outcome: Outcome, close: bool = False) -> RunChange:
        return RunChange(
            state=dest,
            updates=outcome.updates,
            data_updates=outcome.data_updates,
            close=close,
            reopen=not close and dest not in TERMINAL_STATES,
            confirmation=outcome.confirmation,
            backups=outcome.backups,
        )

    def _event(
        self,
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

    def _result(
        self, procedure: Procedure, run: Run, event: Event, outcome: Outcome
    ) -> StepResult:
        hint = self._next_hint(procedure, run)
        return StepResult(run, event, outcome, [hint] if hint else [])

    @staticmethod
    def _next_hint(procedure: Procedure, run: Run) -> str:
        steps = [s for s in procedure.steps_from(run.state) if not s.recovery]
        if not steps:
            return ""
        command = procedure.command_for(steps[0], run.environment)
        if run.ticket_id:
            command = command.replace("--ticket ID", f"--ticket {run.ticket_id}")
        return command

    def next_command(self, run: Run) -> str:
        from kmsguard.states import PROCEDURES

        return self._next_hint(PROCEDURES[run.procedure], run)

    # Intents

    def _reconcile(self, procedure: Procedure, ctx: StepContext) -> list[Event]:
        """Resolve an interrupted AWS write of the run before anything else."""
        run = ctx.run
        if run is None or run.pending_intent_id is None:
            return []
        intent = self.store.get_event(run.pending_intent_id)
        if intent is None:
            raise IntegrityError(
                f"run {run.id} points at intent event {run.pending_intent_id}, which "
                "does not exist; run `kmsguard audit verify`"
            )
        try:
            self._check_intent_abandoned(run, intent)
        except Conflict as busy:
            self._refuse_busy(ctx, busy)
            raise
        step = procedure.step(intent.step)
        intent_ctx = self._context(
            procedure, step, ctx.env_name, run, dict(intent.evidence.get("params", {}))
        )
        outcome = self._handler(step).reconcile(intent_ctx, intent)
        if outcome is None:
            message = f"reconciled: the interrupted {step.command} did not take effect"
            self._record_failure(intent_ctx, run, message)
            return [self.store.run_events(run.id)[-1]]
        outcome.message = f"reconciled: the interrupted {step.command} took effect"
        intent_ctx.facts["guard_results"] = [
            GuardResult(name, True, "checked before the intent was recorded")
            for name in step.guards
        ]
        result = self._commit(intent_ctx, run, outcome, resolves=intent.id)
        return [result.event]

    def _refuse_busy(self, ctx: StepContext, busy: Conflict) -> None:
        assert ctx.run is not None
        event = NewEvent(
            step=ctx.step.name,
            outcome="refused",
            operator=ctx.operator,
            from_state=ctx.run.state,
            to_state=ctx.run.state,
            message=str(busy),
            evidence={"guards": [r.to_dict() for r in busy.unmet]},
        )
        self.store.append_event(ctx.run, ctx.env_name, event)

    @staticmethod
    def _check_intent_abandoned(run: Run, intent: Event) -> None:
        started = parse_time(intent.created_at)
        age = datetime.now(UTC) - started
        same_host = intent.evidence.get("host") == socket.gethostname()
        pid = intent.evidence.get("pid")
        alive = same_host and isinstance(pid, int) and _process_alive(pid)
        if alive and age < INTENT_LEASE:
            raise Conflict(
                f"another operator's {intent.step} on run {run.id} of "
                f"{run.environment!r} is in progress (process {pid} since "
                f"{intent.created_at}); wait for it, then run `kmsguard status "
                f"{run.environment}`"
            )

    def _handler(self, step: Step) -> Any:
        from kmsguard.workflow.handlers import HANDLERS

        return HANDLERS[step.handler]


def _guards() -> dict[str, Any]:
    from kmsguard.workflow.guards import GUARDS

    return GUARDS


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
