"""Protection changes recorded on a run: intent, PutKeyPolicy, outcome.

A write claims the run with an intent event in a compare-and-set, so that a
racing process loses before it calls AWS, then records the outcome with both
policy versions. The run's state never changes. An intent that a stopped
process left behind is reconciled from the live policy.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.aws import AwsSession, Kms
from kmsguard.workflow.errors import Conflict, InvalidInput, KmsguardError
from kmsguard.workflow.intents import claim_evidence, kill_point
from kmsguard.workflow.policy import (
    canonical_json,
    parse_policy_text,
    protection_actions,
    remove_protection,
    same_statements,
    statement_list,
)
from kmsguard.workflow.protection_kms import (
    PropagationWait,
    read_policy,
    write_policy,
)
from kmsguard.workflow.protection_policy import (
    PolicyChange,
    change_from_intent,
    pipeline_form,
)
from kmsguard.workflow.protection_steps import (
    DATA_KEY,
    protection_data,
    recorded,
    written_data,
)
from kmsguard.workflow.records import Event, NewEvent, Run, RunChange

if TYPE_CHECKING:
    from kmsguard.workflow.app import App
    from kmsguard.workflow.store import SqliteStore

log = logging.getLogger(__name__)

PROTECT_STEP = "protect"
UNPROTECT_STEP = "unprotect"
# The steps of the events protect and unprotect record; no procedure has them,
# so the engine hands their interrupted intents to reconcile_intent.
PROTECTION_STEPS = (PROTECT_STEP, UNPROTECT_STEP)


@dataclass(frozen=True)
class RunWriter:
    """The store, AWS session and operator that a protection write on a run needs."""

    store: SqliteStore
    aws: AwsSession
    operator: str

    @classmethod
    def of(cls, app: App) -> RunWriter:
        return cls(app.store, app.aws(), app.settings.operator)

    def kms(self, key_arn: str) -> Kms:
        return Kms(self.aws, key_arn.split(":")[3])

    def caller(self, key_arn: str) -> str | None:
        return self.aws.caller_identity(key_arn.split(":")[3]).get("Arn")

    def pipeline_account(self, run: Run) -> str:
        environment = self.store.get_environment(run.environment)
        if environment is None:
            raise InvalidInput(f"unknown environment {run.environment!r}")
        return environment.pipeline_account


@dataclass
class ProtectionResult:
    """A protection change recorded on a run: the run after it and its event."""

    run: Run
    event: Event
    change: PolicyChange | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = self.run.to_dict()
        data.update(
            {
                "step": self.event.step,
                "outcome": self.event.outcome,
                "event_id": self.event.id,
                "message": self.event.message,
                "evidence": self.event.evidence,
                "protection": recorded(self.run) or None,
                "notes": self.notes,
            }
        )
        return data


def write_change(
    writer: RunWriter,
    run: Run,
    step: str,
    change: PolicyChange,
    message: str,
    evidence: dict[str, Any],
) -> ProtectionResult:
    """Claim the run with an intent, write the policy, and record the outcome.

    Raises:
        Conflict: another process changed the run first; AWS was not called.
        OperationFailed: the write failed, which is recorded as failed.
    """
    caller = writer.caller(change.key_arn)
    intent = NewEvent(
        step=step,
        outcome="intent",
        operator=writer.operator,
        from_state=run.state,
        to_state=run.state,
        caller_arn=caller,
        message=f"about to {step} key {change.key_arn}",
        evidence=claim_evidence(
            {
                "action": "kms:PutKeyPolicy",
                "key": change.key_arn,
                DATA_KEY: change.intent_evidence(),
            }
        ),
    )
    claimed, intent_event = _claim(writer, run, intent)
    kill_point("before_aws")

    try:
        write_policy(
            writer.kms(change.key_arn), change, PropagationWait.from_environment()
        )
    except KmsguardError as exc:
        _resolve(writer, claimed, intent_event, "failed", str(exc), caller)
        raise

    kill_point("after_aws")

    log.info(
        "%s on key %s for run %d by %s", step, change.key_arn, run.id, writer.operator
    )
    outcome = {DATA_KEY: change.evidence(), **evidence}
    return _commit(writer, claimed, intent_event, change, message, outcome, caller)


def _claim(writer: RunWriter, run: Run, intent: NewEvent) -> tuple[Run, Event]:
    try:
        return writer.store.compare_and_set(
            run, RunChange(state=run.state, pending_intent=True), intent
        )
    except Conflict as conflict:
        current = writer.store.get_run(run.id)
        refusal = dataclasses.replace(
            intent,
            outcome="refused",
            from_state=current.state,
            to_state=current.state,
            message=str(conflict),
            evidence={"guards": [r.to_dict() for r in conflict.unmet]},
        )
        writer.store.append_event(current, run.environment, refusal)
        raise


def _commit(
    writer: RunWriter,
    run: Run,
    intent: Event,
    change: PolicyChange,
    message: str,
    evidence: dict[str, Any],
    caller: str | None,
) -> ProtectionResult:
    data = written_data(run, change, writer.pipeline_account(run), intent.step)
    event = NewEvent(
        step=intent.step,
        outcome="applied",
        operator=writer.operator,
        from_state=run.state,
        to_state=run.state,
        caller_arn=caller,
        message=message,
        evidence=evidence,
        resolves=intent.id,
    )
    change_set = RunChange(
        state=run.state, data_updates=data, backups=change.backups(intent.step)
    )
    stored_run, stored = writer.store.compare_and_set(run, change_set, event)
    return ProtectionResult(stored_run, stored, change)


def _resolve(
    writer: RunWriter,
    run: Run,
    intent: Event,
    outcome: str,
    message: str,
    caller: str | None,
) -> Run:
    event = NewEvent(
        step=intent.step,
        outcome=outcome,
        operator=writer.operator,
        from_state=run.state,
        to_state=run.state,
        caller_arn=caller,
        message=message,
        resolves=intent.id,
    )
    change = RunChange(state=run.state)
    stored_run, _ = writer.store.compare_and_set(run, change, event)
    return stored_run


def record_unchanged(
    writer: RunWriter,
    run: Run,
    step: str,
    key_arn: str,
    message: str,
    reason: str | None = None,
    shared: dict[str, Any] | None = None,
) -> ProtectionResult:
    """Record a protect or unprotect that found nothing to change in AWS.

    `shared` describes a statement that unprotect kept for other runs. It goes
    into the event's evidence and the run's protection record.
    """
    _, live = read_policy(writer.kms(key_arn), key_arn)
    known = recorded(run)
    data_updates: dict[str, Any] = {}
    # A run that never had the statement keeps no protection record.
    if known or protection_actions(live) is not None:
        roles = list(known.get("break_glass_roles") or ())
        data_updates[DATA_KEY] = protection_data(key_arn, live, roles, step)
        data_updates[DATA_KEY].update(shared or {})
    if step == UNPROTECT_STEP:
        data_updates.update(_accept_removal(writer, run, key_arn, live))
    evidence: dict[str, Any] = {DATA_KEY: {"key": key_arn, "change": None}}
    evidence[DATA_KEY].update(shared or {})
    if reason is not None:
        evidence["reason"] = reason
    event = NewEvent(
        step=step,
        outcome="recorded",
        operator=writer.operator,
        from_state=run.state,
        to_state=run.state,
        caller_arn=writer.caller(key_arn),
        message=message,
        evidence=evidence,
    )
    change = RunChange(state=run.state, data_updates=data_updates)
    stored_run, stored = writer.store.compare_and_set(run, change, event)
    return ProtectionResult(stored_run, stored, None)


def _accept_removal(
    writer: RunWriter, run: Run, key_arn: str, live: dict[str, Any]
) -> dict[str, Any]:
    """Return the update that records a statement removed by hand, or {}.

    When the live policy is the one kmsguard last wrote without the protection
    statement, it becomes the policy kmsguard expects, so the drift check and
    status stop reporting the removal. Any other difference is still reported.
    """
    from kmsguard.workflow.drift import APPLIED_POLICIES, applied_policy_update

    applied = dict(run.data.get(APPLIED_POLICIES) or {}).get(key_arn)
    if not isinstance(applied, dict) or protection_actions(live) is not None:
        return {}
    written = parse_policy_text(str(applied.get("policy") or "{}"))
    if protection_actions(written) is None or len(statement_list(written)) < 2:
        return {}
    if not same_statements(remove_protection(written), live):
        return {}
    form = pipeline_form(live, key_arn, writer.pipeline_account(run))
    return applied_policy_update(run, key_arn, canonical_json(live), form)


def reconcile_intent(writer: RunWriter, run: Run, intent: Event) -> Run:
    """Record whether an interrupted protect or unprotect took effect in AWS.

    The intent is one of PROTECTION_STEPS and its process has stopped; the
    caller checks both.
    """
    change = change_from_intent(dict(intent.evidence.get(DATA_KEY) or {}))
    _, live = read_policy(writer.kms(change.key_arn), change.key_arn)
    caller = writer.caller(change.key_arn)
    if not same_statements(live, change.after):
        message = f"reconciled: the interrupted {intent.step} did not take effect"
        log.warning("run %d: %s", run.id, message)
        return _resolve(writer, run, intent, "failed", message, caller)
    message = f"reconciled: the interrupted {intent.step} took effect"
    log.warning("run %d: %s", run.id, message)
    evidence = {DATA_KEY: change.evidence()}
    return _commit(writer, run, intent, change, message, evidence, caller).run
