"""The protection statement inside the guarded steps that retire a key.

The disable steps narrow the statement to kms:ScheduleKeyDeletion before
DisableKey, the schedule-deletion step removes it before ScheduleKeyDeletion,
and complete and cancel remove it unless another open run still protects the
key (protection_shared decides that). Each change is planned in the handler's
prepare phase, so a refused step never touches the policy, and written in its
execute phase, after every guard passed and the intent was committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kmsguard.workflow.context import Outcome, StepContext
from kmsguard.workflow.errors import KmsguardError, OperationFailed
from kmsguard.workflow.policy import protection_actions, same_statements
from kmsguard.workflow.protection_kms import (
    PropagationWait,
    call_after_policy_change,
    read_policy,
    restore_policy,
    write_policy,
)
from kmsguard.workflow.protection_policy import (
    PolicyChange,
    change_from_intent,
    pipeline_form,
    plan_narrow,
    plan_protect,
    plan_remove,
    protection_roles,
    validate_protection_params,
)
from kmsguard.workflow.records import Event, Run, utc_now

log = logging.getLogger(__name__)

DATA_KEY = "protection"  # the run.data entry that describes the protection
CHANGE_FACT = "protection_change"
LIVE_FACT = "protection_policy"


def recorded(run: Run | None) -> dict[str, Any]:
    """Return what the run records about its protection, or {}."""
    if run is None:
        return {}
    value = run.data.get(DATA_KEY)
    return dict(value) if isinstance(value, dict) else {}


def protected_key(run: Run) -> str | None:
    """Return the key the run's protection guards: the recorded one, else the current key."""
    return str(recorded(run).get("key_arn") or run.current_key_arn or "") or None


def written_data(
    run: Run, change: PolicyChange, pipeline_account: str, label: str
) -> dict[str, Any]:
    """Return the run.data updates after kmsguard wrote a change.

    The written policy also goes into the run's applied policies, which the
    drift check compares with the live policy before each step.
    """
    from kmsguard.workflow.drift import applied_policy_update

    form = pipeline_form(change.after, change.key_arn, pipeline_account)
    fallback = list(recorded(run).get("break_glass_roles") or change.break_glass_roles)
    data = {DATA_KEY: protection_data(change.key_arn, change.after, fallback, label)}
    data.update(applied_policy_update(run, change.key_arn, change.after_text, form))
    return data


def protection_data(
    key_arn: str, doc: dict[str, Any], fallback_roles: list[str], label: str
) -> dict[str, Any]:
    """Return the run.data entry for a key whose policy is now `doc`."""
    actions = protection_actions(doc)
    return {
        "key_arn": key_arn,
        "in_place": actions is not None,
        "actions": list(actions or ()),
        "break_glass_roles": protection_roles(doc) or list(fallback_roles),
        "updated_at": utc_now(),
        "updated_by": label,
    }


# The start step: check the policy before the run exists


def validate_start(ctx: StepContext) -> None:
    """Check --protect and --break-glass-role of a start step, without I/O."""
    ctx.params["break_glass_roles"] = list(validate_protection_params(ctx.params))


def plan_at_start(ctx: StepContext, key_arn: str, outcome: Outcome) -> Outcome:
    """Check that the key's policy can take the protection; record the request.

    Raises:
        Refused: the policy fails the lockout or pipeline checks before or
            after the statement is added, or another open run shares the
            key's statement with other break-glass roles, so no run is started.
    """
    from kmsguard.workflow.protection_shared import check_shared_roles

    roles = list(ctx.params.get("break_glass_roles") or ())
    if not roles:
        return outcome
    check_shared_roles(ctx.store, key_arn, None, roles, None)
    policy = read_policy(ctx.kms, key_arn)
    change = plan_protect(key_arn, policy, ctx.environment.pipeline_account, roles)
    outcome.data_updates[DATA_KEY] = {
        "key_arn": key_arn,
        "in_place": False,
        "requested": True,
        "actions": [],
        "break_glass_roles": list(change.break_glass_roles),
        "updated_at": utc_now(),
        "updated_by": ctx.step.command,
    }
    outcome.notes.append(
        f"the key policy of {key_arn} passes its checks with the protection "
        "statement; it is written next"
    )
    return outcome


# Prepare: read the live policy and plan the change


def prepare_narrowing(ctx: StepContext) -> None:
    """Plan the narrowing a disable step needs, from the target key's live policy."""
    key_arn = ctx.target_key()
    policy = read_policy(ctx.kms, key_arn)
    ctx.facts[LIVE_FACT] = (key_arn, policy[1])
    ctx.facts[CHANGE_FACT] = plan_narrow(key_arn, policy)


def prepare_removal(ctx: StepContext, key_arn: str | None) -> None:
    """Plan removing the statement from a key's live policy; None plans nothing."""
    ctx.facts[CHANGE_FACT] = None
    if key_arn is None:
        return
    policy = read_policy(ctx.kms, key_arn)
    ctx.facts[LIVE_FACT] = (key_arn, policy[1])
    ctx.facts[CHANGE_FACT] = plan_remove(key_arn, policy)


