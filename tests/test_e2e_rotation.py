"""The installed kmsguard command, one subprocess per step, against a moto server."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from conftest import Cli, create_key, kmsguard_executable
from procedure_drivers import (
    add_environment,
    confirm_args,
    drive_rotation_cli,
    key_state,
    schedule_deletion_args,
)

pytestmark = pytest.mark.e2e


def start_rotation(cli: Cli) -> str:
    """Add environment prod and start a rotation there; return the old key ARN."""
    add_environment(cli)
    return drive_rotation_cli(cli, "started")


def test_rotation_persists_across_processes(cli: Cli) -> None:
    old_key = start_rotation(cli)
    created = cli.json(
        "rotation", "new-key", "prod", "--create", "--alias", "alias/prod-next"
    )
    cli.run("rotation", "apply-policy", "prod", check=0)
    contact = cli.run(
        "rotation", "contact-support", "prod", "--ticket", "SUP-42", check=0
    )
    refused = cli.json("rotation", "disable-old-key", "prod", "--yes", check=3)
    cli.run(*confirm_args("rotation", "SUP-42"), check=0)
    cli.run("rotation", "disable-old-key", "prod", "--yes", check=0)
    cli.run(*schedule_deletion_args("rotation"), check=0)
    done = cli.json("rotation", "complete", "prod")

    new_key = created["new_key_arn"]
    assert old_key in contact.stdout
    assert new_key in contact.stdout
    assert refused["unmet"][0]["guard"] == "state_order"
    assert done["state"] == "completed"
    assert done["environment"] == "prod"
    assert done["procedure"] == "rotation"
    assert key_state(cli, old_key) == "PendingDeletion"
    assert key_state(cli, new_key) == "Enabled"
    history = cli.json("history", "prod")
    outcomes = [(e["step"], e["outcome"]) for e in history["events"]]
    assert ("disable_old_key", "refused") in outcomes
    assert ("disable_old_key", "applied") in outcomes
    cli.run("audit", "verify", check=0)


def test_status_shows_next_command(cli: Cli) -> None:
    start_rotation(cli)

    status = cli.json("status")

    [row] = status["environments"]
    assert row["state"] == "started"
    assert row["next"] == "kmsguard rotation new-key prod --create"


def test_start_refused_while_run_open(cli: Cli) -> None:
    start_rotation(cli)
    other = create_key(cli.kms(), Description="in use")

    result = cli.run("rotation", "start", "prod", "--current-key", other)

    assert result.returncode == 3
    assert "already has an open rotation run" in result.stderr


@pytest.mark.parametrize("step", ["confirm", "disable"])
def test_racing_processes_one_wins(cli: Cli, step: str) -> None:
    add_environment(cli)
    if step == "confirm":
        drive_rotation_cli(cli, "support_contacted", ticket="SUP-1")
        args = confirm_args("rotation", "SUP-1")
        step_name = "confirm"
    else:
        drive_rotation_cli(cli, "rotation_confirmed", ticket="SUP-1")
        args = ["rotation", "disable-old-key", "prod", "--yes"]
        step_name = "disable_old_key"
    before = len(cli.json("history", "prod")["events"])

    processes = [
        subprocess.Popen(
            [kmsguard_executable(), *args],
            env=cli.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    codes = sorted(p.wait(timeout=120) for p in processes)

    assert codes == [0, 3]
    events: list[dict[str, Any]] = cli.json("history", "prod")["events"][before:]
    applied = [
        e for e in events if e["step"] == step_name and e["outcome"] == "applied"
    ]
    refused = [
        e for e in events if e["step"] == step_name and e["outcome"] == "refused"
    ]
    assert len(applied) == 1
    assert len(refused) == 1
    cli.run("audit", "verify", check=0)
