"""`kmsguard evidence` and the evidence guards through the installed command.

Each command under test runs in a subprocess against a moto server on
127.0.0.1; the steps before it run in process on the same database and server,
which is faster. moto 5.2 has no CloudTrail LookupEvents, so the subprocesses
reach the local CloudTrail fixture server through AWS_ENDPOINT_URL_CLOUDTRAIL.
That server delivers at once, so the `cli` fixture sets KMSGUARD_CLOUDTRAIL_DELAY
to 0, and tests of the default 20-minute delay set it back to 1200 seconds.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import (
    PIPELINE_ACCOUNT,
    REGION,
    ROTATION_PARAMS,
    Cli,
    kms_use_record,
    snapshot,
)

from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App, Settings

pytestmark = pytest.mark.e2e

STREAM = f"arn:aws:kinesis:{REGION}:{PIPELINE_ACCOUNT}:stream/enriched-good"
DEFAULT_DELAY = "1200"  # seconds: CloudTrail's delivery delay without the variable


def create_key(cli: Cli) -> str:
    answer = cli.kms().create_key(
        Description="in use", KeyUsage="ENCRYPT_DECRYPT", MultiRegion=False
    )
    return str(answer["KeyMetadata"]["Arn"])


def cli_app(cli: Cli) -> App:
    """Return an App on the CLI's database and moto server."""
    settings = Settings(cli.db_path, "alice", endpoint_url=cli.server.url)
    return App(settings)


def add_environment(cli: Cli) -> None:
    app = cli_app(cli)
    app.add_environment("prod", REGION, PIPELINE_ACCOUNT)
    app.close()


def confirmed_rotation(cli: Cli, last_step: str = "confirm") -> str:
    """Step a rotation up to `last_step` in process; return the old key ARN."""
    rotation = PROCEDURES["rotation"]
    old_key = create_key(cli)
    app = cli_app(cli)
    app.add_environment("prod", REGION, PIPELINE_ACCOUNT)
    app.start(rotation, "prod", {"key": old_key})
    steps = ["new_key", "apply_policy", "contact_support", "confirm", "disable_old_key"]
    for step in steps[: steps.index(last_step) + 1]:
        app.step(rotation, step, "prod", dict(ROTATION_PARAMS[step]))
    app.close()
    return old_key


def pipeline_decrypts(cli: Cli, key_arn: str) -> None:
    assert cli.cloudtrail is not None
    context = {"aws:kinesis:arn": STREAM}
    cli.cloudtrail.serve(
        [
            kms_use_record(key_arn, minutes_ago=30, context=context),
            kms_use_record(key_arn, minutes_ago=95, context=context),
        ]
    )


def test_evidence_no_use_seen_exits_0(cli: Cli) -> None:
    old_key = confirmed_rotation(cli)

    report = cli.json("evidence", "prod")

    assert report["outcome"] == "no_use_seen"
    assert report["key_arn"] == old_key
    assert report["environment"] == "prod"
    assert [s["status"] for s in report["sources"]] == ["clear"] * 5


def test_evidence_in_use_exits_3_with_reasons(cli: Cli) -> None:
    old_key = confirmed_rotation(cli)
    pipeline_decrypts(cli, old_key)

    report = cli.json("evidence", "prod", check=3)

    assert report["outcome"] == "in_use"
    assert "still in use" in report["error"]
    assert STREAM in report["reasons"][0]
    assert "2 event(s)" in report["reasons"][0]


def test_evidence_text_lists_findings(cli: Cli) -> None:
    old_key = confirmed_rotation(cli)
    pipeline_decrypts(cli, old_key)

    result = cli.run("evidence", "prod", check=3)

    assert result.stdout.startswith(f"IN USE: key {old_key}")
    assert STREAM in result.stdout
    assert "error: key" in result.stderr
    assert "reading" not in result.stderr


def test_evidence_over_90_days_insufficient(cli: Cli) -> None:
    confirmed_rotation(cli)

    report = cli.json("evidence", "prod", "--since", "120d", check=3)

    assert report["outcome"] == "insufficient_evidence"
    assert "keeps only 90 days" in report["gaps"][0]


def test_evidence_for_key_without_run(cli: Cli) -> None:
    add_environment(cli)
    key = create_key(cli)

    report = cli.json("evidence", "prod", "--key", key.split("/")[-1])

    assert report["outcome"] == "no_use_seen"
    assert report["key_arn"] == key


@pytest.mark.parametrize(
    ("args", "value"),
    [
        (["--since", "7x"], "7x"),
        (["--since", "0d"], "0d"),
        (["--since", "99999d"], "99999d"),
        (["--max-objects", "-1"], "-1"),
        (["--key", "alias/missing"], "alias/missing"),
    ],
    ids=["unit", "zero", "too-long", "negative-objects", "unknown-key"],
)
def test_evidence_bad_input_exits_2(cli: Cli, args: list[str], value: str) -> None:
    confirmed_rotation(cli)
    before = snapshot(cli.db_path)

    result = cli.run("evidence", "prod", *args)

    assert result.returncode == 2, result.stderr
    assert value in result.stderr
    assert snapshot(cli.db_path) == before


def test_evidence_without_run_or_key_exits_2(cli: Cli) -> None:
    add_environment(cli)

    result = cli.run("evidence", "prod")

    assert result.returncode == 2
    assert "--key KEY" in result.stderr


def test_evidence_after_fresh_confirmation_insufficient(cli: Cli) -> None:
    confirmed_rotation(cli)
    cli.extra_env["KMSGUARD_CLOUDTRAIL_DELAY"] = DEFAULT_DELAY

    report = cli.json("evidence", "prod", check=3)

    [cloudtrail] = [s for s in report["sources"] if s["name"] == "cloudtrail"]
    retry = cloudtrail["findings"][0]["retry_after"]
    assert report["outcome"] == "insufficient_evidence"
    assert cloudtrail["status"] == "incomplete"
    assert f"wait until {retry} before disabling the key" in cloudtrail["gaps"][0]


