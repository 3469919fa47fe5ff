"""Shared fixtures: fake AWS credentials, moto, a real SQLite file, the CLI.

moto 5.2 has no CloudTrail LookupEvents, so a local CloudTrail server
(tests/cloudtrail_server.py on 127.0.0.1) serves every CloudTrail call of the
in-process `aws` fixture and of the `cli` subprocesses, selected with
AWS_ENDPOINT_URL_CLOUDTRAIL. It starts each test with no events and no trails.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

REGION = "eu-west-1"
PIPELINE_ACCOUNT = "210987654321"
OWN_ACCOUNT = "123456789012"  # moto's default account

# Set before boto3 or moto is imported anywhere, so that nothing can reach a
# real AWS endpoint or the instance metadata address.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
)
for name in (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "KMSGUARD_DB",
    "KMSGUARD_REGION",
    "NO_COLOR",
):
    os.environ.pop(name, None)

from moto import mock_aws  # noqa: E402

from kmsguard.workflow.app import App, Settings  # noqa: E402
from kmsguard.workflow.aws import AwsSession, AwsSettings  # noqa: E402
from kmsguard.workflow.procedure import Procedure  # noqa: E402


@pytest.fixture(scope="session")
def shared_aws() -> AwsSession:
    """One AwsSession for the whole run: clients are costly, moto resets per test."""
    return AwsSession(AwsSettings())


@dataclass
class CloudTrailFixture:
    """The local CloudTrail server and the fixture it serves."""

    url: str

    def serve(self, fixture: Any) -> None:
        """Serve `fixture` (events, trails, throttling) from now on."""
        request = urllib.request.Request(
            f"{self.url}/fixture",
            data=json.dumps(fixture).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).close()

    def clear(self) -> None:
        self.serve({"events": []})


@pytest.fixture(scope="session")
def cloudtrail_server() -> Iterator[CloudTrailFixture]:
    from cloudtrail_server import start_server

    url, stop = start_server([])
    # Set before the shared session builds its CloudTrail client, which keeps
    # the endpoint it was built with.
    previous = os.environ.get("AWS_ENDPOINT_URL_CLOUDTRAIL")
    os.environ["AWS_ENDPOINT_URL_CLOUDTRAIL"] = url
    yield CloudTrailFixture(url)
    if previous is None:
        os.environ.pop("AWS_ENDPOINT_URL_CLOUDTRAIL", None)
    else:
        os.environ["AWS_ENDPOINT_URL_CLOUDTRAIL"] = previous
    stop()


@pytest.fixture
def cloudtrail(
    cloudtrail_server: CloudTrailFixture, monkeypatch: pytest.MonkeyPatch
) -> CloudTrailFixture:
    cloudtrail_server.clear()
    # The fixture server delivers each event at once, not up to 20 minutes late.
    monkeypatch.setenv("KMSGUARD_CLOUDTRAIL_DELAY", "0")
    return cloudtrail_server


def kms_use_record(
    key_arn: str,
    name: str = "Decrypt",
    *,
    minutes_ago: float = 60,
    account: str = PIPELINE_ACCOUNT,
    context: dict[str, str] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """Return a CloudTrail record of a KMS call on `key_arn`, as a fixture event.

    The fixture server delivers every record at once, as the scan of a
    delivered call expects; `minutes_ago` places the call in the window.
    """
    when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    record: dict[str, Any] = {
        "eventID": f"{name}-{account}-{when.timestamp()}",
        "eventName": name,
        "eventSource": "kms.amazonaws.com",
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "userIdentity": {
            "type": "AssumedRole",
            "accountId": account,
            "arn": f"arn:aws:sts::{account}:assumed-role/pipeline-enrich/i-1",
        },
        "userAgent": "aws-sdk-java/2.20",
        "requestParameters": {"keyId": key_arn, "encryptionContext": context or {}},
        "resources": [{"ARN": key_arn, "type": "AWS::KMS::Key"}],
        "readOnly": True,
    }
    if error:
        record["errorCode"] = error
    return {"CloudTrailEvent": record}


@pytest.fixture
def aws(shared_aws: AwsSession, cloudtrail: CloudTrailFixture) -> Iterator[AwsSession]:
    with mock_aws():
        shared_aws._caller.clear()
        yield shared_aws


@pytest.fixture
def kms(aws: AwsSession) -> Any:
    return aws.client("kms", REGION)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "kmsguard.db"


@pytest.fixture
def app(aws: AwsSession, db_path: Path) -> Iterator[App]:
    application = App(Settings(db_path=db_path, operator="alice"), aws=aws)
    application.add_environment("prod", REGION, PIPELINE_ACCOUNT)
    yield application
    application.close()


def create_key(kms: Any, **kwargs: Any) -> str:
    """Create a key in moto, naming usage and regionality as AWS always reports them."""
    kwargs.setdefault("KeyUsage", "ENCRYPT_DECRYPT")
    kwargs.setdefault("MultiRegion", False)
    return str(kms.create_key(**kwargs)["KeyMetadata"]["Arn"])


def non_refusal_events(app: App, run_id: int) -> list[Any]:
    """Return a run's audit events other than refusals."""
    return [e for e in app.store.run_events(run_id) if e.outcome != "refused"]


