"""The protection through the installed command, against a moto server on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import OWN_ACCOUNT, Cli
from procedure_drivers import add_environment
from test_protection import BREAK_GLASS, pipeline_policy

from kmsguard.workflow.policy import PROTECTION_SID

pytestmark = pytest.mark.e2e


def pipeline_key(cli: Cli) -> str:
    kms = cli.kms()
    metadata = kms.create_key(
        Description="in use", KeyUsage="ENCRYPT_DECRYPT", MultiRegion=False
    )["KeyMetadata"]
    kms.put_key_policy(
        KeyId=metadata["Arn"],
        PolicyName="default",
        Policy=json.dumps(pipeline_policy()),
    )
    return str(metadata["Arn"])


def live_statements(cli: Cli, arn: str) -> list[dict[str, Any]]:
    text = cli.kms().get_key_policy(KeyId=arn, PolicyName="default")["Policy"]
    statements: list[dict[str, Any]] = json.loads(text)["Statement"]
    return statements


def sids(cli: Cli, arn: str) -> list[str]:
    return [str(s.get("Sid")) for s in live_statements(cli, arn)]


def test_rotation_start_protect(cli: Cli) -> None:
    add_environment(cli)
    old_key = pipeline_key(cli)

    data = cli.json(
        "rotation",
        "start",
        "prod",
        "--current-key",
        old_key,
        "--protect",
        "--break-glass-role",
        BREAK_GLASS,
    )

    assert data["state"] == "started"
    assert data["data"]["protection"]["in_place"] is True
    assert sids(cli, old_key).count(PROTECTION_SID) == 1


def test_rotation_start_protect_without_role_exits_2(cli: Cli) -> None:
    add_environment(cli)
    old_key = pipeline_key(cli)

    result = cli.run(
        "rotation", "start", "prod", "--current-key", old_key, "--protect", check=2
    )

    assert "break-glass" in result.stderr
    assert PROTECTION_SID not in sids(cli, old_key)
    assert cli.json("status", "prod")["environments"][0]["state"] is None


def test_disablement_start_protect(cli: Cli) -> None:
    add_environment(cli)
    key = pipeline_key(cli)

    data = cli.json(
        "disablement",
        "start",
        "prod",
        "--key",
        key,
        "--protect",
        "--break-glass-role",
        BREAK_GLASS,
    )

    assert data["procedure"] == "disablement"
    assert sids(cli, key).count(PROTECTION_SID) == 1


def test_protect_then_unprotect_commands(cli: Cli) -> None:
    add_environment(cli)
    old_key = pipeline_key(cli)
    cli.run("rotation", "start", "prod", "--current-key", old_key, check=0)

    protected = cli.run("protect", "prod", "--break-glass-role", BREAK_GLASS, check=0)
    in_place = sids(cli, old_key).count(PROTECTION_SID)
    removed = cli.json("unprotect", "prod", "--reason", "console change approved")

    assert "kms:DisableKey" in protected.stdout
    assert in_place == 1
    assert removed["evidence"]["reason"] == "console change approved"
    assert live_statements(cli, old_key) == pipeline_policy()["Statement"]


def test_protect_command_without_run_exits_3(cli: Cli) -> None:
    add_environment(cli)

    data = cli.json("protect", "prod", "--break-glass-role", BREAK_GLASS, check=3)

    assert data["unmet"][0]["guard"] == "open_run"


def test_protect_command_malformed_role_exits_2(cli: Cli) -> None:
    add_environment(cli)
    cli.run("rotation", "start", "prod", "--current-key", pipeline_key(cli), check=0)

    result = cli.run(
        "protect", "prod", "--break-glass-role", f"{OWN_ACCOUNT}:BreakGlass", check=2
    )

    assert "invalid IAM role ARN" in result.stderr


def test_status_live_shows_protection(cli: Cli) -> None:
    add_environment(cli)
    old_key = pipeline_key(cli)
    cli.run(
        "rotation",
        "start",
        "prod",
        "--current-key",
        old_key,
        "--protect",
        "--break-glass-role",
        BREAK_GLASS,
        check=0,
    )

    result = cli.run("status", "prod", "--live", check=0)

    assert f"prod: protection in place on {old_key}" in result.stdout


@pytest.mark.parametrize("point", ["before_aws", "after_aws"])
def test_killed_protect_reconciled_by_next_step(cli: Cli, point: str) -> None:
    """A protect killed around its PutKeyPolicy is resolved by the next step command."""
    import signal

    from kmsguard.workflow.intents import KILL_AT_VARIABLE

    add_environment(cli)
    old_key = pipeline_key(cli)
    cli.run("rotation", "start", "prod", "--current-key", old_key, check=0)
    cli.extra_env[KILL_AT_VARIABLE] = point
    killed = cli.run("protect", "prod", "--break-glass-role", BREAK_GLASS)
    del cli.extra_env[KILL_AT_VARIABLE]

    result = cli.run("rotation", "cancel", "prod", "--reason", "after a crash")

    assert killed.returncode == -signal.SIGKILL
    assert result.returncode == 0, result.stderr
    events = cli.json("history", "prod")["events"]
    protect_events = [e for e in events if e["step"] == "protect"]
    outcome = "applied" if point == "after_aws" else "failed"
    assert [e["outcome"] for e in protect_events] == ["intent", outcome]
    assert PROTECTION_SID not in sids(cli, old_key)
    cli.run("audit", "verify", check=0)
