"""One protection statement shared by every open run that protects the same key.

A key has at most one statement with the protection Sid, so two environments
that retire the same key rely on the same statement. It belongs to every open
run, in any environment of the database, that records it in place on the key
and has not released it with `unprotect`. A closing step (complete, cancel)
or `unprotect` removes it only when no other such run needs it. Otherwise the
statement stays, and the event names the runs it stays for. The statement has
one list of break-glass roles, so a protect with other roles than the runs that
share it is refused.

The disable and schedule-deletion steps still narrow or remove the statement,
because the statement denies their KMS call until they do. Another open run
can protect the key at that point only after a disable step of the key
overrode its key_out_of_use guard with --accept-risk. That guard counts the
key as in use while another environment's open run records it as its current
key and has not disabled it. So these steps proceed as the operator accepted,
and record the runs whose protection they lifted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.context import Outcome, StepContext
from kmsguard.workflow.errors import GuardResult, Refused
from kmsguard.workflow.policy import protection_actions
from kmsguard.workflow.protection_policy import PolicyChange
from kmsguard.workflow.protection_steps import (
    CHANGE_FACT,
    DATA_KEY,
    apply_planned,
    planned,
    prepare_recorded_removal,
    protected_key,
    record,
    recorded,
)
from kmsguard.workflow.protection_writes import PROTECT_STEP
from kmsguard.workflow.records import Event, Run

if TYPE_CHECKING:
    from kmsguard.workflow.store import SqliteStore

# The ctx.facts entry that contains the key and the runs a closing step kept it for.
KEPT_FACT = "protection_kept_for"
SHARED_ROLES_GUARD = "shared_protection_roles"


@dataclass(frozen=True)
class ProtectingRun:
    """An open run that protects a key, named for the operator and the audit log.

    Attributes:
        pending: True when its protect intent is not resolved yet, so the
            statement may already be in the policy without being recorded.
        roles: the break-glass roles the run records for the statement, or
            that its pending protect writes; empty when neither is recorded.
    """

    run_id: int
    environment: str
    procedure: str
    state: str
    pending: bool = False
    roles: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"run {self.run_id} of environment {self.environment}"

    def to_evidence(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "environment": self.environment,
            "procedure": self.procedure,
            "state": self.state,
            "pending": self.pending,
        }


def other_protecting_runs(
    store: SqliteStore, key_arn: str, run_id: int | None
) -> list[ProtectingRun]:
    """Return the open runs, other than `run_id`, that still need the key's statement.

    NOTE: no lock spans reading the runs and writing the policy. A run of
    another environment that protects the key between the two can lose the
    statement, which `status --live` then reports missing for that run. Two
    runs that close at the same moment can both keep it, and `kmsguard
    unprotect` for either environment removes it afterwards.
    """
    found = []
    for run in store.open_runs():
        if run.id == run_id:
            continue
        intent = _pending_protect(store, run, key_arn)
        if _relies_on(run, key_arn):
            roles = recorded(run).get("break_glass_roles")
            found.append(_named(run, False, roles))
        elif intent is not None:
            roles = dict(intent.evidence.get(DATA_KEY) or {}).get("break_glass_roles")
            found.append(_named(run, True, roles))
    return found


def _relies_on(run: Run, key_arn: str) -> bool:
    known = recorded(run)
    in_place = bool(known.get("in_place")) and not known.get("released")
    return in_place and protected_key(run) == key_arn


def _pending_protect(store: SqliteStore, run: Run, key_arn: str) -> Event | None:
    if run.pending_intent_id is None:
        return None
    intent = store.get_event(run.pending_intent_id)
    if intent is None or intent.step != PROTECT_STEP:
        return None
    return intent if intent.evidence.get("key") == key_arn else None


def _named(run: Run, pending: bool, roles: Any) -> ProtectingRun:
    listed = tuple(str(role) for role in roles or ())
    return ProtectingRun(
        run.id, run.environment, run.procedure, run.state, pending, listed
    )


def names(runs: list[ProtectingRun]) -> str:
    """Join the runs' names: "run 3 of environment qa1 and run 5 of environment qa2"."""
    listed = [run.name for run in runs]
    if len(listed) < 3:
        return " and ".join(listed)
    return ", ".join(listed[:-1]) + ", and " + listed[-1]


def kept_reason(key_arn: str, runs: list[ProtectingRun]) -> str:
    """Return the sentence that explains why the statement stays on the key."""
    verb = "protects" if len(runs) == 1 else "protect"
    return (
        f"the protection statement on key {key_arn} stays because {names(runs)} "
        f"still {verb} the key"
    )


def kept_evidence(key_arn: str, runs: list[ProtectingRun]) -> dict[str, Any]:
    """Return what an event and the run record about a statement kept for others."""
    return {
        "released": True,
        "kept_for": [run.to_evidence() for run in runs],
        "kept_reason": kept_reason(key_arn, runs),
    }


