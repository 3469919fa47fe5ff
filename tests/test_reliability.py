"""Intents, races, lock waits and the database file, in process.

An interrupted step is set up the way a crashed process leaves it: an intent
event committed by a process that has since ended. The kill tests in
test_kill.py produce the same state by killing a real `kmsguard` process.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import (
    PIPELINE_ACCOUNT,
    REGION,
    ROTATION_PARAMS,
    create_key,
    drive_rotation,
)

from kmsguard.cli import main
from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App, Settings
from kmsguard.workflow.context import StepContext
from kmsguard.workflow.errors import Conflict, LockTimeout
from kmsguard.workflow.intents import INTENT_LEASE, running_owner
from kmsguard.workflow.records import Event, NewEvent, RunChange, parse_time

ROTATION = PROCEDURES["rotation"]
# The tag kmsguard puts on each key it creates: ENV/RUN_ID.
RUN_TAG = "kmsguard:run"


def ended_pid() -> int:
    """Return the pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def leave_intent(
    app: App, step: str, evidence: dict[str, Any], pid: int | None = None
) -> Event:
    """Commit an intent as the engine claims one, for a process that has ended."""
    run = app.store.open_run("prod")
    assert run is not None
    claimed = {**evidence, "pid": pid or ended_pid(), "host": socket.gethostname()}
    _, event = app.store.compare_and_set(
        run,
        RunChange(state=run.state, pending_intent=True),
        NewEvent(
            step=step,
            outcome="intent",
            operator="bob",
            from_state=run.state,
            to_state=run.state,
            message=f"about to {step}",
            evidence=claimed,
        ),
    )
    return event


def keys_tagged(kms: Any, value: str) -> list[str]:
    found = []
    for key in kms.list_keys()["Keys"]:
        tags = kms.list_resource_tags(KeyId=key["KeyId"])["Tags"]
        if {"TagKey": RUN_TAG, "TagValue": value} in tags:
            found.append(key["KeyArn"])
    return found