def snapshot(db_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Return every row of every kmsguard table, to show nothing was written."""
    if not db_path.exists():
        return {}
    connection = sqlite3.connect(db_path)
    try:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type='table'"
            )
        ]
        return {
            t: connection.execute(f"SELECT * FROM [{t}] ORDER BY rowid").fetchall()
            for t in tables
        }
    finally:
        connection.close()


# The moto server and the installed command


@dataclass
class MotoServer:
    url: str

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield MotoServer(f"http://{host}:{port}")
    server.stop()


def kmsguard_executable() -> str:
    """Return the installed `kmsguard` command of this interpreter's environment."""
    beside = Path(sys.executable).parent / "kmsguard"
    found = str(beside) if beside.exists() else shutil.which("kmsguard")
    if not found:
        pytest.fail("the kmsguard command is not installed; run `pip install -e .`")
    return found


@dataclass
class Cli:
    """Runs the installed kmsguard command in a subprocess against moto."""

    server: MotoServer
    db_path: Path
    extra_env: dict[str, str]
    cloudtrail: CloudTrailFixture | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.cloudtrail is not None:
            env["AWS_ENDPOINT_URL_CLOUDTRAIL"] = self.cloudtrail.url
            env["KMSGUARD_CLOUDTRAIL_DELAY"] = "0"  # the server delivers at once
        env.update(
            {
                "AWS_ENDPOINT_URL": self.server.url,
                "KMSGUARD_DB": str(self.db_path),
                "KMSGUARD_OPERATOR": "alice",
                "NO_COLOR": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def run(
        self, *args: str, input_text: str | None = None, check: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [kmsguard_executable(), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            input=input_text,
            timeout=120,
        )
        if check is not None:
            assert result.returncode == check, (
                result.returncode,
                result.stdout,
                result.stderr,
            )
        return result

    def json(self, *args: str, check: int | None = 0) -> dict[str, Any]:
        result = self.run("--output", "json", *args, check=check)
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def kms(self) -> Any:
        import boto3

        return boto3.client("kms", region_name=REGION, endpoint_url=self.server.url)


@pytest.fixture
def cli(moto_server: MotoServer, tmp_path: Path, cloudtrail: CloudTrailFixture) -> Cli:
    moto_server.reset()
    return Cli(moto_server, tmp_path / "kmsguard.db", {}, cloudtrail)


# Driving a rotation in process

ROTATION_PARAMS: dict[str, dict[str, Any]] = {
    "new_key": {"create": True},
    "apply_policy": {"pipeline_principal": "root", "admin_roles": []},
    "contact_support": {"ticket": "SUP-1"},
    "confirm": {
        "ticket": "SUP-1",
        "confirmed_by": "Sam (vendor support)",
        "message": "switch done",
    },
    "disable_old_key": {},
    # A test cannot wait out the observation period, and CloudTrail has not
    # delivered the minutes since the disable, so the risk is accepted.
    "schedule_deletion": {
        "window_days": 30,
        "accept_risk": "test: the key was disabled moments ago",
    },
    "complete": {},
    "cancel": {"reason": "testing"},
}
ROTATION_PATH = (
    ("started", None),
    ("new_key_ready", "new_key"),
    ("policy_applied", "apply_policy"),
    ("support_contacted", "contact_support"),
    ("rotation_confirmed", "confirm"),
    ("old_key_disabled", "disable_old_key"),
    ("old_key_deletion_scheduled", "schedule_deletion"),
)


def step_along(
    app: App,
    procedure: Procedure,
    path: Sequence[tuple[str, str | None]],
    params: dict[str, dict[str, Any]],
    state: str,
    env: str = "prod",
    run_step: Callable[[Procedure, str, str, dict[str, Any]], object] | None = None,
) -> None:
    """Step the environment's newest run along `path` until it is in `state`.

    Each entry of `path` pairs a state with the step that reaches it, and the
    first entry is the state the start step reaches. `run_step` runs one step
    with a copy of its `params` entry, by default `app.step`.
    """
    run_step = run_step or app.step
    for reached, step in path[1:]:
        if app.store.runs(env)[-1].state == state:
            break
        assert step is not None
        run_step(procedure, step, env, dict(params[step]))
        assert app.store.runs(env)[-1].state == reached


def drive_rotation(app: App, kms: Any, state: str, env: str = "prod") -> str:
    """Start a rotation on a fresh old key and step it to `state`; return the old key ARN."""
    from kmsguard.states import PROCEDURES

    rotation = PROCEDURES["rotation"]
    old_key = create_key(kms, Description="old pipeline key")
    app.start(rotation, env, {"key": old_key})
    step_along(app, rotation, ROTATION_PATH, ROTATION_PARAMS, state, env)
    return old_key
