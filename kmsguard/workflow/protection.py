"""Guard a run's key in AWS itself: the protection statement outside the steps.

`protect` adds the statement to the key of an environment's open run,
`unprotect` removes it with a reason unless another open run protects the same
key, and `start_run` opens a run and then protects its key. Each write is
recorded on the run the way a step is: an intent event that claims the run
with a compare-and-set, then the outcome with both policy versions. The run's
state never changes. `protection_status` compares the live policy with the
policy kmsguard last wrote.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.engine import StepResult
from kmsguard.workflow.errors import (
    Conflict,
    GuardResult,
    IntegrityError,
    InvalidInput,
    KmsguardError,
    OperationFailed,
    Refused,
)
from kmsguard.workflow.identifiers import check_text_params
from kmsguard.workflow.intents import busy_conflict, running_owner
from kmsguard.workflow.protection_kms import (
    read_policy,
)
from kmsguard.workflow.protection_policy import (
    plan_protect,
    plan_remove,
    validate_protection_params,
)
from kmsguard.workflow.protection_shared import (
    check_shared_roles,
    kept_evidence,
    other_protecting_runs,
)
from kmsguard.workflow.protection_status import protection_status
from kmsguard.workflow.protection_steps import protected_key, recorded
from kmsguard.workflow.protection_writes import (
    PROTECT_STEP,
    PROTECTION_STEPS,
    UNPROTECT_STEP,
    ProtectionResult,
    RunWriter,
    reconcile_intent,
    record_unchanged,
    write_change,
)
from kmsguard.workflow.records import NewEvent, Run

if TYPE_CHECKING:
    from kmsguard.workflow.app import App
    from kmsguard.workflow.procedure import Procedure

log = logging.getLogger(__name__)

MAX_REASON_LENGTH = 2000

__all__ = [
    "PROTECTION_STEPS",
    "ProtectionResult",
    "RunWriter",
    "protect",
    "protection_status",
    "reconcile_intent",
    "start_run",
    "unprotect",
]


# Public entry points


def protect(app: App, environment: str, roles: list[str]) -> ProtectionResult:
    """Add the protection statement to the key of the environment's open run.

    A run whose key the procedure already disabled gets a statement that
    denies only kms:ScheduleKeyDeletion.

    Raises:
        InvalidInput: unknown environment, no role, or a malformed role ARN.
        Refused: no open run, no key to protect, a key pending deletion,
            another open run that shares the key's statement with other
            break-glass roles, or a policy that fails its checks before or
            after the change.
        Conflict: another process is writing to the run.
        OperationFailed: an AWS call failed.
    """
    roles = list(
        validate_protection_params({"protect": True, "break_glass_roles": roles})
    )
    app.check_region(environment)
    run = _open_run(app, environment)
    # This check runs before refusals_recorded, so a rejected request writes
    # nothing to the database, as invalid input does.
    _check_roles(app, run, roles)
    with refusals_recorded(app, run, PROTECT_STEP):
        return _protect_run(app, _settled(app, run), roles)


def unprotect(app: App, environment: str, reason: str) -> ProtectionResult:
    """Remove the protection statement from the key of the environment's latest run.

    The latest run is the open one, or else the most recent closed run, so
    that a statement left behind can still be removed with a record. While
    another open run protects the same key, the statement stays. The run then
    records that it released the statement, and the event names the runs that
    still protect the key.

    Raises:
        InvalidInput: unknown environment or an empty reason.
        Refused: the environment has no run, or the run has no key.
        Conflict: another process is writing to the run.
        OperationFailed: an AWS call failed.
    """
    reason = _validate_reason(reason)
    app.check_region(environment)
    run = _latest_run(app, environment)
    with refusals_recorded(app, run, UNPROTECT_STEP):
        run = _settled(app, run)
        key_arn = _key_of(run)
    writer = RunWriter.of(app)
    change = plan_remove(key_arn, read_policy(writer.kms(key_arn), key_arn))
    if change is None:
        message = (
            f"no protection statement in the key policy of {key_arn}; nothing removed"
        )
        return record_unchanged(writer, run, UNPROTECT_STEP, key_arn, message, reason)

    others = other_protecting_runs(app.store, key_arn, run.id)
    if others:
        shared = kept_evidence(key_arn, others)
        message = (
            f"{shared['kept_reason']}, so nothing was removed. Run {run.id} no longer "
            "relies on it; the statement is removed when the last run that protects "
            "the key closes, or when `kmsguard unprotect` is run for that run"
        )
        return record_unchanged(
            writer, run, UNPROTECT_STEP, key_arn, message, reason, shared
        )
    message = f"protection statement removed from key {key_arn}: {reason}"
    return write_change(
        writer, run, UNPROTECT_STEP, change, message, {"reason": reason}
    )


def start_run(
    app: App, procedure: Procedure, environment: str, params: dict[str, Any]
) -> StepResult:
    """Open a run; with params["protect"], protect its key as soon as it exists.

    The start step checks the policy, and the roles of a statement that other
    runs share, before the run is opened. So neither a policy that cannot
    take the statement nor other roles open a run.

    Raises:
        Refused: the start was refused, or the protection was refused after
            the run was opened (the message says so).
        OperationFailed: writing the protection failed after the run was
            opened; the run stays open without it.
    """
    roles = list(validate_protection_params(params))
    result = app.start(procedure, environment, params)
    if not roles:
        return result
    try:
        with refusals_recorded(app, result.run, PROTECT_STEP):
            # The start step checked the roles, but another run may have
            # protected the key with other roles since then.
            _check_roles(app, result.run, roles)
            protected = _protect_run(app, result.run, roles)
    except Refused as exc:
        raise Refused(_not_protected(procedure, environment, exc), exc.unmet) from exc
    except KmsguardError as exc:
        raise OperationFailed(_not_protected(procedure, environment, exc)) from exc
    result = dataclasses.replace(result, run=protected.run)
    result.outcome.notes.append(protected.event.message)
    return result


def _not_protected(procedure: Procedure, environment: str, exc: Exception) -> str:
    return (
        f"the {procedure.name} run of {environment!r} was started, but its key is not "
        f"protected: {exc}. Fix that, then run `kmsguard protect {environment} "
        "--break-glass-role ARN`"
    )


@contextmanager
def refusals_recorded(app: App, run: Run, step: str) -> Iterator[None]:
    """Record a refusal raised inside the block on the run, then re-raise it.

    A Conflict is left alone: the compare-and-set that lost records its own,
    and a busy run belongs to another process.
    """
    try:
        yield
    except Refused as exc:
        if not isinstance(exc, Conflict):
            event = NewEvent(
                step=step,
                outcome="refused",
                operator=app.settings.operator,
                from_state=run.state,
                to_state=run.state,
                caller_arn=_caller_arn(app, run),
                message=str(exc),
                evidence={"guards": [r.to_dict() for r in exc.unmet]},
            )
            app.store.append_event(run, run.environment, event)
        raise


def _caller_arn(app: App, run: Run) -> str | None:
    try:
        region = app.environment(run.environment).region
        return app.aws().caller_identity(region).get("Arn")
    except KmsguardError:
        return None


# Protecting one run


def _protect_run(app: App, run: Run, roles: list[str]) -> ProtectionResult:
    key_arn = _key_of(run)
    writer = RunWriter.of(app)
    kms = writer.kms(key_arn)
    state = kms.describe(key_arn).state
    if state == "PendingDeletion":
        raise Refused(
            f"key {key_arn} is pending deletion, so a protection statement cannot "
            "guard it; cancel the deletion first",
            [
                GuardResult(
                    "key_not_pending_deletion",
                    False,
                    f"key {key_arn} is pending deletion",
                    f"kmsguard recover cancel-deletion {run.environment}",
                )
            ],
        )

    # A key the run already disabled needs only its deletion denied.
    narrowed = bool(run.data.get("key_retired"))
    change = plan_protect(
        key_arn,
        read_policy(kms, key_arn),
        writer.pipeline_account(run),
        roles,
        narrowed=narrowed,
    )
    if not change.changed and recorded(run).get("in_place"):
        message = f"protection statement already in place on key {key_arn}"
        return record_unchanged(writer, run, PROTECT_STEP, key_arn, message)
    denied = ", ".join(change.evidence()["actions_after"] or [])
    message = (
        f"protection statement on key {key_arn} denies {denied} except to "
        + ", ".join(change.break_glass_roles)
    )
    return write_change(writer, run, PROTECT_STEP, change, message, {})


def _check_roles(app: App, run: Run, roles: list[str]) -> None:
    key_arn = protected_key(run)
    if key_arn is None:
        return
    command = f"kmsguard protect {run.environment}"
    check_shared_roles(app.store, key_arn, run.id, roles, command)


def _settled(app: App, run: Run) -> Run:
    """Return the run with no pending intent, reconciling an abandoned one of ours.

    Raises:
        Conflict: another process is writing to the run now.
        Refused: a step's intent is pending; a step command reconciles it.
    """
    app.engine.check_integrity(run)
    if run.pending_intent_id is None:
        return run
    intent = app.store.get_event(run.pending_intent_id)
    if intent is None:
        raise IntegrityError(
            f"run {run.id} points at intent event {run.pending_intent_id}, which "
            "does not exist; run `kmsguard audit verify`"
        )
    owner = running_owner(intent)
    if owner:
        raise busy_conflict(run, intent, owner)
    if intent.step not in PROTECTION_STEPS:
        next_command = (
            app.engine.next_command(run) or f"kmsguard status {run.environment}"
        )
        reason = (
            f"the {intent.step} of {intent.created_at} was interrupted; the next step "
            "command of the run finds out from AWS whether it took effect"
        )
        raise Refused(
            f"run {run.id} of {run.environment!r} has an unresolved intent: {reason}",
            [GuardResult("pending_intent", False, reason, next_command)],
        )
    return reconcile_intent(RunWriter.of(app), run, intent)


# Finding the run and its key


def _open_run(app: App, environment: str) -> Run:
    app.environment(environment)
    run = app.store.open_run(environment)
    if run is not None:
        return run
    start = (
        f"kmsguard rotation start {environment} --current-key KEY --protect "
        "--break-glass-role ARN"
    )
    raise Refused(
        f"{environment!r} has no open run, so no key is being retired and there is "
        f"nothing to protect; start one with `{start}`",
        [GuardResult("open_run", False, "no open run", start)],
    )


def _latest_run(app: App, environment: str) -> Run:
    app.environment(environment)
    run = app.store.open_run(environment)
    runs = app.store.runs(environment)
    if run is None and runs:
        run = runs[-1]
    if run is not None:
        return run
    raise Refused(
        f"{environment!r} has no runs, so kmsguard never protected a key there; "
        "remove a statement left by hand as docs/protection.md describes",
        [GuardResult("run", False, "no runs", f"kmsguard history {environment}")],
    )


def _key_of(run: Run) -> str:
    key_arn = protected_key(run)
    if key_arn:
        return key_arn
    raise Refused(
        f"the {run.procedure} run {run.id} of {run.environment!r} records no current "
        "key, so there is no key to protect",
        [
            GuardResult(
                "current_key",
                False,
                "no current key",
                f"kmsguard status {run.environment}",
            )
        ],
    )


def _validate_reason(reason: str) -> str:
    text = (reason or "").strip()
    check_text_params({"reason": text})
    if not text:
        raise InvalidInput(
            'missing --reason: it is empty; give --reason "support confirmed the '
            'switch in SUP-1234"'
        )
    if len(text) > MAX_REASON_LENGTH:
        raise InvalidInput(
            f"--reason is {len(text)} characters long; keep it under {MAX_REASON_LENGTH}"
        )
    return text
