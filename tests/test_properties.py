"""Random sequences of steps keep the safety rules, the audit log and the chain.

A hypothesis state machine drives the steps a CLI user can run, through the
library the CLI calls: starts, every step of every procedure read from the
procedure data (recoveries, cancels and repeats included), and key changes
made outside kmsguard. After each rule it checks that no run reached a state
in which kmsguard disabled or scheduled deletion of its key without a support
confirmation recorded since the run last waited for support, that no key
kmsguard knows was disabled except by such a run, that each run's state
matches its audit log, and that the whole chain verifies.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from moto import mock_aws

from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App, Settings
from kmsguard.workflow.aws import AwsSession
from kmsguard.workflow.errors import (
    InvalidInput,
    OperationFailed,
    Refused,
)
from kmsguard.workflow.procedure import Procedure, Step
from kmsguard.workflow.records import CANCELLED_STATE
from kmsguard.workflow.recovery import recover

REGION = "eu-west-1"
PIPELINE_ACCOUNT = "210987654321"
TICKET = "SUP-1"
# Parameters a user gives each kind of step; a handler not listed gets none.
PARAMS_BY_HANDLER: dict[str, dict[str, Any]] = {
    "new_key": {"create": True},
    "apply_policy": {"pipeline_principal": "root", "admin_roles": []},
    "record_ticket": {"ticket": TICKET},
    "share_key": {"ticket": TICKET, "components": "all"},
    "record_confirmation": {"ticket": TICKET, "confirmed_by": "Sam", "message": "ok"},
    # A test cannot wait out the observation period after a disable.
    "schedule_deletion": {"window_days": 30, "accept_risk": "test: no waiting"},
    "cancel": {"reason": "changed plans"},
}
ALL_STEPS = [
    (procedure.name, step.name)
    for procedure in PROCEDURES.values()
    for step in procedure.steps
]
OUTSIDE_CHANGES = ("disable", "enable", "schedule_deletion", "cancel_deletion")
# Outcomes a step may end with besides being applied; IntegrityError and any
# exception outside the kmsguard tree fail the test.
EXPECTED_ERRORS = (InvalidInput, Refused, OperationFailed)


class StepMachine(RuleBasedStateMachine):
    """One environment, one database and one moto account per example."""

    aws: AwsSession

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.mock = mock_aws()
        self.mock.start()
        self.aws._caller.clear()
        self.kms = self.aws.client("kms", REGION)
        path = Path(self.directory.name) / "kmsguard.db"
        self.app = App(Settings(db_path=path, operator="alice"), aws=self.aws)
        self.app.add_environment("prod", REGION, PIPELINE_ACCOUNT)
        self.keys: list[str] = []
        self.changed_outside: set[str] = set()

    def teardown(self) -> None:
        self.app.close()
        self.mock.stop()
        self.directory.cleanup()

    # Rules

    @precondition(lambda self: self.app.store.open_run("prod") is None)
    @rule(name=st.sampled_from(sorted(PROCEDURES)))
    def start(self, name: str) -> None:
        procedure = PROCEDURES[name]
        params: dict[str, Any] = {}
        if procedure.start.handler == "record_key":
            params["key"] = self.new_key()
        self.attempt(procedure, procedure.start, params)

    @rule(data=st.data())
    def advance(self, data: st.DataObject) -> None:
        """Run a forward step the open run's state allows, to reach deep states."""
        self.advance_open_run(data)

    @rule(data=st.data())
    def advance_again(self, data: st.DataObject) -> None:
        """The same as advance: a second rule makes progress twice as likely."""
        self.advance_open_run(data)

    @precondition(lambda self: self.recoverable() is not None)
    @rule(data=st.data())
    def recovery(self, data: st.DataObject) -> None:
        """Run a recovery step of the run whose key kmsguard retired."""
        run = self.recoverable()
        assert run is not None
        procedure = PROCEDURES[run.procedure]
        steps = [s for s in procedure.steps if s.recovery and run.state in s.sources]
        if steps:
            self.attempt(procedure, data.draw(st.sampled_from(steps)))

    @precondition(lambda self: self.app.store.open_run("prod") is not None)
    @rule(now=st.integers(min_value=0, max_value=3))
    def cancel(self, now: int) -> None:
        """Cancel the open run, in one of four turns so that runs also get deep."""
        run = self.app.store.open_run("prod")
        assert run is not None
        procedure = PROCEDURES[run.procedure]
        cancel = next(s for s in procedure.steps if s.dest == CANCELLED_STATE)
        if now == 0:
            self.attempt(procedure, cancel)

    @rule(pick=st.sampled_from(ALL_STEPS))
    def any_step(self, pick: tuple[str, str]) -> None:
        """Run any step of any procedure: repeats, wrong order, recoveries."""
        procedure = PROCEDURES[pick[0]]
        self.attempt(procedure, procedure.step(pick[1]))

    @precondition(lambda self: bool(self.keys))
    @rule(data=st.data(), change=st.sampled_from(OUTSIDE_CHANGES))
    def change_key_outside(self, data: st.DataObject, change: str) -> None:
        """Change a key the way an operator in the console would."""
        arn = data.draw(st.sampled_from(self.keys))
        key_id = arn.split("/")[-1]
        state = self.kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]
        if change == "disable" and state == "Enabled":
            self.kms.disable_key(KeyId=key_id)
        elif change == "enable" and state == "Disabled":
            self.kms.enable_key(KeyId=key_id)
        elif change == "schedule_deletion" and state in ("Enabled", "Disabled"):
            self.kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        elif change == "cancel_deletion" and state == "PendingDeletion":
            self.kms.cancel_key_deletion(KeyId=key_id)
        else:
            return
        self.changed_outside.add(arn)

    # Invariants

    @invariant()
    def chain_verifies(self) -> None:
        report = self.app.verify()
        assert report["ok"], report

    @invariant()
    def state_matches_audit_log(self) -> None:
        for run in self.app.store.all_runs():
            replayed = replay(self.app, run.id)
            assert replayed == run.state, (run.id, replayed, run.state)

    @invariant()
    def retired_only_after_confirmation(self) -> None:
        for run in self.app.store.all_runs():
            procedure = PROCEDURES[run.procedure]
            for event in self.app.store.run_events(run.id):
                if event.outcome != "applied":
                    continue
                if event.to_state in procedure.key_retired_states:
                    assert confirmed_before(self.app, procedure, run.id, event.id), (
                        run.id,
                        event.id,
                    )

    @invariant()
    def keys_disabled_only_by_retiring_runs(self) -> None:
        retiring = {
            run.current_key_arn
            for run in self.app.store.all_runs()
            if any(
                e.outcome == "applied"
                and e.to_state in PROCEDURES[run.procedure].key_retired_states
                for e in self.app.store.run_events(run.id)
            )
        }
        for arn in self.keys:
            if arn in self.changed_outside:
                continue
            state = self.kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"]
            assert state == "Enabled" or arn in retiring, (arn, state)

    # Helpers

    def advance_open_run(self, data: st.DataObject) -> None:
        run = self.app.store.open_run("prod")
        if run is None:
            return
        procedure = PROCEDURES[run.procedure]
        choices = [
            step
            for step in procedure.steps_from(run.state)
            if not step.recovery and step.dest != CANCELLED_STATE
        ]
        if choices:
            self.attempt(procedure, data.draw(st.sampled_from(choices)))

    def recoverable(self) -> Any:
        return self.app.engine._find_recoverable("prod")

    def new_key(self) -> str:
        arn = str(
            self.kms.create_key(KeyUsage="ENCRYPT_DECRYPT", MultiRegion=False)[
                "KeyMetadata"
            ]["Arn"]
        )
        self.keys.append(arn)
        return arn

    def attempt(
        self, procedure: Procedure, step: Step, params: dict[str, Any] | None = None
    ) -> None:
        """Run a step as its CLI command would; check what it changed."""
        if params is None:
            params = dict(PARAMS_BY_HANDLER.get(step.handler, {}))
        before = self.app.store.open_run("prod")
        try:
            if step is procedure.start:
                result = self.app.start(procedure, "prod", params)
            elif step.recovery:
                result = recover(self.app, step.name, "prod", params)
            else:
                result = self.app.step(procedure, step.name, "prod", params)
        except EXPECTED_ERRORS:
            after = self.app.store.open_run("prod")
            if not step.recovery:
                assert same_run_state(before, after), (step.name, before, after)
            return
        # A recovery acts on whichever procedure's run retired the key, so its
        # destination is that procedure's step of the same name.
        expected = step
        if step.recovery:
            expected = PROCEDURES[result.run.procedure].step(step.name)
        assert result.run.state == expected.dest, (step.name, result.run.state)
        new_key = result.run.new_key_arn
        if new_key and new_key not in self.keys:
            self.keys.append(new_key)


