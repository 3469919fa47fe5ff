"""The installed kmsguard command, one subprocess per step, against a moto server."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from conftest import PIPELINE_ACCOUNT, REGION, Cli, kmsguard_executable

pytestmark = pytest.mark.e2e


def current_key(cli: Cli) -> str:
    kms = cli.kms()
    arn = kms.create_key(
        Description="in use", KeyUsage="ENCRYPT_DECRYPT", MultiRegion=False
    )["KeyMetadata"]["Arn"]
    return str(arn)


def key_state(cli: Cli, arn: str) -> str:
    return str(cli.kms().describe_key(KeyId=arn)["KeyMetadata"]["KeyState"])


def start_rotation(cli: Cli) -> str:
    old_key = current_key(cli)
    cli.run(
        "env",
        "add",
        "prod",
        "--region",
        REGION,
        "--pipeline-account",
        PIPELINE_ACCOUNT,
        check=0,
    )
    cli.run("rotation", "start", "prod", "--current-key", old_key, check=0)
    return old_key


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
    cli.run(
        "rotation",
        "confirm",
        "prod",
        "--ticket",
        "SUP-42",
        "--confirmed-by",
        "Sam",
        check=0,
    )
    cli.run("rotation", "disable-old-key", "prod", "--yes", check=0)
    # The key was disabled moments ago: the observation period cannot pass
    # within a test, so the risk is accepted.
    cli.run(
        "rotation",
        "schedule-deletion",
        "prod",
        "--window-days",
        "7",
        "--accept-risk",
        "test: the key was disabled moments ago",
        "--yes",
        check=0,
    )
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
    other = current_key(cli)

    result = cli.run("rotation", "start", "prod", "--current-key", other)

    assert result.returncode == 3
    assert "already has an open rotation run" in result.stderr


@pytest.mark.parametrize("step", ["confirm", "disable"])
def test_racing_processes_one_wins(cli: Cli, step: str) -> None:
    start_rotation(cli)
    cli.run("rotation", "new-key", "prod", "--create", check=0)
    cli.run("rotation", "apply-policy", "prod", check=0)
    cli.run("rotation", "contact-support", "prod", "--ticket", "SUP-1", check=0)
    if step == "confirm":
        args = [
            "rotation",
            "confirm",
            "prod",
            "--ticket",
            "SUP-1",
            "--confirmed-by",
            "Sam",
        ]
        step_name = "confirm"
    else:
        cli.run(
            "rotation",
            "confirm",
            "prod",
            "--ticket",
            "SUP-1",
            "--confirmed-by",
            "Sam",
            check=0,
        )
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
