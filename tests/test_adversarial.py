"""Attempts to break kmsguard's promises, each kept as a test of the defect it found.

The promises are these. No call disables a key, schedules its deletion or
changes its policy outside the guarded steps. The old key is disabled only
after support's confirmation. Every refusal is recorded and leaves the state
unchanged. Bad input exits with status 2 and writes nothing. Everything runs
against moto's KMS in process and a real SQLite file.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from click.testing import CliRunner
from conftest import (
    OWN_ACCOUNT,
    PIPELINE_ACCOUNT,
    REGION,
    ROTATION_PARAMS,
    ROTATION_PATH,
    create_key,
    snapshot,
)

from kmsguard.cli import main
from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App
from kmsguard.workflow.aws import AwsSession
from kmsguard.workflow.errors import IntegrityError, InvalidInput, Refused
from kmsguard.workflow.policy import PROTECTION_SID, render_key_policy
from kmsguard.workflow.protection import protect, start_run

ROTATION = PROCEDURES["rotation"]
BREAK_GLASS = f"arn:aws:iam::{OWN_ACCOUNT}:role/BreakGlass"


@pytest.fixture(autouse=True)
def short_propagation_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto applies a policy at once, so a read back that differs is final.
    monkeypatch.setenv("KMSGUARD_POLICY_PROPAGATION_SECONDS", "0")


def key_state(kms: Any, arn: str) -> str:
    return str(kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"])


def pipeline_key(kms: Any) -> str:
    """Create a key whose policy lets the pipeline use it, as a key in use does."""
    arn = create_key(kms, Description="shared pipeline key")
    policy = render_key_policy(
        key_account=OWN_ACCOUNT, pipeline_account=PIPELINE_ACCOUNT
    )
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps(policy))
    return arn


def rotate(app: App, env: str, old_key: str, until: str) -> None:
    """Start a rotation of `env` from `old_key` and step it to `until`."""
    app.start(ROTATION, env, {"key": old_key})
    for reached, step in ROTATION_PATH[1:]:
        run = app.store.open_run(env)
        assert run is not None
        if run.state == until:
            return
        assert step is not None
        app.step(ROTATION, step, env, dict(ROTATION_PARAMS[step]))
        run = app.store.open_run(env)
        assert run is not None
        assert run.state == reached


def outcomes(app: App, env: str) -> list[tuple[str, str]]:
    return [(e.step, e.outcome) for e in app.store.environment_events(env)]


def invoke(db_path: Path, *args: str) -> Any:
    runner = CliRunner()
    return runner.invoke(main, ["--db", str(db_path), "--operator", "alice", *args])


# Two environments that share a key


def test_disable_refused_for_shared_key(app: App, kms: Any) -> None:
    shared = create_key(kms, Description="key of prod and qa1")
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    app.start(ROTATION, "qa1", {"key": shared})
    rotate(app, "prod", shared, "rotation_confirmed")

    with pytest.raises(Refused) as refused:
        app.step(ROTATION, "disable_old_key", "prod", {})

    assert [r.guard for r in refused.value.unmet] == ["key_out_of_use"]
    assert "environment qa1" in refused.value.unmet[0].reason
    assert key_state(kms, shared) == "Enabled"
    assert outcomes(app, "prod")[-1] == ("disable_old_key", "refused")


def test_disable_refused_for_adopted_shared_key(app: App, kms: Any) -> None:
    shared = create_key(kms, Description="prod's old key, qa1's new key")
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    app.start(ROTATION, "qa1", {"key": create_key(kms, Description="qa1 old key")})
    app.step(ROTATION, "new_key", "qa1", {"key": shared})
    rotate(app, "prod", shared, "rotation_confirmed")

    with pytest.raises(Refused) as refused:
        app.step(ROTATION, "disable_old_key", "prod", {})

    assert "as its new key" in refused.value.unmet[0].reason
    assert key_state(kms, shared) == "Enabled"


def test_disable_applied_with_unshared_key(app: App, kms: Any) -> None:
    old_key = create_key(kms, Description="prod old key")
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    app.start(ROTATION, "qa1", {"key": create_key(kms, Description="qa1 key")})
    rotate(app, "prod", old_key, "rotation_confirmed")

    result = app.step(ROTATION, "disable_old_key", "prod", {})

    assert result.run.state == "old_key_disabled"
    assert key_state(kms, old_key) == "Disabled"


def test_shared_key_refusal_accepts_risk(app: App, kms: Any) -> None:
    shared = create_key(kms, Description="key of prod and qa1")
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    app.start(ROTATION, "qa1", {"key": shared})
    rotate(app, "prod", shared, "rotation_confirmed")

    result = app.step(
        ROTATION, "disable_old_key", "prod", {"accept_risk": "qa1 is retired"}
    )

    assert result.run.state == "old_key_disabled"
    assert result.event.evidence["accepted_risk"]["reason"] == "qa1 is retired"


def test_cancel_keeps_shared_key_protection(app: App, kms: Any) -> None:
    shared = pipeline_key(kms)
    app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    protected = {"key": shared, "protect": True, "break_glass_roles": [BREAK_GLASS]}
    start_run(app, ROTATION, "qa1", dict(protected))
    start_run(app, ROTATION, "prod", dict(protected))

    app.step(ROTATION, "cancel", "prod", {"reason": "wrong key"})

    text = kms.get_key_policy(KeyId=shared, PolicyName="default")["Policy"]
    sids = [statement.get("Sid") for statement in json.loads(text)["Statement"]]
    assert PROTECTION_SID in sids


# The library front door


def test_modified_procedure_rejected(app: App, kms: Any, db_path: Path) -> None:
    old_key = create_key(kms, Description="old pipeline key")
    app.start(ROTATION, "prod", {"key": old_key})
    unguarded = dataclasses.replace(
        ROTATION.step("disable_old_key"), sources=("started",), guards=()
    )
    others = tuple(s for s in ROTATION.steps if s.name != "disable_old_key")
    forged = dataclasses.replace(ROTATION, steps=(unguarded, *others))
    before = snapshot(db_path)

    with pytest.raises(InvalidInput):
        app.step(forged, "disable_old_key", "prod", {})

    assert key_state(kms, old_key) == "Enabled"
    assert snapshot(db_path) == before


# Drift that cannot be read


class RawBody:
    """The raw body botocore reads from an HTTP response, for an injected response."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def test_disable_refused_when_drift_unreadable(
    app: App, kms: Any, aws: AwsSession
) -> None:
    """AccessDeniedException on GetKeyPolicy of the new key only is injected at
    botocore's before-send event: moto does not evaluate key policies."""
    old_key = create_key(kms, Description="old pipeline key")
    rotate(app, "prod", old_key, "rotation_confirmed")
    run = app.store.open_run("prod")
    assert run is not None and run.new_key_arn is not None
    new_key = run.new_key_arn
    kms.disable_key(KeyId=new_key.split("/")[-1])

    def deny_new_key(request: Any, **_: Any) -> AWSResponse | None:
        if new_key not in request.body.decode():
            return None
        body = b'{"__type":"AccessDeniedException","message":"denied"}'
        return AWSResponse(request.url, 400, HTTPHeaders(), RawBody(body))

    client = aws.client("kms", REGION)
    client.meta.events.register_first("before-send.kms.GetKeyPolicy", deny_new_key)
    try:
        with pytest.raises(Refused) as refused:
            app.step(ROTATION, "disable_old_key", "prod", {})
    finally:
        client.meta.events.unregister("before-send.kms.GetKeyPolicy", deny_new_key)

    assert [r.guard for r in refused.value.unmet] == ["key_drift"]
    assert key_state(kms, old_key) == "Enabled"
    assert outcomes(app, "prod")[-1] == ("disable_old_key", "refused")


