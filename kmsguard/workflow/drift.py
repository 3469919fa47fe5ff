"""Drift: a key's live state or policy differs from what its run recorded.

Someone can change a key in the console or with the AWS CLI while a run waits,
for example disable the old key while support is still moving the pipeline
off it. Before each step the engine compares the run's keys with the states
the procedure data expects (`Procedure.key_expectations`). It also compares
each key policy kmsguard applied with the live policy. `status --live` shows
the same comparison.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.errors import GuardResult, InvalidInput, KmsguardError
from kmsguard.workflow.records import CANCELLED_STATE, utc_now

if TYPE_CHECKING:
    from collections.abc import Collection

    from kmsguard.workflow.app import App
    from kmsguard.workflow.aws import Kms
    from kmsguard.workflow.context import StepContext
    from kmsguard.workflow.procedure import Procedure, Step
    from kmsguard.workflow.records import Environment, Run
    from kmsguard.workflow.store import SqliteStore

DRIFT_GUARD = "key_drift"
TARGETS = ("current", "new")
# botocore exception classes for an endpoint that could not be reached. A
# read timeout is left out, because one slow call shows nothing about the
# other keys.
CONNECTION_FAILURES = frozenset({"EndpointConnectionError", "ConnectTimeoutError"})
APPLIED_POLICIES = "applied_policies"


@dataclass(frozen=True)
class Drift:
    """One difference between a run's record and a live key."""

    key_arn: str
    target: str  # "current" or "new"
    kind: str  # "state", "missing" or "policy"
    expected: str
    actual: str
    reason: str
    recovery: str
    # Whether the difference stops forward steps; see step_drift.
    blocking: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_arn": self.key_arn,
            "target": self.target,
            "kind": self.kind,
            "expected": self.expected,
            "actual": self.actual,
            "reason": self.reason,
            "recovery": self.recovery,
            "blocking": self.blocking,
        }

    def guard_result(self) -> GuardResult:
        return GuardResult(
            DRIFT_GUARD, False, self.reason, self.recovery, details=self.to_dict()
        )


@dataclass
class LiveCheck:
    """The live states read for a run's keys and the drift found."""

    key_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    drifts: list[Drift] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "keys": self.key_states,
            "drift": [drift.to_dict() for drift in self.drifts],
        }


def run_key(run: Run, target: str) -> str | None:
    return run.new_key_arn if target == "new" else run.current_key_arn


def applied_policy_update(
    run: Run | None, key_arn: str, policy_text: str, principal_form: str
) -> dict[str, Any]:
    """Return the run data update that records a key policy kmsguard applied.

    Every kmsguard write of a key policy records it here, so that a later
    change made outside kmsguard shows as drift.
    """
    policies = dict(run.data.get(APPLIED_POLICIES) or {}) if run else {}
    policies[key_arn] = {
        "policy": policy_text,
        "form": principal_form,
        "applied_at": utc_now(),
    }
    return {APPLIED_POLICIES: policies}


def read_key_state(kms: Kms, key_arn: str) -> str | None:
    """Return the key's KeyState from DescribeKey, or None when it is not found."""
    from botocore.exceptions import ClientError

    from kmsguard.workflow.aws import error_code

    with kms.aws.calling("kms:DescribeKey", key_arn):
        try:
            metadata = kms.client.describe_key(KeyId=key_arn)["KeyMetadata"]
        except ClientError as exc:
            if error_code(exc) == "NotFoundException":
                return None
            raise
    return str(metadata.get("KeyState", ""))


def find_drift(
    kms: Kms,
    environment: Environment,
    procedure: Procedure,
    run: Run,
    shared_keys: Collection[str] = (),
) -> LiveCheck:
    """Compare the run's keys with AWS: expected states and applied policies.

    Only keys the procedure expects something of in the run's state, and keys
    with a policy kmsguard applied, are read, so a run that expects nothing
    makes no AWS call. `shared_keys` are the run's keys that other open runs
    protect (see others_protection_keys).
    """
    check = LiveCheck()
    for target in TARGETS:
        arn = run_key(run, target)
        expected = procedure.expected_key_states(run.state, target)
        if not arn or not expected:
            continue
        state = read_key_state(kms, arn)
        check.key_states[target] = {"arn": arn, "state": state}
        if state not in expected:
            check.drifts.append(
                state_drift(environment, run, target, arn, expected, state)
            )
    missing = {d.key_arn for d in check.drifts if d.kind == "missing"}
    # Another run's protection statement on a key belongs to that run, unless
    # this run keeps the statement in place itself.
    others = (set(shared_keys) | {released_key(run)}) - {held_protection_key(run)}
    for arn, applied in sorted(dict(run.data.get(APPLIED_POLICIES) or {}).items()):
        owner = next((t for t in TARGETS if run_key(run, t) == arn), None)
        if owner is None or arn in missing:
            continue
        drift = policy_drift(
            kms, environment, owner, arn, applied, held=arn not in others
        )
        if drift is not None:
            check.drifts.append(drift)
    return check


