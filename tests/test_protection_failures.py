"""Tests of AWS failures around a protection change: retries and putting back.

moto applies a key policy at once and never denies a call by policy, so these
tests wrap the KMS client in botocore.stub.Stubber for the step's AWS writes.
The Stubber is switched on in the confirmation callback, after every guard
passed. From then on it returns the queued responses to the step's calls, in
order, and checks each request's parameters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from conftest import OWN_ACCOUNT, REGION
from test_protection import open_run, start_protected, step_to

from kmsguard.states.rotation import ROTATION
from kmsguard.workflow.app import App
from kmsguard.workflow.aws import AwsSession
from kmsguard.workflow.errors import InvalidInput, OperationFailed
from kmsguard.workflow.protection_kms import (
    PropagationWait,
    call_after_policy_change,
)
from kmsguard.workflow.protection_policy import (
    plan_narrow,
)


class FakeClock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def denied(code: str = "AccessDeniedException") -> OperationFailed:
    failure = OperationFailed(f"AWS kms:DisableKey failed: {code}")
    failure.aws_code = code  # type: ignore[attr-defined]
    return failure


class Flaky:
    """A KMS call that fails `failures` times with `code`, then returns "done"."""

    def __init__(self, failures: int, code: str = "AccessDeniedException") -> None:
        self.failures = failures
        self.code = code
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise denied(self.code)
        return "done"


# call_after_policy_change


def test_retry_until_policy_applies() -> None:
    clock = FakeClock()
    call = Flaky(2)
    wait = PropagationWait(timeout=30, sleep=clock.sleep, clock=clock.time)

    assert call_after_policy_change(call, wait) == "done"
    assert call.calls == 3
    assert clock.sleeps == [0.5, 1.0]


def test_retry_gives_up_after_timeout() -> None:
    clock = FakeClock()
    call = Flaky(100)
    wait = PropagationWait(timeout=3, sleep=clock.sleep, clock=clock.time)

    with pytest.raises(OperationFailed, match="AccessDeniedException"):
        call_after_policy_change(call, wait)

    assert clock.now == pytest.approx(3.0)
    assert clock.sleeps == [0.5, 1.0, 1.5]


def test_retry_skips_other_errors() -> None:
    clock = FakeClock()
    call = Flaky(1, code="KMSInvalidStateException")
    wait = PropagationWait(timeout=30, sleep=clock.sleep, clock=clock.time)

    with pytest.raises(OperationFailed):
        call_after_policy_change(call, wait)

    assert call.calls == 1
    assert clock.sleeps == []


def test_propagation_wait_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMSGUARD_POLICY_PROPAGATION_SECONDS", "12.5")

    assert PropagationWait.from_environment().timeout == 12.5


def test_propagation_wait_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KMSGUARD_POLICY_PROPAGATION_SECONDS", raising=False)

    assert PropagationWait.from_environment().timeout == 30.0


@pytest.mark.parametrize("value", ["soon", "-1", "301"])
def test_propagation_wait_invalid_value(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("KMSGUARD_POLICY_PROPAGATION_SECONDS", value)

    with pytest.raises(InvalidInput, match="KMSGUARD_POLICY_PROPAGATION_SECONDS"):
        PropagationWait.from_environment()


# The disable step against a stubbed KMS client


@pytest.fixture
def stubber(aws: AwsSession) -> Iterator[Stubber]:
    stub = Stubber(aws.client("kms", REGION))
    yield stub
    stub.deactivate()


def policy_text(kms: Any, arn: str) -> str:
    return str(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])


def queue_narrowing(stubber: Stubber, arn: str, before: str) -> None:
    """Queue the calls that narrow the protection: read, put, read back."""
    after = plan_narrow(arn, (before, json.loads(before)))
    assert after is not None
    policy = {"KeyId": arn, "PolicyName": "default"}
    stubber.add_response("get_key_policy", {"Policy": before}, policy)
    stubber.add_response("put_key_policy", {}, {**policy, "Policy": ANY})
    stubber.add_response("get_key_policy", {"Policy": after.after_text}, policy)


def disabled_metadata(arn: str) -> dict[str, Any]:
    return {
        "KeyMetadata": {
            "KeyId": arn.split("/")[-1],
            "Arn": arn,
            "AWSAccountId": OWN_ACCOUNT,
            "KeyState": "Disabled",
            "KeySpec": "SYMMETRIC_DEFAULT",
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeyManager": "CUSTOMER",
            "Origin": "AWS_KMS",
            "MultiRegion": False,
        }
    }


def disable_with(app: App, stubber: Stubber) -> None:
    def confirm(ctx: Any) -> bool:
        stubber.activate()
        return True

    app.step(ROTATION, "disable_old_key", "prod", {}, confirm)


def test_disable_retried_while_narrowing_applies(
    app: App, kms: Any, stubber: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMSGUARD_POLICY_PROPAGATION_SECONDS", "0.05")
    old_key = start_protected(app, kms)
    step_to(app, "rotation_confirmed")
    queue_narrowing(stubber, old_key, policy_text(kms, old_key))
    key_id = {"KeyId": old_key.split("/")[-1]}
    stubber.add_client_error(
        "disable_key", "AccessDeniedException", "denied by key policy", 400, key_id
    )
    stubber.add_response("disable_key", {}, key_id)
    stubber.add_response("describe_key", disabled_metadata(old_key), {"KeyId": old_key})
    stubber.add_response(
        "get_key_rotation_status", {"KeyRotationEnabled": True}, {"KeyId": old_key}
    )

    disable_with(app, stubber)

    stubber.assert_no_pending_responses()
    assert open_run(app).state == "old_key_disabled"


def test_failed_disable_puts_policy_back(
    app: App, kms: Any, stubber: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMSGUARD_POLICY_PROPAGATION_SECONDS", "0")
    old_key = start_protected(app, kms)
    step_to(app, "rotation_confirmed")
    before = policy_text(kms, old_key)
    queue_narrowing(stubber, old_key, before)
    stubber.add_client_error(
        "disable_key",
        "KMSInvalidStateException",
        "key is pending import",
        400,
        {"KeyId": old_key.split("/")[-1]},
    )
    stubber.add_response(
        "put_key_policy",
        {},
        {"KeyId": old_key, "PolicyName": "default", "Policy": before},
    )

    with pytest.raises(OperationFailed, match="put back"):
        disable_with(app, stubber)

    stubber.assert_no_pending_responses()
    run = open_run(app)
    assert run.state == "rotation_confirmed"
    assert app.store.run_events(run.id)[-1].outcome == "failed"


def test_disable_stopped_when_policy_changed_meanwhile(
    app: App, kms: Any, stubber: Stubber
) -> None:
    old_key = start_protected(app, kms)
    step_to(app, "rotation_confirmed")
    changed = json.loads(policy_text(kms, old_key))
    changed["Statement"] = changed["Statement"][1:]
    stubber.add_response(
        "get_key_policy",
        {"Policy": json.dumps(changed)},
        {"KeyId": old_key, "PolicyName": "default"},
    )

    with pytest.raises(OperationFailed, match="changed after kmsguard read it"):
        disable_with(app, stubber)

    stubber.assert_no_pending_responses()
    assert open_run(app).state == "rotation_confirmed"