def key_state(kms: Any, arn: str) -> str:
    return str(kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"])


def outcomes(app: App) -> list[tuple[str, str]]:
    return [(e.step, e.outcome) for e in app.store.environment_events("prod")]


def test_interrupted_create_adopts_tagged_key(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "started")
    run = app.store.open_run("prod")
    assert run is not None
    tag = f"prod/{run.id}"
    leave_intent(
        app,
        "new_key",
        {"action": "kms:CreateKey", "tag": {RUN_TAG: tag}, "params": {"create": True}},
    )
    created = create_key(kms, Tags=[{"TagKey": RUN_TAG, "TagValue": tag}])

    result = app.step(ROTATION, "new_key", "prod", {"create": True})

    assert result.run.state == "new_key_ready"
    assert result.run.new_key_arn == created
    assert keys_tagged(kms, tag) == [created]
    assert result.run.pending_intent_id is None
    assert "reconciled" in result.event.message


def test_interrupted_create_retried_when_no_key(app: App, kms: Any) -> None:
    drive_rotation(app, kms, "started")
    run = app.store.open_run("prod")
    assert run is not None
    tag = f"prod/{run.id}"
    leave_intent(
        app,
        "new_key",
        {"action": "kms:CreateKey", "tag": {RUN_TAG: tag}, "params": {"create": True}},
    )

    result = app.step(ROTATION, "new_key", "prod", {"create": True})

    assert result.run.state == "new_key_ready"
    assert keys_tagged(kms, tag) == [result.run.new_key_arn]
    assert ("new_key", "failed") in outcomes(app)
    assert outcomes(app)[-1] == ("new_key", "applied")


def test_interrupted_disable_completed_then_next_step(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    leave_intent(app, "disable_old_key", {"action": "kms:DisableKey", "key": old_key})
    kms.disable_key(KeyId=old_key.split("/")[-1])

    result = app.step(ROTATION, "complete", "prod", {})

    assert result.run.state == "completed"
    assert [event.step for event in result.reconciled] == ["disable_old_key"]
    assert result.reconciled[0].to_state == "old_key_disabled"
    assert key_state(kms, old_key) == "Disabled"


def test_interrupted_disable_not_done_marked_failed(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    intent = leave_intent(
        app, "disable_old_key", {"action": "kms:DisableKey", "key": old_key}
    )

    result = app.step(ROTATION, "disable_old_key", "prod", {})

    failed = [e for e in app.store.environment_events("prod") if e.outcome == "failed"]
    assert [e.resolves for e in failed] == [intent.id]
    assert "did not take effect" in failed[0].message
    assert result.run.state == "old_key_disabled"
    assert key_state(kms, old_key) == "Disabled"


def test_rerun_of_completed_step_changes_nothing(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    leave_intent(app, "disable_old_key", {"action": "kms:DisableKey", "key": old_key})
    kms.disable_key(KeyId=old_key.split("/")[-1])

    result = app.step(ROTATION, "disable_old_key", "prod", {})

    applied = [o for o in outcomes(app) if o == ("disable_old_key", "applied")]
    assert result.run.state == "old_key_disabled"
    assert len(applied) == 1
    assert "already taken effect" in result.outcome.notes[0]


def test_intent_of_running_process_blocks_step(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    leave_intent(
        app,
        "disable_old_key",
        {"action": "kms:DisableKey", "key": old_key},
        pid=os.getpid(),
    )

    with pytest.raises(Conflict) as busy:
        app.step(ROTATION, "disable_old_key", "prod", {})

    assert "in progress" in str(busy.value)
    assert f"process {os.getpid()}" in str(busy.value)
    assert outcomes(app)[-1] == ("disable_old_key", "refused")
    assert key_state(kms, old_key) == "Enabled"


def test_intent_of_other_host_waits_for_lease(app: App, kms: Any) -> None:
    old_key = drive_rotation(app, kms, "rotation_confirmed")
    intent = leave_intent(
        app, "disable_old_key", {"action": "kms:DisableKey", "key": old_key}
    )
    elsewhere = Event(**{**intent.to_dict(), "evidence": {"host": "other", "pid": 1}})
    started = parse_time(intent.created_at)

    assert running_owner(elsewhere, started) == "process 1 on host other"
    assert running_owner(elsewhere, started + INTENT_LEASE) == ""
    assert running_owner(intent, started + timedelta(seconds=1)) == ""


def test_lost_race_names_other_operator(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "support_contacted")
    rival = App(Settings(db_path=db_path, operator="bob"), aws=app.aws())

    def rival_goes_first(ctx: StepContext) -> bool:
        rival.step(ROTATION, "confirm", "prod", dict(ROTATION_PARAMS["confirm"]))
        return True

    with pytest.raises(Conflict) as lost:
        app.step(
            ROTATION,
            "confirm",
            "prod",
            dict(ROTATION_PARAMS["confirm"]),
            rival_goes_first,
        )
    rival.close()

    message = str(lost.value)
    assert (
        "another operator moved the rotation run of 'prod' to rotation_confirmed at"
        in message
    )
    assert lost.value.exit_code == 3
    assert outcomes(app)[-2:] == [("confirm", "applied"), ("confirm", "refused")]
    assert app.verify()["ok"]


def test_lost_race_refusal_keeps_run_head_valid(
    app: App, kms: Any, db_path: Path
) -> None:
    """A refusal written after another process moved the run records the new state."""
    drive_rotation(app, kms, "support_contacted")
    stale = app.store.open_run("prod")
    assert stale is not None
    rival = App(Settings(db_path=db_path, operator="bob"), aws=app.aws())
    rival.step(ROTATION, "confirm", "prod", dict(ROTATION_PARAMS["confirm"]))
    rival.close()

    event = app.store.append_event(
        stale, "prod", NewEvent(step="confirm", outcome="refused", operator="alice")
    )

    assert event.to_state == "rotation_confirmed"
    app.store.check_run_head(stale)
    assert app.verify()["ok"]


def hold_write_lock(db_path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_lock_wait_past_timeout_raises_lock_timeout(
    app: App, kms: Any, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drive_rotation(app, kms, "support_contacted")
    monkeypatch.setenv("KMSGUARD_BUSY_TIMEOUT", "0.1")
    other = App(Settings(db_path=db_path, operator="bob"), aws=app.aws())
    holder = hold_write_lock(db_path)
    try:
        with pytest.raises(LockTimeout) as stuck:
            other.step(ROTATION, "cancel", "prod", {"reason": "moving on"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        other.close()

    assert "locked by another kmsguard process" in str(stuck.value)
    assert app.store.open_run("prod").state == "support_contacted"  # type: ignore[union-attr]


def test_lock_wait_past_timeout_cli_exit_one(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "support_contacted")
    holder = hold_write_lock(db_path)
    try:
        result = CliRunner().invoke(
            main,
            ["--db", str(db_path), "rotation", "cancel", "prod", "--reason", "x"],
            env={"KMSGUARD_BUSY_TIMEOUT": "0.1"},
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert result.exit_code == 1
    assert "stayed locked by another kmsguard process" in result.stderr
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_busy_timeout_variable_checked(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMSGUARD_BUSY_TIMEOUT", "soon")
    add = ["env", "add", "prod", "--region", REGION, "--pipeline-account"]

    result = CliRunner().invoke(main, ["--db", str(db_path), *add, PIPELINE_ACCOUNT])

    assert result.exit_code == 2
    assert "KMSGUARD_BUSY_TIMEOUT='soon'" in result.stderr


def test_database_files_private(app: App, kms: Any, db_path: Path) -> None:
    drive_rotation(app, kms, "support_contacted")

    files = [db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")]

    assert [p.stat().st_mode & 0o777 for p in files if p.exists()] == [0o600] * len(
        [p for p in files if p.exists()]
    )
    assert db_path.stat().st_mode & 0o777 == 0o600


def test_write_after_aws_error_settles_from_aws(app: App, kms: Any) -> None:
    """An error after DisableKey took effect (a lost response) is settled from AWS.

    The response is dropped in botocore's after-call event, as a read timeout
    after the request reached AWS would drop it.
    """
    from botocore.exceptions import ReadTimeoutError

    old_key = drive_rotation(app, kms, "rotation_confirmed")

    def lose_answer(**kwargs: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://kms.eu-west-1.amazonaws.com")

    kms.meta.events.register("after-call.kms.DisableKey", lose_answer)
    try:
        result = app.step(ROTATION, "disable_old_key", "prod", {})
    finally:
        kms.meta.events.unregister("after-call.kms.DisableKey", lose_answer)

    assert result.run.state == "old_key_disabled"
    assert key_state(kms, old_key) == "Disabled"
    assert any("the change took effect" in note for note in result.outcome.notes)
    assert ("disable_old_key", "failed") not in outcomes(app)


def test_plain_status_loads_no_aws_library(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from kmsguard.cli import main\n"
        "try:\n"
        f"    main(['--db', {str(tmp_path / 'k.db')!r}, 'status'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('boto3' in sys.modules, 'botocore' in sys.modules)\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.splitlines()[-1] == "False False"


def test_closed_run_intent_reconciled_by_start(app: App, kms: Any) -> None:
    """A recovery on a completed run leaves its intent on a closed run."""
    old_key = drive_rotation(app, kms, "old_key_disabled")
    app.step(ROTATION, "complete", "prod", {})
    completed = app.store.runs("prod")[-1]
    run_id = completed.id
    _, intent = app.store.compare_and_set(
        completed,
        RunChange(state="completed", pending_intent=True),
        NewEvent(
            step="re_enable",
            outcome="intent",
            operator="bob",
            from_state="completed",
            to_state="completed",
            evidence={
                "action": "kms:EnableKey",
                "key": old_key,
                "pid": ended_pid(),
                "host": socket.gethostname(),
            },
        ),
    )
    kms.enable_key(KeyId=old_key.split("/")[-1])
    [before] = app.status("prod")

    with pytest.raises(Conflict) as refused:
        app.start(ROTATION, "prod", {"key": old_key})

    reopened = app.store.get_run(run_id)
    assert before["unresolved_intent"]["step"] == "re_enable"
    assert "already has an open rotation run" in str(refused.value)
    assert reopened.state == "support_contacted"
    assert reopened.pending_intent_id is None
    assert [e.resolves for e in app.store.run_events(run_id)][-1] == intent.id


@pytest.mark.e2e
def test_credentials_never_stored_or_logged(cli: Any) -> None:
    from conftest import PIPELINE_ACCOUNT, REGION

    secret, token = "kmsguardSecret7f3a9c", "kmsguardToken1b2c3d"
    cli.extra_env.update({"AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": token})
    old_key = str(
        cli.kms().create_key(KeyUsage="ENCRYPT_DECRYPT", MultiRegion=False)[
            "KeyMetadata"
        ]["Arn"]
    )
    runs = [
        cli.run(
            "-vv",
            "env",
            "add",
            "prod",
            "--region",
            REGION,
            "--pipeline-account",
            PIPELINE_ACCOUNT,
        ),
        cli.run("-vv", "rotation", "start", "prod", "--current-key", old_key),
        cli.run("-vv", "rotation", "new-key", "prod", "--create"),
        cli.run("-vv", "rotation", "apply-policy", "prod"),
    ]
    output = "".join(run.stdout + run.stderr for run in runs)
    stored = b"".join(
        path.read_bytes()
        for path in cli.db_path.parent.iterdir()
        if path.name.startswith(cli.db_path.name)
    )

    assert [run.returncode for run in runs] == [0, 0, 0, 0]
    assert "INFO" in output
    assert secret not in output
    assert token not in output
    assert secret.encode() not in stored
    assert token.encode() not in stored