def state_drift(
    environment: Environment,
    run: Run,
    target: str,
    arn: str,
    expected: tuple[str, ...],
    actual: str | None,
) -> Drift:
    expected_text = " or ".join(expected)
    if actual is None:
        return Drift(
            arn,
            target,
            "missing",
            expected_text,
            "not found",
            f"the {target} key {arn} of the {run.procedure} run is not found in "
            f"{environment.region}: it was deleted, or the credentials in use "
            "cannot see it",
            f"aws kms describe-key --key-id {arn} --region {environment.region}",
        )
    reason = (
        f"the {target} key {arn} reads {actual}, but the {run.procedure} run in "
        f"state {run.state} expects it {expected_text}: it was changed outside "
        "kmsguard"
    )
    if actual == "Enabled":
        reason += (
            ". Someone may have enabled it because the pipeline still needs it, "
            "so find out why before you disable it again"
        )
    return Drift(
        arn,
        target,
        "state",
        expected_text,
        actual,
        reason,
        state_recovery(arn, environment.region, expected[0], actual),
    )


def state_recovery(arn: str, region: str, expected: str, actual: str) -> str:
    """Return the AWS CLI commands that put a key back into the state a run recorded."""
    key = f"--key-id {arn} --region {region}"
    if actual == "PendingDeletion":
        # CancelKeyDeletion leaves the key Disabled.
        restore = f"aws kms cancel-key-deletion {key}"
        if expected == "Enabled":
            restore += f" && aws kms enable-key {key}"
        return restore
    if expected == "Enabled" and actual == "Disabled":
        return f"aws kms enable-key {key}"
    if expected == "Disabled" and actual == "Enabled":
        # The drift reason tells the operator to find out first why the key
        # was enabled again: the pipeline may have failed without it.
        return f"aws kms disable-key {key}"
    if expected == "PendingDeletion" and actual in ("Enabled", "Disabled"):
        schedule = f"aws kms schedule-key-deletion {key} --pending-window-in-days 30"
        if actual == "Enabled":
            return f"aws kms disable-key {key} && {schedule}"
        return schedule
    return f"aws kms describe-key {key}"


def released_key(run: Run) -> str | None:
    """Return the key whose shared protection statement the run released, or None.

    A run releases the statement when unprotect or a closing step keeps it
    for other open runs. Those runs may then narrow or remove it.
    """
    from kmsguard.workflow.protection_steps import protected_key, recorded

    return protected_key(run) if recorded(run).get("released") else None


def others_protection_keys(store: SqliteStore, run: Run) -> set[str]:
    """Return the run's keys that another open run protects."""
    from kmsguard.workflow.protection_shared import other_protecting_runs

    keys = {run_key(run, target) for target in TARGETS} - {None, ""}
    return {str(arn) for arn in keys if other_protecting_runs(store, str(arn), run.id)}


def held_protection_key(run: Run) -> str | None:
    """Return the key whose protection statement the run keeps in place, or None.

    A run that never protected its key, removed the statement with unprotect,
    or released it to other runs (unprotect or a closing step that kept it
    for them) keeps none. Other runs that protect the key may then add,
    narrow or remove the statement without this run's record changing.
    """
    from kmsguard.workflow.protection_steps import protected_key, recorded

    known = recorded(run)
    if known.get("in_place") and not known.get("released"):
        return protected_key(run)
    return None


def policy_drift(
    kms: Kms,
    environment: Environment,
    target: str,
    arn: str,
    applied: dict[str, Any],
    *,
    held: bool = True,
) -> Drift | None:
    """Compare a key's live policy with the one kmsguard applied, by meaning.

    Without `held`, the key's protection statement belongs to other runs,
    so a live statement of kmsguard's form (a Deny of kms:DisableKey or
    kms:ScheduleKeyDeletion) is left out of the comparison. Any other
    statement under that Sid still counts, and so does the check that the
    pipeline can use the key.
    """
    from kmsguard.workflow import policy

    live = json.loads(kms.get_key_policy(arn))
    expected = json.loads(str(applied["policy"]))
    if not held:
        live, expected = _without_protection(live), _without_protection(expected)
    if policy.same_statements(live, expected):
        return None
    lost = pipeline_access_lost(live, arn, environment, str(applied.get("form")))
    reason = (
        f"the policy of the {target} key {arn} changed outside kmsguard after "
        f"kmsguard applied it at {applied.get('applied_at')}"
    )
    if lost:
        reason += f", and it no longer lets the pipeline use the key: {lost}"
    return Drift(
        arn,
        target,
        "policy",
        "the policy kmsguard applied",
        "a different policy",
        reason,
        f"aws kms get-key-policy --key-id {arn} --policy-name default "
        f"--region {environment.region} --output text",
        blocking=bool(lost),
    )