# Odd input


def test_env_add_rejects_trailing_newline(db_path: Path) -> None:
    before = snapshot(db_path)

    result = invoke(
        db_path,
        "env",
        "add",
        "prod\n",
        "--region",
        REGION,
        "--pipeline-account",
        PIPELINE_ACCOUNT,
    )

    assert result.exit_code == 2, result.output
    assert snapshot(db_path) in (before, {})


def test_alias_with_trailing_newline_rejected(
    app: App, kms: Any, db_path: Path
) -> None:
    app.start(ROTATION, "prod", {"key": create_key(kms, Description="old key")})
    before = snapshot(db_path)

    with pytest.raises(InvalidInput):
        app.step(ROTATION, "new_key", "prod", {"create": True, "alias": "alias/k\n"})

    assert snapshot(db_path) == before


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00+01:00", "0001-01-01T00:30:00+14:00"]
)
def test_confirmed_at_year_one_invalid(
    app: App, kms: Any, db_path: Path, moment: str
) -> None:
    rotate(app, "prod", create_key(kms, Description="old key"), "support_contacted")
    before = snapshot(db_path)
    params = dict(ROTATION_PARAMS["confirm"], confirmed_at=moment)

    with pytest.raises(InvalidInput):
        app.step(ROTATION, "confirm", "prod", params)

    assert snapshot(db_path) == before


