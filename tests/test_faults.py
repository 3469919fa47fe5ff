"""AWS faults: throttling, denial, a wrong key state, an unreachable endpoint.

Each failure leaves the run's state unchanged, records the failed outcome when
the intent was already committed, and names the fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from conftest import REGION, Cli, create_key, drive_rotation, snapshot
from procedure_drivers import add_environment

from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App, Settings
from kmsguard.workflow.aws import AwsSession, AwsSettings
from kmsguard.workflow.context import StepContext
from kmsguard.workflow.errors import OperationFailed

ROTATION = PROCEDURES["rotation"]
DENIED_PRINCIPAL = "arn:aws:sts::123456789012:assumed-role/ops/alice"


class RawBody:
    """The raw body botocore reads from an HTTP response, for an injected response."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def key_state(kms: Any, arn: str) -> str:
    return str(kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"])


def last_events(app: App, count: int) -> list[tuple[str, str]]:
    return [(e.step, e.outcome) for e in app.store.environment_events("prod")][-count:]


def metadata(kms: Any, arn: str, state: str) -> dict[str, Any]:
    """Return moto's DescribeKey metadata of a key, with KeyState replaced."""
    data = dict(kms.describe_key(KeyId=arn)["KeyMetadata"])
    data["KeyState"] = state
    return data


def stub_after_guards(stubber: Stubber) -> Any:
    """Return a confirm callback that turns the Stubber on once the guards passed.

    Reads before it (prepare, guards, drift) still reach moto. Every KMS call
    after it gets the next response in the stubber's queue.
    """

    def activate(ctx: StepContext) -> bool:
        stubber.activate()
        return True

    return activate


def test_throttling_retried_then_applied(app: App, kms: Any) -> None:
    """Throttling is injected at botocore's before-send event, inside the retry
    loop. A Stubber response comes before botocore's retry handler, so it could
    not show that standard retry mode retries the call."""
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    sent: list[str] = []

    def throttle_once(request: Any, **_: Any) -> AWSResponse | None:
        sent.append(request.url)
        if len(sent) > 1:
            return None
        body = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
        return AWSResponse(request.url, 400, {}, RawBody(body))

    kms.meta.events.register_first("before-send.kms.DisableKey", throttle_once)
    try:
        result = app.step(ROTATION, "disable_old_key", "prod", {})
    finally:
        kms.meta.events.unregister("before-send.kms.DisableKey", throttle_once)

    assert len(sent) == 2
    assert result.run.state == "old_key_disabled"
    assert key_state(kms, old_key) == "Disabled"


def test_access_denied_names_action_key_principal(app: App, kms: Any) -> None:
    """moto enforces no key policy or IAM, so botocore's Stubber returns
    AccessDeniedException for DisableKey, then the key to the DescribeKey that
    checks whether the disable took effect."""
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    stubber = Stubber(kms)
    stubber.add_client_error(
        "disable_key",
        "AccessDeniedException",
        f"User: {DENIED_PRINCIPAL} is not authorized to perform: kms:DisableKey "
        f"on resource: {old_key} because no identity-based policy allows the "
        "kms:DisableKey action",
    )
    stubber.add_response(
        "describe_key", {"KeyMetadata": metadata(kms, old_key, "Enabled")}
    )
    stubber.add_response("get_key_rotation_status", {"KeyRotationEnabled": False})

    with pytest.raises(OperationFailed) as denied:
        app.step(ROTATION, "disable_old_key", "prod", {}, stub_after_guards(stubber))
    stubber.deactivate()

    message = str(denied.value)
    assert (
        f"AWS denied kms:DisableKey on {old_key} to principal {DENIED_PRINCIPAL}"
        in message
    )
    assert "Fix: allow kms:DisableKey" in message
    assert denied.value.exit_code == 1
    assert app.store.open_run("prod").state == "rotation_confirmed"  # type: ignore[union-attr]
    assert last_events(app, 2) == [
        ("disable_old_key", "intent"),
        ("disable_old_key", "failed"),
    ]
    assert key_state(kms, old_key) == "Enabled"


def test_access_denied_without_principal_names_caller(app: App, kms: Any) -> None:
    """moto enforces no IAM, so botocore's Stubber returns an AccessDeniedException
    for DisableKey whose message names no principal. The caller ARN that STS
    returned is named instead."""
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    caller = app.aws().caller_identity(REGION)["Arn"]
    stubber = Stubber(kms)
    stubber.add_client_error("disable_key", "AccessDeniedException", "Access denied")
    stubber.add_response(
        "describe_key", {"KeyMetadata": metadata(kms, old_key, "Enabled")}
    )
    stubber.add_response("get_key_rotation_status", {"KeyRotationEnabled": False})

    with pytest.raises(OperationFailed) as denied:
        app.step(ROTATION, "disable_old_key", "prod", {}, stub_after_guards(stubber))
    stubber.deactivate()

    assert f"AWS denied kms:DisableKey on {old_key} to principal {caller}" in str(
        denied.value
    )
    assert app.store.open_run("prod").state == "rotation_confirmed"  # type: ignore[union-attr]


def test_invalid_state_names_key_state_and_needed(app: App, kms: Any) -> None:
    """moto does not enforce key states (DisableKey succeeds on a key pending
    deletion), so botocore's Stubber returns KMSInvalidStateException for
    DisableKey. It then returns the key PendingDeletion to the two DescribeKey
    reads that follow: one checks whether the disable took effect, and one
    names the key's state."""
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    pending = metadata(kms, old_key, "PendingDeletion")
    stubber = Stubber(kms)
    stubber.add_client_error(
        "disable_key",
        "KMSInvalidStateException",
        f"{old_key} is pending deletion.",
    )
    for _ in range(2):
        stubber.add_response("describe_key", {"KeyMetadata": pending})
        stubber.add_response("get_key_rotation_status", {"KeyRotationEnabled": False})

    with pytest.raises(OperationFailed) as invalid:
        app.step(ROTATION, "disable_old_key", "prod", {}, stub_after_guards(stubber))
    stubber.deactivate()

    message = str(invalid.value)
    assert f"Key {old_key} reads PendingDeletion" in message
    assert "rotation disable-old-key needs it Enabled" in message
    assert "kmsguard status prod --live" in message
    assert app.store.open_run("prod").state == "rotation_confirmed"  # type: ignore[union-attr]
    assert last_events(app, 1) == [("disable_old_key", "failed")]


def test_connection_lost_after_intent_records_failure(
    app: App, kms: Any, db_path: Path
) -> None:
    """The connection error is raised at botocore's before-send event, where
    urllib3 would raise it, with one attempt so no retry waits."""
    from botocore.exceptions import EndpointConnectionError

    old_key = drive_rotation(app, kms, "rotation_confirmed")
    session = AwsSession(AwsSettings(max_attempts=1))
    single_try = App(Settings(db_path=db_path, operator="bob"), aws=session)
    client = session.client("kms", REGION)

    def unreachable(request: Any, **_: Any) -> None:
        raise EndpointConnectionError(endpoint_url=request.url)

    client.meta.events.register_first("before-send.kms.DisableKey", unreachable)
    with pytest.raises(OperationFailed) as lost:
        single_try.step(ROTATION, "disable_old_key", "prod", {})
    single_try.close()

    message = str(lost.value)
    assert "EndpointConnectionError" in message
    assert "Fix: the AWS endpoint could not be reached; check --endpoint-url" in message
    assert app.store.open_run("prod").state == "rotation_confirmed"  # type: ignore[union-attr]
    assert last_events(app, 2) == [
        ("disable_old_key", "intent"),
        ("disable_old_key", "failed"),
    ]
    assert key_state(kms, old_key) == "Enabled"


@pytest.mark.e2e
def test_unreachable_endpoint_writes_nothing(cli: Cli) -> None:
    """Nothing listens on port 1 of 127.0.0.1, so every AWS call fails to connect."""
    old_key = create_key(cli.kms())
    add_environment(cli)
    cli.run("rotation", "start", "prod", "--current-key", old_key, check=0)
    before = snapshot(cli.db_path)
    cli.extra_env["AWS_MAX_ATTEMPTS"] = "1"

    result = cli.run(
        "--endpoint-url",
        "http://127.0.0.1:1",
        "rotation",
        "new-key",
        "prod",
        "--create",
    )

    assert result.returncode == 1
    assert "Could not connect to the endpoint URL" in result.stderr
    assert (
        "Fix: the AWS endpoint could not be reached; check --endpoint-url"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert snapshot(cli.db_path) == before


@pytest.mark.e2e
def test_missing_credentials_write_nothing(cli: Cli) -> None:
    """Empty key variables, no config files and no instance metadata leave
    botocore without credentials."""
    old_key = create_key(cli.kms())
    add_environment(cli)
    before = snapshot(cli.db_path)
    cli.extra_env.update(
        {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": ""}
    )

    result = cli.run("rotation", "start", "prod", "--current-key", old_key)

    assert result.returncode == 1
    assert "NoCredentialsError" in result.stderr
    assert "Fix: no AWS credentials were found" in result.stderr
    assert snapshot(cli.db_path) == before


def test_error_message_html_page_shortened() -> None:
    from botocore.exceptions import ClientError

    from kmsguard.workflow.aws import describe_error

    page = "<!DOCTYPE html><html><head><title>500 Internal Server Error</title>"
    page += "</head><body>" + "<p>trace line</p>\n" * 200 + "</body></html>"
    error = ClientError({"Error": {"Code": "500", "Message": page}}, "LookupEvents")

    text = str(describe_error(error, "cloudtrail:LookupEvents", "key K"))

    assert "500 Internal Server Error" in text
    assert "<" not in text
    assert "\n" not in text
    assert len(text) < 500


def test_access_denied_without_principal_names_credentials() -> None:
    from kmsguard.workflow.aws_faults import access_denied_text

    text = access_denied_text("Access denied", "kms:GetKeyPolicy", "key K", None)

    assert "to the principal of your credentials" in text
    assert "principal the" not in text
