"""A `kmsguard` process killed with SIGKILL mid-step; the next command reconciles.

The engine's test hook KMSGUARD_TEST_KILL_AT kills the process at one of three
points: before_aws (intent committed, AWS not called), after_aws (AWS called,
nothing recorded) and before_commit (outcome written in a transaction that
never commits). The runs are set up in process against the same moto server.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
from conftest import PIPELINE_ACCOUNT, REGION, Cli, drive_rotation
from procedure_drivers import key_state

from kmsguard.workflow.app import App, Settings
from kmsguard.workflow.intents import KILL_AT_VARIABLE, KILL_POINTS

pytestmark = pytest.mark.e2e

RUN_TAG = "kmsguard:run"


def prepared_rotation(cli: Cli, state: str) -> tuple[str, int]:
    """Step a rotation to `state` in process; return the old key and the run id."""
    app = App(
        Settings(db_path=cli.db_path, operator="alice", endpoint_url=cli.server.url)
    )
    try:
        app.add_environment("prod", REGION, PIPELINE_ACCOUNT)
        old_key = drive_rotation(app, cli.kms(), state)
        run = app.store.open_run("prod")
        assert run is not None
        return old_key, run.id
    finally:
        app.close()


def killed_at(cli: Cli, point: str, *args: str) -> Any:
    cli.extra_env[KILL_AT_VARIABLE] = point
    try:
        return cli.run(*args)
    finally:
        del cli.extra_env[KILL_AT_VARIABLE]


def keys_tagged(cli: Cli, value: str) -> list[str]:
    kms = cli.kms()
    found = []
    for key in kms.list_keys()["Keys"]:
        tags = kms.list_resource_tags(KeyId=key["KeyId"])["Tags"]
        if {"TagKey": RUN_TAG, "TagValue": value} in tags:
            found.append(str(key["KeyArn"]))
    return found


def outcomes(cli: Cli, step: str) -> list[str]:
    events = cli.json("history", "prod")["events"]
    return [e["outcome"] for e in events if e["step"] == step]


def chain_verifies(cli: Cli) -> bool:
    app = App(Settings(db_path=cli.db_path, operator="auditor"))
    try:
        return bool(app.verify()["ok"])
    finally:
        app.close()


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_create_leaves_one_key(cli: Cli, point: str) -> None:
    _, run_id = prepared_rotation(cli, "started")

    killed = killed_at(cli, point, "rotation", "new-key", "prod", "--create")
    status = cli.json("status", "prod")
    retried = cli.json("rotation", "new-key", "prod", "--create")

    assert killed.returncode == -signal.SIGKILL
    assert status["environments"][0]["unresolved_intent"]["step"] == "new_key"
    assert retried["state"] == "new_key_ready"
    assert keys_tagged(cli, f"prod/{run_id}") == [retried["new_key_arn"]]
    history = outcomes(cli, "new_key")
    assert history[0] == "intent"
    assert history.count("applied") == 1
    assert chain_verifies(cli)


@pytest.mark.parametrize("point", ["after_aws", "before_commit"])
def test_killed_disable_completed_by_next_command(cli: Cli, point: str) -> None:
    old_key, _ = prepared_rotation(cli, "rotation_confirmed")

    killed = killed_at(cli, point, "rotation", "disable-old-key", "prod", "--yes")
    state_after_kill = cli.json("status", "prod")["environments"][0]["state"]
    done = cli.json("rotation", "complete", "prod")

    assert killed.returncode == -signal.SIGKILL
    assert state_after_kill == "rotation_confirmed"
    assert key_state(cli, old_key) == "Disabled"
    assert done["state"] == "completed"
    assert outcomes(cli, "disable_old_key") == ["intent", "applied"]
    assert chain_verifies(cli)


def test_killed_before_disable_call_retried(cli: Cli) -> None:
    old_key, _ = prepared_rotation(cli, "rotation_confirmed")

    killed = killed_at(
        cli, "before_aws", "rotation", "disable-old-key", "prod", "--yes"
    )
    state_after_kill = key_state(cli, old_key)
    retried = cli.json("rotation", "disable-old-key", "prod", "--yes")

    assert killed.returncode == -signal.SIGKILL
    assert state_after_kill == "Enabled"
    assert retried["state"] == "old_key_disabled"
    assert key_state(cli, old_key) == "Disabled"
    assert outcomes(cli, "disable_old_key") == ["intent", "failed", "intent", "applied"]
    assert chain_verifies(cli)