def test_db_path_below_a_file_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")

    result = invoke(blocker / "kmsguard.db", "status")

    assert result.exit_code == 2, result.output
    assert "not-a-directory" in result.stderr


def test_db_not_sqlite_exits_2(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not an SQLite database, just text" * 10)

    result = invoke(garbage, "--output", "json", "status")

    assert result.exit_code == 2, result.output
    assert "garbage.db" in json.loads(result.stdout)["error"]


# Refusals outside the steps


def test_protect_refusal_recorded(app: App, kms: Any) -> None:
    old_key = pipeline_key(kms)
    app.start(ROTATION, "prod", {"key": old_key})
    kms.schedule_key_deletion(KeyId=old_key.split("/")[-1], PendingWindowInDays=7)
    before = kms.get_key_policy(KeyId=old_key, PolicyName="default")["Policy"]

    with pytest.raises(Refused):
        protect(app, "prod", [BREAK_GLASS])

    assert outcomes(app, "prod")[-1] == ("protect", "refused")
    assert kms.get_key_policy(KeyId=old_key, PolicyName="default")["Policy"] == before
    assert app.verify()["ok"]


# Edits made with a SQLite tool


def edit_pipeline_account(db_path: Path, account: str) -> None:
    connection = sqlite3.connect(db_path)
    with connection:
        connection.execute(
            "UPDATE environments SET pipeline_account = ? WHERE name = 'prod'",
            [account],
        )
    connection.close()


def test_audit_verify_finds_edited_environment(app: App, db_path: Path) -> None:
    edit_pipeline_account(db_path, "666666666666")

    report = app.verify()

    assert report["ok"] is False
    assert "pipeline_account" in report["problem"]


def test_apply_policy_stopped_by_environment_edit(
    app: App, kms: Any, db_path: Path
) -> None:
    rotate(app, "prod", create_key(kms, Description="old key"), "new_key_ready")
    run = app.store.open_run("prod")
    assert run is not None and run.new_key_arn is not None
    before = kms.get_key_policy(KeyId=run.new_key_arn, PolicyName="default")
    edit_pipeline_account(db_path, "666666666666")

    with pytest.raises(IntegrityError):
        app.step(
            ROTATION, "apply_policy", "prod", dict(ROTATION_PARAMS["apply_policy"])
        )

    after = kms.get_key_policy(KeyId=run.new_key_arn, PolicyName="default")
    assert after["Policy"] == before["Policy"]


def test_start_stopped_by_environment_edit(app: App, kms: Any, db_path: Path) -> None:
    edit_pipeline_account(db_path, "666666666666")
    before = snapshot(db_path)

    with pytest.raises(IntegrityError):
        app.start(ROTATION, "prod", {"key": create_key(kms, Description="old key")})

    assert snapshot(db_path) == before


# Files that hold the audit log


@pytest.mark.parametrize("suffix", ["", "-wal"])
def test_audit_export_refuses_database_file(
    app: App, db_path: Path, suffix: str
) -> None:
    target = Path(f"{db_path}{suffix}")
    before = snapshot(db_path)

    result = invoke(db_path, "audit", "export", "prod", "--output-file", str(target))

    assert result.exit_code == 2, result.output
    assert snapshot(db_path) == before
    assert app.verify()["ok"]


# The protection statement


@pytest.mark.parametrize(
    "role",
    [f"arn:aws:iam::{OWN_ACCOUNT}:role/*", f"arn:aws:iam::{OWN_ACCOUNT}:role/B?"],
)
def test_protect_rejects_wildcard_role(
    app: App, kms: Any, db_path: Path, role: str
) -> None:
    old_key = pipeline_key(kms)
    app.start(ROTATION, "prod", {"key": old_key})
    policy = kms.get_key_policy(KeyId=old_key, PolicyName="default")["Policy"]
    before = snapshot(db_path)

    with pytest.raises(InvalidInput):
        protect(app, "prod", [role])

    assert snapshot(db_path) == before
    assert kms.get_key_policy(KeyId=old_key, PolicyName="default")["Policy"] == policy


def test_start_rejects_wildcard_role(app: App, kms: Any, db_path: Path) -> None:
    params = {
        "key": pipeline_key(kms),
        "protect": True,
        "break_glass_roles": [f"arn:aws:iam::{OWN_ACCOUNT}:role/*"],
    }
    before = snapshot(db_path)

    with pytest.raises(InvalidInput):
        start_run(app, ROTATION, "prod", params)

    assert snapshot(db_path) == before
