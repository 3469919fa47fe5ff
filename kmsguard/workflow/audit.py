"""Integrity checks of runs against the audit log: on load, and over the whole file.

Loading a run for a step checks only that run (its state name, its head and
its confirmations), so steps stay fast. `audit verify` walks the whole hash
chain first, then checks every run the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kmsguard.workflow.errors import IntegrityError

if TYPE_CHECKING:
    from kmsguard.workflow.records import Run
    from kmsguard.workflow.store import SqliteStore

VERIFY_COMMAND = "`kmsguard audit verify`"


def check_run(store: SqliteStore, run: Run) -> None:
    """Stop writes to a run whose stored state does not match its audit log.

    Raises:
        IntegrityError: an unknown procedure or state name, a head that does
            not match the run's newest event, a confirmation row its event
            does not back, or a state that needs a confirmation none records.
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
    confirmations = store.confirmations(run.id)
    if run.state in procedure.confirmed_states and not confirmations:
        raise IntegrityError(
            f"run {run.id} of {run.environment!r} is in state {run.state}, which "
            "needs a recorded support confirmation, but none exists; writes to it "
            f"are stopped. Run {VERIFY_COMMAND}"
        )


def verify_audit(store: SqliteStore) -> dict[str, Any]:
    """Check the whole chain, then every run, and report the first bad row.

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