def test_evidence_without_confirmation_waits_for_nothing(cli: Cli) -> None:
    confirmed_rotation(cli, "contact_support")
    cli.extra_env["KMSGUARD_CLOUDTRAIL_DELAY"] = DEFAULT_DELAY

    report = cli.json("evidence", "prod")

    assert report["outcome"] == "no_use_seen"


def test_disable_refused_after_fresh_confirmation_via_cli(cli: Cli) -> None:
    old_key = confirmed_rotation(cli)
    cli.extra_env["KMSGUARD_CLOUDTRAIL_DELAY"] = DEFAULT_DELAY

    result = cli.run("rotation", "disable-old-key", "prod", "--yes", check=3)

    key = cli.kms().describe_key(KeyId=old_key)["KeyMetadata"]
    assert "may not have reached CloudTrail yet" in result.stderr
    assert "next: run the step again after " in result.stderr
    assert key["KeyState"] == "Enabled"


@pytest.mark.parametrize(
    "args",
    [
        ["evidence", "prod"],
        ["rotation", "disable-old-key", "prod", "--yes"],
    ],
    ids=["evidence", "disable"],
)
def test_bad_delay_variable_exits_2(cli: Cli, args: list[str]) -> None:
    confirmed_rotation(cli)
    cli.extra_env["KMSGUARD_CLOUDTRAIL_DELAY"] = "20 minutes"
    before = snapshot(cli.db_path)

    result = cli.run(*args)

    assert result.returncode == 2, result.stderr
    assert "invalid KMSGUARD_CLOUDTRAIL_DELAY='20 minutes'" in result.stderr
    assert "from 0 to 3600" in result.stderr
    assert snapshot(cli.db_path) == before


def test_evidence_writes_nothing(cli: Cli) -> None:
    old_key = confirmed_rotation(cli)
    pipeline_decrypts(cli, old_key)
    before = snapshot(cli.db_path)

    cli.run("evidence", "prod", check=3)

    assert snapshot(cli.db_path) == before


def test_disable_refused_then_allowed_via_cli(cli: Cli) -> None:
    old_key = confirmed_rotation(cli)
    pipeline_decrypts(cli, old_key)

    refused = cli.json("rotation", "disable-old-key", "prod", "--yes", check=3)
    assert cli.cloudtrail is not None
    cli.cloudtrail.clear()
    applied = cli.json("rotation", "disable-old-key", "prod", "--yes")

    events: list[dict[str, Any]] = cli.json("history", "prod")["events"]
    refusal = next(e for e in events if e["outcome"] == "refused")
    assert [u["guard"] for u in refused["unmet"]] == ["key_out_of_use"]
    assert STREAM in refused["unmet"][0]["reason"]
    assert refusal["evidence"]["usage_report"]["outcome"] == "in_use"
    assert applied["state"] == "old_key_disabled"
    assert applied["evidence"]["usage_report"]["outcome"] == "no_use_seen"


def test_refusal_text_lists_findings(cli: Cli) -> None:
    old_key = confirmed_rotation(cli)
    pipeline_decrypts(cli, old_key)

    result = cli.run("rotation", "disable-old-key", "prod", "--yes", check=3)

    assert "key_out_of_use: key" in result.stderr
    assert f"in use: Decrypt by account {PIPELINE_ACCOUNT}" in result.stderr
    assert STREAM in result.stderr
    assert '--accept-risk "REASON"' in result.stderr


def test_accept_risk_via_cli_records_operator(cli: Cli) -> None:
    old_key = confirmed_rotation(cli)
    pipeline_decrypts(cli, old_key)

    applied = cli.json(
        "rotation",
        "disable-old-key",
        "prod",
        "--yes",
        "--accept-risk",
        "pipeline paused for the switch",
    )

    accepted = applied["evidence"]["accepted_risk"]
    assert accepted["reason"] == "pipeline paused for the switch"
    assert accepted["operator"] == "alice"


def test_schedule_observation_days_zero_exits_2(cli: Cli) -> None:
    confirmed_rotation(cli, "disable_old_key")
    before = snapshot(cli.db_path)

    result = cli.run(
        "rotation", "schedule-deletion", "prod", "--observation-days", "0", "--yes"
    )

    assert result.returncode == 2
    assert "--observation-days 0" in result.stderr
    assert snapshot(cli.db_path) == before


def test_schedule_needs_observation_or_accept_risk(cli: Cli) -> None:
    old_key = confirmed_rotation(cli, "disable_old_key")
    # With the default delay, the minutes since the disable are undelivered.
    cli.extra_env["KMSGUARD_CLOUDTRAIL_DELAY"] = "1200"

    refused = cli.json("rotation", "schedule-deletion", "prod", "--yes", check=3)
    applied = cli.json(
        "rotation",
        "schedule-deletion",
        "prod",
        "--observation-days",
        "1",
        "--accept-risk",
        "test: disabled moments ago",
        "--yes",
    )

    guards = [u["guard"] for u in refused["unmet"]]
    accepted = [g["guard"] for g in applied["evidence"]["accepted_risk"]["guards"]]
    assert guards == ["observation_period_passed", "no_events_since_disable"]
    assert accepted == guards
    assert applied["state"] == "old_key_deletion_scheduled"
    key = cli.kms().describe_key(KeyId=old_key)["KeyMetadata"]
    assert key["KeyState"] == "PendingDeletion"
