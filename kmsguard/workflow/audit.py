"""Integrity checks of runs against the audit log: on load, and over the whole file.

Loading a run for a step checks only that run (its state name, its head, its
environment row and its confirmations), so steps stay fast. `audit verify`
walks the whole hash chain first, then checks every run and environment the
same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kmsguard.workflow.errors import IntegrityError

if TYPE_CHECKING:
    from kmsguard.workflow.records import Environment, Run
    from kmsguard.workflow.store import SqliteStore

VERIFY_COMMAND = "`kmsguard audit verify`"
# The events that write an environment row. Their evidence contains its fields.
ENVIRONMENT_STEPS = ("env_add", "env_set_resources")


def check_run(store: SqliteStore, run: Run) -> None:
    """Stop writes to a run whose stored state does not match its audit log.

    Raises:
        IntegrityError: the run's stored state does not match its audit log.
            The check covers the procedure and state names, the run's head
            against its newest event, its environment row and confirmation
            rows against their events, and a state that needs a confirmation
            none records.
    """
    from kmsguard.states import PROCEDURES

    procedure = PROCEDURES.get(run.procedure)
    if procedure is None or run.state not in procedure.states:
        raise IntegrityError(
            f"run {run.id} of {run.environment!r} has an unknown procedure or "
            f"state ({run.procedure}, {run.state!r}); writes to it are stopped. "
            f"Run {VERIFY_COMMAND}"
        )
    store.check_run_head(run)
    environment = store.get_environment(run.environment)
    if environment is not None:
        check_environment(store, environment)
    confirmations = store.confirmations(run.id)
    if run.state in procedure.confirmed_states and not confirmations:
        raise IntegrityError(
            f"run {run.id} of {run.environment!r} is in state {run.state}, which "
            "needs a recorded support confirmation, but none exists; writes to it "
            f"are stopped. Run {VERIFY_COMMAND}"
        )


def environment_problem(store: SqliteStore, environment: Environment) -> str:
    """Return how an environment row differs from the events that wrote it, or "".

    The hash chain covers events and run rows only, so an environment edited
    with a SQLite tool (its region or pipeline account) shows only here.
    """
    expected: dict[str, Any] = {}
    for event in store.environment_events(environment.name):
        if event.run_id is None and event.step in ENVIRONMENT_STEPS:
            expected.update(event.evidence)
    if not expected:
        return "no env_add event records it: the row was inserted"
    actual = environment.to_dict()
    changed = sorted(
        name for name, value in expected.items() if actual.get(name) != value
    )
    if not changed:
        return ""
    return (
        f"its fields {', '.join(changed)} differ from what its audit events recorded: "
        "the row was edited"
    )


def check_environment(store: SqliteStore, environment: Environment) -> None:
    """Stop writes for an environment whose row does not match its audit events.

    Raises:
        IntegrityError: the environment row was edited or inserted outside
            kmsguard.
    """
    problem = environment_problem(store, environment)
    if problem:
        raise IntegrityError(
            f"environment {environment.name!r} failed its integrity check: "
            f"{problem}. Writes to it are stopped; run {VERIFY_COMMAND}"
        )


def verify_audit(store: SqliteStore) -> dict[str, Any]:
    """Check the chain, then every run and environment, and report the first bad row.

    Returns the chain report: `ok` and `events_checked`, and when a check
    fails, `bad_event` or `bad_run` with the `problem`.
    """
    report = store.verify_chain()
    if not report["ok"]:
        return report
    for run in store.all_runs():
        try:
            check_run(store, run)
        except IntegrityError as exc:
            return _failed(report, str(exc), bad_run=run.id)
    for environment in store.list_environments():
        problem = environment_problem(store, environment)
        if problem:
            return _failed(report, f"environment {environment.name!r}: {problem}")
    for event_id in store.confirmation_events_without_rows():
        problem = (
            f"event {event_id} records a support confirmation whose confirmations "
            "row is missing: the row was deleted"
        )
        return _failed(report, problem, bad_event=event_id)
    return report


def _failed(report: dict[str, Any], problem: str, **bad: int) -> dict[str, Any]:
    return {
        "ok": False,
        "events_checked": report["events_checked"],
        "problem": problem,
        **bad,
    }
