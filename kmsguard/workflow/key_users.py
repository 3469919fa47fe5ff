"""Other environments whose kmsguard runs record a key that their pipeline uses.

Two environments can share a key. The AWS evidence of one environment (its
resources, CloudTrail seen from its account) need not show that the other
pipeline still depends on the key. The other environment's run records it,
so the disable step counts that record as use of the key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kmsguard.workflow.evidence_report import SourceReport

if TYPE_CHECKING:
    from kmsguard.workflow.records import Run
    from kmsguard.workflow.store import SqliteStore

SOURCE = "kmsguard_runs"


def keys_in_use(run: Run) -> list[tuple[str, str]]:
    """Return (role, key ARN) for each key of a run that its pipeline may use.

    The current key counts until the run itself disables it or schedules its
    deletion. The new key counts in every state, cancelled runs included,
    because support may already have switched the pipeline to it.
    """
    keys = []
    if run.current_key_arn and not run.data.get("key_retired"):
        keys.append(("current", run.current_key_arn))
    if run.new_key_arn:
        keys.append(("new", run.new_key_arn))
    return keys


def latest_run(store: SqliteStore, environment: str) -> Run | None:
    """Return the environment's open run, or else its newest run, or None."""
    run = store.open_run(environment)
    if run is not None:
        return run
    runs = store.runs(environment)
    return runs[-1] if runs else None


def other_environment_uses(
    store: SqliteStore, key_arn: str, environment: str
) -> list[str]:
    """Return one reason for each other environment whose latest run uses the key."""
    reasons = []
    for other in store.list_environments():
        run = latest_run(store, other.name) if other.name != environment else None
        if run is None:
            continue
        for role, arn in keys_in_use(run):
            if arn == key_arn:
                reasons.append(
                    f"environment {other.name}: its {run.procedure} run {run.id} "
                    f"in state {run.state} records key {key_arn} as its {role} key"
                )
    return reasons


def runs_source(store: SqliteStore, key_arn: str, environment: str) -> SourceReport:
    """Return the evidence source that lists other environments using the key."""
    source = SourceReport(SOURCE)
    source.reasons.extend(other_environment_uses(store, key_arn, environment))
    if not source.reasons:
        source.note(f"no other environment's latest run records key {key_arn}")
    return source