def prepare_recorded_removal(ctx: StepContext) -> None:
    """Plan removing the statement only when the run records it in place.

    A run that kmsguard never protected needs no AWS call to complete or cancel.
    """
    ctx.facts[CHANGE_FACT] = None
    if ctx.run is None or not recorded(ctx.run).get("in_place"):
        return
    ctx.identify_caller()
    prepare_removal(ctx, protected_key(ctx.run))


def planned(ctx: StepContext) -> PolicyChange | None:
    change = ctx.facts.get(CHANGE_FACT)
    return change if isinstance(change, PolicyChange) else None


def with_intent(ctx: StepContext, intent: dict[str, Any]) -> dict[str, Any]:
    """Add the planned policy change to a step's intent evidence."""
    change = planned(ctx)
    if change is not None:
        intent["protection"] = change.intent_evidence()
    return intent


def removal_intent(ctx: StepContext) -> dict[str, Any] | None:
    """Return the intent of a step whose only AWS write is the removal, or None."""
    change = planned(ctx)
    if change is None:
        return None
    params = {
        name: value
        for name, value in ctx.params.items()
        if isinstance(value, str | int | bool | list | type(None))
    }
    return {
        "action": "kms:PutKeyPolicy",
        "key": change.key_arn,
        DATA_KEY: change.intent_evidence(),
        "params": params,
    }


# Execute: write the change, then the call it allows


def apply_planned(ctx: StepContext) -> PolicyChange | None:
    """Write the planned change if the live policy is still the one it was planned from.

    Raises:
        OperationFailed: the policy changed since prepare, or the write failed.
    """
    change = planned(ctx)
    if change is None:
        return None
    _, live = read_policy(ctx.kms, change.key_arn)
    if not same_statements(live, change.before):
        raise OperationFailed(
            f"the key policy of {change.key_arn} changed after kmsguard read it, so "
            f"the protection statement was not changed and {ctx.step.command} did not "
            f"run; run `{ctx.command(ctx.step.name)}` again"
        )
    write_policy(ctx.kms, change, PropagationWait.from_environment())
    log.info(
        "%s protection on key %s for run %s by %s",
        change.kind,
        change.key_arn,
        ctx.run.id if ctx.run else "-",
        ctx.operator,
    )
    return change


def call_allowed(
    ctx: StepContext, change: PolicyChange | None, call: Callable[[], object]
) -> None:
    """Run the KMS call a change allows; put the old policy back when it fails.

    Raises:
        OperationFailed: the call failed, after the retries for a policy
            change that has not applied yet.
    """
    if change is None:
        call()
        return
    try:
        call_after_policy_change(call, PropagationWait.from_environment())
    except KmsguardError as exc:
        note = restore_policy(ctx.kms, change)
        raise OperationFailed(f"{exc}. {note}") from exc


def record(
    ctx: StepContext, outcome: Outcome, change: PolicyChange | None, label: str
) -> Outcome:
    """Add the change, or the live protection found, to a step's outcome."""
    assert ctx.run is not None
    known = recorded(ctx.run)
    if change is not None:
        outcome.backups = outcome.backups + change.backups(label)
        outcome.evidence[DATA_KEY] = change.evidence()
        outcome.data_updates.update(
            written_data(ctx.run, change, ctx.environment.pipeline_account, label)
        )
        outcome.notes.append(describe_change(change))
        return outcome

    live = ctx.facts.get(LIVE_FACT)
    if live is None or (not known and protection_actions(live[1]) is None):
        return outcome
    key_arn, doc = live
    outcome.evidence[DATA_KEY] = {"key": key_arn, "change": None}
    outcome.data_updates[DATA_KEY] = protection_data(
        key_arn, doc, list(known.get("break_glass_roles") or ()), label
    )
    return outcome


def describe_change(change: PolicyChange) -> str:
    """Return one sentence for the operator about a written change."""
    if protection_actions(change.after) is None:
        return f"protection statement removed from the policy of key {change.key_arn}"
    actions = ", ".join(protection_actions(change.after) or ())
    return f"protection statement on key {change.key_arn} now denies only {actions}"


# Reconcile: the step's AWS call ran only after its policy change succeeded


def reconcile_record(
    ctx: StepContext, intent: Event, outcome: Outcome | None, label: str
) -> Outcome | None:
    """Add the policy change an intent recorded to the outcome of a step that took effect.

    NOTE: a process that stopped after the policy change and before the key
    state change leaves the statement narrowed or removed. The step is then
    recorded as failed, and `status --live` reports the policy difference.
    """
    evidence = intent.evidence.get(DATA_KEY)
    if outcome is None or not isinstance(evidence, dict):
        return outcome
    change = change_from_intent(evidence)
    return record(ctx, outcome, change, label)


def reconcile_removal(
    ctx: StepContext, intent: Event, outcome: Outcome, label: str
) -> Outcome | None:
    """Return the outcome when the recorded removal took effect in AWS, else None."""
    evidence = intent.evidence.get(DATA_KEY)
    if not isinstance(evidence, dict):
        return outcome
    change = change_from_intent(evidence)
    _, live = read_policy(ctx.kms, change.key_arn)
    if protection_actions(live) is not None:
        return None
    return record(ctx, outcome, change, label)