def same_run_state(before: Any, after: Any) -> bool:
    if before is None or after is None:
        return before is after
    return (before.id, before.state, before.version) == (
        after.id,
        after.state,
        after.version,
    )


def replay(app: App, run_id: int) -> str | None:
    """Return the state the run's events lead to, checking each event on the way."""
    state: str | None = None
    for event in app.store.run_events(run_id):
        if state is not None:
            assert event.from_state == state, (event.id, event.from_state, state)
        if event.outcome == "applied":
            state = event.to_state
        else:
            assert event.to_state == state, (event.id, event.to_state, state)
    return state


def confirmed_before(
    app: App, procedure: Procedure, run_id: int, event_id: int
) -> bool:
    """Return whether a confirmation was recorded since the run last waited for support."""
    events = [e for e in app.store.run_events(run_id) if e.id < event_id]
    waits = [
        e.id
        for e in events
        if e.outcome == "applied" and e.to_state == procedure.waiting_state
    ]
    since = max(waits, default=0)
    confirmation_events = set(
        app.store.conn.execute(
            "SELECT event_id FROM confirmations WHERE run_id = ?", [run_id]
        ).fetchall()
    )
    return any(since < found < event_id for (found,) in confirmation_events)


def test_random_steps_keep_safety_and_audit(
    shared_aws: AwsSession, cloudtrail: Any
) -> None:
    StepMachine.aws = shared_aws
    run_state_machine_as_test(
        StepMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
