"""How long a run may sit in each state before `doctor` calls it stuck.

The limits are judgment, not AWS or vendor facts: a few days for the
operator's own steps, a week for support to respond, and for a disabled key
long enough to notice a pipeline that still depended on it. A state without
an entry gets DEFAULT_EXPECTATION.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kmsguard.workflow.records import Run, parse_time
from kmsguard.workflow.status_view import format_age


@dataclass(frozen=True)
class StateExpectation:
    """How long a run is expected to stay in one state, and what it waits for."""

    limit: timedelta
    waiting_for: str
    advice: str


def _days(count: int) -> timedelta:
    return timedelta(days=count)


OPERATOR_STEP = "The next step is yours to run."
ASK_SUPPORT = "Ask support about ticket {ticket} and record their response."

STATE_EXPECTATIONS: dict[str, StateExpectation] = {
    # Shared by the procedures.
    "started": StateExpectation(_days(2), "the next step", OPERATOR_STEP),
    "policy_applied": StateExpectation(
        _days(2), "the key to be shared with support", OPERATOR_STEP
    ),
    # Onboarding.
    "key_ready": StateExpectation(_days(1), "the key policy", OPERATOR_STEP),
    "shared_with_support": StateExpectation(
        _days(7), "support to configure the pipeline", ASK_SUPPORT
    ),
    "configured": StateExpectation(
        _days(2),
        "verification that the pipeline uses the key",
        "Send test events, then run the next step.",
    ),
    "verified": StateExpectation(_days(2), "the run to be completed", OPERATOR_STEP),
    # Rotation.
    "new_key_ready": StateExpectation(_days(1), "the key policy", OPERATOR_STEP),
    "support_contacted": StateExpectation(
        _days(7), "support to confirm the switch to the new key", ASK_SUPPORT
    ),
    "rotation_confirmed": StateExpectation(
        _days(14),
        "the old key to be disabled",
        "Check the evidence that the old key is unused, then run the next step.",
    ),
    "old_key_disabled": StateExpectation(
        _days(30),
        "deletion of the old key to be scheduled, or the run completed",
        OPERATOR_STEP,
    ),
    "old_key_deletion_scheduled": StateExpectation(
        _days(31),
        "the run to be completed after AWS deletes the key",
        OPERATOR_STEP,
    ),
    # Disablement.
    "removal_requested": StateExpectation(
        _days(7), "support to remove the key from the pipeline", ASK_SUPPORT
    ),
    "removal_confirmed": StateExpectation(
        _days(14), "the key to be disabled", OPERATOR_STEP
    ),
    "key_disabled": StateExpectation(
        _days(30),
        "deletion of the key to be scheduled, or the run completed",
        OPERATOR_STEP,
    ),
    "key_deletion_scheduled": StateExpectation(
        _days(31),
        "the run to be completed after AWS deletes the key",
        OPERATOR_STEP,
    ),
}
DEFAULT_EXPECTATION = StateExpectation(_days(7), "the next step", OPERATOR_STEP)


@dataclass(frozen=True)
class StuckRun:
    """An open run that has stayed in its state longer than expected."""

    run: Run
    age: str
    expectation: StateExpectation

    def message(self) -> str:
        run = self.run
        return (
            f"{run.procedure} run {run.id} of {run.environment} has been in state "
            f"{run.state} for {self.age} (since {run.updated_at}), longer than the "
            f"{self.expectation.limit.days} day(s) expected while it waits for "
            f"{self.expectation.waiting_for}"
        )

    def advice(self) -> str:
        return self.expectation.advice.format(ticket=self.run.ticket_id or "(none)")


def stuck_run(run: Run, now: datetime) -> StuckRun | None:
    """Return the run as stuck when it is open and past its state's limit."""
    if run.closed_at is not None:
        return None
    expectation = STATE_EXPECTATIONS.get(run.state, DEFAULT_EXPECTATION)
    if now - parse_time(run.updated_at) <= expectation.limit:
        return None
    return StuckRun(run, format_age(run.updated_at, now), expectation)
