"""The generic engine: load a run, evaluate a step's guards, apply or refuse.

The engine names no procedure. A procedure is data: states, steps and guard
names. The work of each kind of step is a handler from the handler registry,
and each guard is a function from the guard registry.

`Engine` runs the phases of a step in order. Loading the run is in
engine_load, the checks before a write in engine_guards, and the claim, the
handler's work and the commit in engine_apply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.aws_faults import botocore_errors_as_failures
from kmsguard.workflow.context import Outcome, StepContext
from kmsguard.workflow.engine_apply import (
    StepResult,
    annotate,
    claim,
    commit,
    execute_handler,
    new_event,
    record_failure,
    run_change,
    step_result,
)
from kmsguard.workflow.engine_guards import (
    check_drift,
    check_guards,
    check_order,
    guard_registry,
    next_hint,
    wrong_state,
)
from kmsguard.workflow.engine_load import (
    find_recoverable,
    no_open_run,
    refuse_other_procedure,
    require_registered,
)
from kmsguard.workflow.errors import (
    Aborted,
    Conflict,
    GuardResult,
    KmsguardError,
    unknown_environment,
)
from kmsguard.workflow.identifiers import check_text_params
from kmsguard.workflow.intents import (
    finished_by_reconcile,
    reconcile_environment,
    settle_failure,
)
from kmsguard.workflow.procedure import Procedure, Step
from kmsguard.workflow.records import Environment, Event, Run

if TYPE_CHECKING:
    from kmsguard.workflow.aws import AwsSession
    from kmsguard.workflow.store import SqliteStore

# StepResult is defined in engine_apply, beside the commit that builds it, and
# callers import it from this module.
__all__ = ["Engine", "StepResult"]

log = logging.getLogger(__name__)


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
        check_guards(self.store, ctx, record=False)
        outcome = handler.execute(ctx)
        change = run_change(procedure.initial, outcome)
        run, event = self.store.create_run(
            env_name,
            procedure.name,
            procedure.initial,
            change,
            new_event(ctx, outcome, "applied", None, procedure.initial),
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
        check_order(self.store, ctx)
        with botocore_errors_as_failures(f"reading AWS for {step.command}", env_name):
            handler.prepare(ctx)
        overridden = check_guards(self.store, ctx, record=True)
        with botocore_errors_as_failures(f"reading AWS for {step.command}", env_name):
            check_drift(self.store, ctx)
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
            raise wrong_state(procedure, step, ctx.run)
        handler.prepare(ctx)
        guards = guard_registry()
        ctx.facts["guard_results"] = [guards[name](ctx) for name in step.guards]
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
        require_registered(procedure)
        check_text_params(params)
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
            raise no_open_run(procedure, step, env_name)
        self.check_integrity(run)
        if run.procedure != procedure.name:
            refuse_other_procedure(self.store, self.operator, procedure, step, run)
        return run

    def _find_recoverable(self, env_name: str) -> Run | None:
        return find_recoverable(self.store, env_name)

    def check_integrity(self, run: Run) -> None:
        """Stop writes to a run whose stored state does not match its audit log."""
        from kmsguard.workflow.audit import check_run

        check_run(self.store, run)

    # Applying

    def _apply(
        self, ctx: StepContext, handler: Any, overridden: list[GuardResult]
    ) -> StepResult:
        assert ctx.run is not None
        run = ctx.run
        intent = handler.intent(ctx)
        claimed: Event | None = None
        if intent is not None:
            run, claimed = claim(self.store, ctx, intent)
            ctx.run = run
        try:
            outcome = execute_handler(ctx, handler, intent)
        except KmsguardError as exc:
            if claimed is None:
                raise
            return settle_failure(self, ctx, handler, claimed, exc)
        annotate(ctx, outcome, overridden)
        return self._commit(ctx, run, outcome, resolves=run.pending_intent_id)

    # The intents module settles interrupted and failed AWS writes through
    # these three, so that they commit the way a step does.

    def _record_failure(self, ctx: StepContext, run: Run, message: str) -> Event:
        return record_failure(self.store, ctx, run, message)

    def _commit(
        self, ctx: StepContext, run: Run, outcome: Outcome, resolves: int | None
    ) -> StepResult:
        return commit(self.store, ctx, run, outcome, resolves)

    def _result(
        self, procedure: Procedure, run: Run, event: Event, outcome: Outcome
    ) -> StepResult:
        return step_result(procedure, run, event, outcome)

    def next_command(self, run: Run) -> str:
        from kmsguard.states import PROCEDURES

        return next_hint(PROCEDURES[run.procedure], run)

    def _handler(self, step: Step) -> Any:
        from kmsguard.workflow.handlers import HANDLERS

        return HANDLERS[step.handler]