# Protecting a key that another run protects


def check_shared_roles(
    store: SqliteStore,
    key_arn: str,
    run_id: int | None,
    roles: Sequence[str],
    command: str | None,
) -> None:
    """Refuse break-glass roles that differ from those of a statement another run shares.

    The key has one statement, so writing other roles would take the
    exemption away from the break-glass roles of the runs that share it. The
    same roles in any order are accepted. `run_id` is the run that protects,
    or None before a start step opens it. `command` is the command to run
    again with the same roles, or None for the start command.

    NOTE: as in other_protecting_runs, no lock spans this check and the
    write, so two protects with other roles at the same moment can both pass.

    Raises:
        Refused: another open run protects the key with other roles.
    """
    requested = set(roles)
    others = other_protecting_runs(store, key_arn, run_id)
    differing = [r for r in others if r.roles and set(r.roles) != requested]
    if not differing:
        return

    first = differing[0]
    shared_roles = "; ".join(
        f"{r.name} exempts {', '.join(r.roles)}" for r in differing
    )
    unprotect = f"kmsguard unprotect {first.environment} --reason TEXT"
    options = role_options(first.roles)
    retry = f"`{command} {options}`" if command else f"{options} on the start command"
    reason = (
        f"key {key_arn} has one protection statement, which other open runs share: "
        f"{shared_roles}. The request exempts {', '.join(roles)} instead, and one "
        "statement has one list of break-glass roles, so the request would change "
        "which roles may disable the key for those runs too"
    )
    raise Refused(
        f"protection rejected: {reason}. Give the same roles with {retry}, or remove "
        f"the other environment's protection first with `{unprotect}`",
        [GuardResult(SHARED_ROLES_GUARD, False, reason, unprotect)],
    )


def role_options(roles: Sequence[str]) -> str:
    """Return the --break-glass-role options that give `roles`."""
    return " ".join(f"--break-glass-role {role}" for role in roles)


# The closing steps: complete and cancel


def prepare_closing(ctx: StepContext) -> None:
    """Plan the removal a closing step makes, unless another open run needs it."""
    prepare_recorded_removal(ctx)
    _keep_for_others(ctx)


def apply_closing(ctx: StepContext) -> PolicyChange | None:
    """Write the planned removal, unless a run started protecting the key since prepare.

    Raises:
        OperationFailed: the policy changed since prepare, or the write failed.
    """
    _keep_for_others(ctx)
    return apply_planned(ctx)


def _keep_for_others(ctx: StepContext) -> None:
    change = planned(ctx)
    if change is None or ctx.run is None:
        return
    others = other_protecting_runs(ctx.store, change.key_arn, ctx.run.id)
    if others:
        ctx.facts[CHANGE_FACT] = None
        ctx.facts[KEPT_FACT] = (change.key_arn, others)


def record_shared(
    ctx: StepContext, outcome: Outcome, change: PolicyChange | None, label: str
) -> Outcome:
    """Record a step's protection change and the other runs that share the statement.

    A closing step that kept the statement states why in its message and its
    evidence. A step that narrowed or removed the statement while another
    open run still protects the key names that run in a note and its evidence.
    """
    outcome = record(ctx, outcome, change, label)
    kept = ctx.facts.get(KEPT_FACT)
    if change is None and kept is not None:
        return _record_kept(outcome, *kept)
    if change is None or ctx.run is None:
        return outcome

    others = other_protecting_runs(ctx.store, change.key_arn, ctx.run.id)
    if others:
        outcome.evidence[DATA_KEY]["lifted_for"] = [r.to_evidence() for r in others]
        outcome.notes.append(_lifted_note(change, others))
    return outcome


def _record_kept(outcome: Outcome, key_arn: str, runs: list[ProtectingRun]) -> Outcome:
    shared = kept_evidence(key_arn, runs)
    outcome.evidence.setdefault(DATA_KEY, {"key": key_arn, "change": None})
    outcome.evidence[DATA_KEY].update(shared)
    # The run's record keeps describing the live statement, marked as released.
    if isinstance(outcome.data_updates.get(DATA_KEY), dict):
        outcome.data_updates[DATA_KEY].update(shared)
    outcome.message = f"{outcome.message}; {shared['kept_reason']}"
    return outcome


def _lifted_note(change: PolicyChange, runs: list[ProtectingRun]) -> str:
    done = "removed" if protection_actions(change.after) is None else "narrowed"
    verb = "relies" if len(runs) == 1 else "rely"
    commands = ", ".join(f"`kmsguard status {r.environment} --live`" for r in runs)
    return (
        f"warning: this step {done} the protection statement on key "
        f"{change.key_arn}, which {names(runs)} still {verb} on; check with "
        f"{commands}"
    )
