"""Tests of `kmsguard policy render` and `kmsguard policy diff` against moto keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from conftest import OWN_ACCOUNT, PIPELINE_ACCOUNT, create_key, snapshot

from kmsguard.cli import main
from kmsguard.workflow.app import App
from kmsguard.workflow.policy import (
    PIPELINE_USE_SID,
    analyse_policy,
    merge_policy,
    render_key_policy,
)

ADMIN = f"arn:aws:iam::{OWN_ACCOUNT}:role/KeyAdmin"


def invoke(db_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["--db", str(db_path), "--output", "json", *args])
    return result.exit_code, json.loads(result.stdout)


def key_policy(kms: Any, arn: str) -> dict[str, Any]:
    text = kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"]
    document: dict[str, Any] = json.loads(text)
    return document


def test_render_matches_library(app: App) -> None:
    code, data = invoke(
        app.settings.db_path,
        "policy",
        "render",
        "--env",
        "prod",
        "--key-account",
        OWN_ACCOUNT,
    )

    assert code == 0
    assert data["policy"] == render_key_policy(
        key_account=OWN_ACCOUNT, pipeline_account=PIPELINE_ACCOUNT
    )


def test_render_uses_caller_account_by_default(app: App) -> None:
    code, data = invoke(app.settings.db_path, "policy", "render", "--env", "prod")

    assert code == 0
    assert data["key_account"] == OWN_ACCOUNT


def test_render_roles_form_with_admin_passes_analysis(app: App) -> None:
    _, data = invoke(
        app.settings.db_path,
        "policy",
        "render",
        "--env",
        "prod",
        "--key-account",
        OWN_ACCOUNT,
        "--pipeline-principal",
        "roles",
        "--admin-role",
        ADMIN,
    )

    findings = analyse_policy(
        data["policy"],
        key_account=OWN_ACCOUNT,
        pipeline_account=PIPELINE_ACCOUNT,
        principal_form="roles",
    )
    assert findings == []
    assert ADMIN in json.dumps(data["policy"])


def test_render_text_is_the_policy_json(app: App) -> None:
    result = CliRunner().invoke(
        main,
        [
            "--db",
            str(app.settings.db_path),
            "policy",
            "render",
            "--env",
            "prod",
            "--key-account",
            OWN_ACCOUNT,
        ],
    )

    assert result.exit_code == 0
    assert json.loads(result.stdout)["Version"] == "2012-10-17"


def test_render_rejects_wildcard_admin_role(app: App) -> None:
    code, data = invoke(
        app.settings.db_path,
        "policy",
        "render",
        "--env",
        "prod",
        "--key-account",
        OWN_ACCOUNT,
        "--admin-role",
        f"arn:aws:iam::{OWN_ACCOUNT}:role/admin-*",
    )

    assert code == 2
    assert "wildcards" in data["error"]


def test_diff_shows_pipeline_statements(app: App, kms: Any) -> None:
    arn = create_key(kms)

    code, data = invoke(
        app.settings.db_path, "policy", "diff", "--env", "prod", "--key", arn
    )

    assert code == 0
    assert data["changed"] is True
    assert f'+      "Sid": "{PIPELINE_USE_SID}"' in data["diff"]
    assert data["findings"] == []


def test_diff_proposes_what_apply_policy_merges(app: App, kms: Any) -> None:
    arn = create_key(kms)
    current = key_policy(kms, arn)

    _, data = invoke(
        app.settings.db_path, "policy", "diff", "--env", "prod", "--key", arn
    )

    rendered = render_key_policy(
        key_account=OWN_ACCOUNT, pipeline_account=PIPELINE_ACCOUNT
    )
    assert data["proposed"] == merge_policy(current, rendered)
    assert data["current"] == current


def test_diff_changes_nothing(app: App, kms: Any) -> None:
    arn = create_key(kms)
    policy_before = key_policy(kms, arn)
    rows_before = snapshot(app.settings.db_path)

    invoke(app.settings.db_path, "policy", "diff", "--env", "prod", "--key", arn)

    assert key_policy(kms, arn) == policy_before
    assert snapshot(app.settings.db_path) == rows_before


def test_diff_after_apply_shows_no_change(app: App, kms: Any) -> None:
    arn = create_key(kms)
    _, first = invoke(
        app.settings.db_path, "policy", "diff", "--env", "prod", "--key", arn
    )
    kms.put_key_policy(
        KeyId=arn, PolicyName="default", Policy=json.dumps(first["proposed"])
    )

    code, data = invoke(
        app.settings.db_path, "policy", "diff", "--env", "prod", "--key", arn
    )

    assert code == 0
    assert data["changed"] is False
    assert data["diff"] == ""


def test_diff_text_no_change(app: App, kms: Any) -> None:
    arn = create_key(kms)
    _, first = invoke(
        app.settings.db_path, "policy", "diff", "--env", "prod", "--key", arn
    )
    kms.put_key_policy(
        KeyId=arn, PolicyName="default", Policy=json.dumps(first["proposed"])
    )

    result = CliRunner().invoke(
        main,
        [
            "--db",
            str(app.settings.db_path),
            "policy",
            "diff",
            "--env",
            "prod",
            "--key",
            arn,
        ],
    )

    assert result.exit_code == 0
    assert "(no change)" in result.stdout


def test_diff_roles_form_adds_condition(app: App, kms: Any) -> None:
    arn = create_key(kms)

    _, data = invoke(
        app.settings.db_path,
        "policy",
        "diff",
        "--env",
        "prod",
        "--key",
        arn,
        "--pipeline-principal",
        "roles",
    )

    assert "aws:PrincipalArn" in data["diff"]
    assert data["pipeline_principal"] == "roles"


def test_diff_unknown_key_exits_2(app: App) -> None:
    code, data = invoke(
        app.settings.db_path, "policy", "diff", "--env", "prod", "--key", "alias/none"
    )

    assert code == 2
    assert "alias/none" in data["error"]
