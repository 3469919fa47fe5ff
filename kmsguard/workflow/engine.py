"""The generic engine: load a run, evaluate a step's guards, apply or refuse.

The engine names no procedure. A procedure is data: states, steps and guard
names. The work of each kind of step is a handler from the handler registry,
and each guard is a function from the guard registry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kmsguard.workflow import machine
from kmsguard.workflow.aws_faults import botocore_errors_as_failures
from kmsguard.workflow.context import Outcome, StepContext
from kmsguard.workflow.errors import (
    Aborted,
    Conflict,
    GuardResult,
    InvalidInput,
    KmsguardError,
    Refused,
    unknown_environment,
)
from kmsguard.workflow.intents import (
    claim_evidence,
    finished_by_reconcile,
    kill_point,
    reconcile_environment,
    settle_failure,
)
from kmsguard.workflow.procedure import Procedure, Step
from kmsguard.workflow.records import (
    TERMINAL_STATES,
    Environment,
    Event,
    NewEvent,
    Run,
    RunChange,
)

if TYPE_CHECKING:
    from kmsguard.workflow.aws import AwsSession
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
        from kmsguard.workflow.audit import check_environment

        ctx = self._context(procedure, procedure.start, env_name, None, params)
        handler = self._handler(procedure.start)
        handler.validate(ctx)
        check_environment(self.store, ctx.environment)
        reconcile_environment(self, ctx)
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

        Before the order check, any AWS write a crashed process left unresolved
        in the environment is reconciled from AWS. After the guards, the run's
        keys are compared with AWS, and drift refuses the step. `confirm` is
        asked after that and before any write; when it returns False nothing
        is written and Aborted is raised.
        """
        step = procedure.step(step_name)
        ctx = self._context(procedure, step, env_name, None, params)
        handler = self._handler(step)
        handler.validate(ctx)
        run = self._load_run(procedure, step, env_name)
        ctx.run = run
        reconciled = reconcile_environment(self, ctx)
        if reconciled:
            ctx.run = self.store.get_run(run.id)
            finished = finished_by_reconcile(self, ctx, reconciled)
            if finished is not None:
                return finished
        self._check_order(ctx)
        with botocore_errors_as_failures(f"reading AWS for {step.command}", env_name):
            handler.prepare(ctx)
        overridden = self._check_guards(ctx, record=True)
        with botocore_errors_as_failures(f"reading AWS for {step.command}", env_name):
            self._check_drift(ctx)
        if confirm is not None and not confirm(ctx):
            raise Aborted(
                f"{procedure.step_label(step)} for {env_name!r} not confirmed; nothing was changed"
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
                f"{procedure.step_label(step)} cannot run in state {ctx.run.state}",
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
        _require_registered(procedure)
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
            known = [other.name for other in self.store.list_environments()]
            raise unknown_environment(env_name, known)
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
            self._refuse_other_procedure(procedure, step, run)
        return run

    def _refuse_other_procedure(
        self, procedure: Procedure, step: Step, run: Run
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
            operator=self.operator,
            from_state=run.state,
            to_state=run.state,
            message=message,
            evidence={"guards": [unmet.to_dict()]},
        )
        self.store.append_event(run, env_name, event)
        raise Refused(message, [unmet])

    def _find_recoverable(self, env_name: str) -> Run | None:
        for run in reversed(self.store.runs(env_name)):
            if run.data.get("key_retired"):
                return run
            if run.closed_at is None:
                break
        return None

    def check_integrity(self, run: Run) -> None:
        """Stop writes to a run whose stored state does not match its audit log."""
        from kmsguard.workflow.audit import check_run

        check_run(self.store, run)

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
        unmet = [r for r in results if not r.passed and not _override_reason(ctx, r)]
        overridden = [r for r in results if not r.passed and _override_reason(ctx, r)]
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
            f"{ctx.procedure.step_label(ctx.step)} refused for {ctx.env_name!r} in state {state}:"
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
        claimed: Event | None = None
        if intent is not None:
            run, claimed = self._claim(ctx, intent)
            ctx.run = run
        try:
            outcome = self._execute(ctx, handler, intent)
        except KmsguardError as exc:
            if claimed is None:
                raise
            return settle_failure(self, ctx, handler, claimed, exc)
        self._annotate(ctx, outcome, overridden)
        return self._commit(ctx, run, outcome, resolves=run.pending_intent_id)

    def _execute(
        self, ctx: StepContext, handler: Any, intent: dict[str, Any] | None
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

    def _annotate(
        self, ctx: StepContext, outcome: Outcome, overridden: list[GuardResult]
    ) -> None:
        """Add the facts, overrides and drift warnings of the step to its outcome."""
        # What prepare and the guards read goes on the applied event too.
        for name, value in self._facts_evidence(ctx).items():
            outcome.evidence.setdefault(name, value)
        overrides = _override_evidence(ctx, overridden)
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

    def _claim(self, ctx: StepContext, intent: dict[str, Any]) -> tuple[Run, Event]:
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
        return self._compare_and_set(ctx, ctx.run, change, event)

    def _compare_and_set(
        self,
        ctx: StepContext,
        run: Run,
        change: RunChange,
        event: NewEvent,
        before_commit: Callable[[], None] | None = None,
    ) -> tuple[Run, Event]:
        """Compare-and-set; a lost race is recorded as a refusal and raised."""
        try:
            return self.store.compare_and_set(run, change, event, before_commit)
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

    def _record_failure(self, ctx: StepContext, run: Run, message: str) -> Event:
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
        _, stored = self.store.compare_and_set(run, RunChange(state=run.state), event)
        log.info("step %s failed on run %d: %s", ctx.step.name, run.id, message)
        return stored

    def _commit(
        self, ctx: StepContext, run: Run, outcome: Outcome, resolves: int | None
    ) -> StepResult:
        results = {
            r.guard: r.passed or bool(_override_reason(ctx, r))
            for r in ctx.facts.get("guard_results", [])
        }
        dest = machine.fire(ctx.procedure, run.state, ctx.step, results)
        change = self._change(dest, outcome, close=dest in TERMINAL_STATES)
        event = self._event(ctx, outcome, "applied", run.state, dest, resolves)
        before_commit = None
        if resolves is not None:
            before_commit = lambda: kill_point("before_commit")  # noqa: E731
        run, stored = self._compare_and_set(ctx, run, change, event, before_commit)
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
        recovered = any(s.name == event.step and s.recovery for s in procedure.steps)
        # A recovery that leaves the key disabled continues with the next
        # recovery (re-enable after cancel-deletion), not with the procedure.
        hint = (
            procedure.recovery_command(run.state, run.environment) if recovered else ""
        )
        hint = hint or self._next_hint(procedure, run)
        return StepResult(run, event, outcome, [hint] if hint else [])

    @staticmethod
    def _next_hint(procedure: Procedure, run: Run) -> str:
        return procedure.next_command(run.state, run.environment, run.ticket_id)

    def next_command(self, run: Run) -> str:
        from kmsguard.states import PROCEDURES

        return self._next_hint(PROCEDURES[run.procedure], run)

    def _check_drift(self, ctx: StepContext) -> None:
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
                self._refuse(ctx, [unchecked], [unchecked])
            log.warning("keys of run %s not compared with AWS: %s", run_id, exc)
            ctx.facts["drift_unchecked"] = str(exc)
            return
        blocking = [drift.guard_result() for drift in drifts if drift.blocking]
        if blocking:
            self._refuse(ctx, blocking, blocking)
        ctx.facts["drift"] = drifts

    def _handler(self, step: Step) -> Any:
        from kmsguard.workflow.handlers import HANDLERS

        return HANDLERS[step.handler]


def _require_registered(procedure: Procedure) -> None:
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


def _guards() -> dict[str, Any]:
    from kmsguard.workflow.guards import GUARDS

    return GUARDS


def _override_reason(ctx: StepContext, result: GuardResult) -> str:
    """Return the reason given to override a guard result, or "" when none applies."""
    param = result.override_param
    return str(ctx.params.get(param) or "").strip() if param else ""


def _override_evidence(
    ctx: StepContext, overridden: list[GuardResult]
) -> dict[str, Any]:
    """Record each override, keyed accepted_risk for accept_risk and so on."""
    evidence: dict[str, Any] = {}
    for result in overridden:
        param = result.override_param
        entry = evidence.setdefault(
            "accepted_" + param.removeprefix("accept_"),
            {
                "reason": _override_reason(ctx, result),
                "operator": ctx.operator,
                "guards": [],
            },
        )
        entry["guards"].append(result.to_dict())
    return evidence