def _without_protection(doc: dict[str, Any]) -> dict[str, Any]:
    """Return the policy without a protection statement of kmsguard's form."""
    from kmsguard.workflow import policy
    from kmsguard.workflow.policy_grammar import element_values

    def kmsguard_form(statement: dict[str, Any]) -> bool:
        actions = element_values(statement.get("Action", []))
        return (
            statement.get("Sid") == policy.PROTECTION_SID
            and statement.get("Effect") == "Deny"
            and bool(actions)
            and set(actions) <= set(policy.PROTECTED_ACTIONS)
        )

    statements = [s for s in policy.statement_list(doc) if not kmsguard_form(s)]
    return {**doc, "Statement": statements}


def pipeline_access_lost(
    document: dict[str, Any], arn: str, environment: Environment, form: str
) -> str:
    """Return why a policy fails the pipeline's checks, or "" when it passes."""
    from kmsguard.workflow import policy

    try:
        findings = policy.analyse_policy(
            document,
            key_account=arn.split(":")[4],
            pipeline_account=environment.pipeline_account,
            principal_form=form if form in policy.PRINCIPAL_FORMS else "root",
        )
    except InvalidInput as exc:
        return str(exc)
    return "; ".join(f.message for f in policy.policy_errors(findings))


def drift_applies(step: Step) -> bool:
    """Return whether a step checks drift before it runs.

    Recovery steps exist to repair a key's state, and cancelling needs
    neither AWS nor agreement between the run and its keys.
    """
    return not step.recovery and step.dest != CANCELLED_STATE


def step_drift(ctx: StepContext) -> list[Drift]:
    """Return the drift before a step, marking what the step itself brings about.

    A key already in the state the step leads to (the old key disabled in
    the console before `disable-old-key`) does not stop that step.
    """
    assert ctx.run is not None
    shared = others_protection_keys(ctx.store, ctx.run)
    check = find_drift(ctx.kms, ctx.environment, ctx.procedure, ctx.run, shared)
    drifts = []
    for drift in check.drifts:
        after = ctx.procedure.expected_key_states(ctx.step.dest, drift.target)
        if drift.kind == "state" and drift.actual in after:
            drift = replace(drift, blocking=False)
        drifts.append(drift)
    return drifts


def live_status(app: App, rows: list[dict[str, Any]]) -> None:
    """Add each open run's live key states and drift to its status row.

    An AWS error for one environment is shown on its row, and the other
    rows are still checked.
    """
    from kmsguard.states import PROCEDURES
    from kmsguard.workflow.aws import Kms

    # An endpoint that cannot be reached makes every call wait out the
    # timeouts and retries, so it is tried once per region, not once per row.
    unreachable: dict[str, str] = {}
    for row in rows:
        if row.get("run_id") is None:
            continue
        run = app.store.get_run(int(row["run_id"]))
        environment = app.environment(run.environment)
        if environment.region in unreachable:
            row["live"] = {"error": unreachable[environment.region]}
            continue
        kms = Kms(app.aws(), environment.region)
        try:
            shared = others_protection_keys(app.store, run)
            procedure = PROCEDURES[run.procedure]
            check = find_drift(kms, environment, procedure, run, shared)
        except KmsguardError as exc:
            row["live"] = {"error": str(exc)}
            if _connection_failure(exc):
                unreachable[environment.region] = (
                    f"not read, because AWS in {environment.region} could not be "
                    f"reached for environment {run.environment}: {exc}"
                )
            continue
        row["live"] = check.to_dict()
        _add_protection_status(app, run, row["live"])


def _connection_failure(exc: BaseException) -> bool:
    """Return whether botocore failed to reach the endpoint at all.

    Such a failure is the endpoint's, not an error that AWS returned.
    """
    cause = exc.__cause__
    names = {kind.__name__ for kind in type(cause).__mro__} if cause else set()
    return bool(names & CONNECTION_FAILURES)


def _add_protection_status(app: App, run: Run, live: dict[str, Any]) -> None:
    """Add whether the run's protection statement is in place, for runs that have one."""
    from kmsguard.workflow.protection import protection_status
    from kmsguard.workflow.protection_steps import recorded

    if recorded(run):
        live["protection"] = protection_status(app, app.aws(), run)
