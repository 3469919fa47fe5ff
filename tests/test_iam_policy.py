"""Tests of the least-privilege IAM policy and of `kmsguard iam-policy`.

The coverage tests parse every module of the package for boto3 calls and map
each method name to its AWS operation with botocore's own service models, so
a new call without an IAM action fails here.
"""

from __future__ import annotations

import ast
import json
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from click.testing import CliRunner

import kmsguard
from kmsguard.cli import main
from kmsguard.states import PROCEDURES
from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.iam_policy import (
    CALL_GROUPS,
    HANDLER_GROUPS,
    OPERATIONS,
    ResourceScope,
    all_operations,
    iam_actions,
    operations_for,
    render_iam_policy,
)

SERVICES = ("kms", "s3", "kinesis", "sqs", "cloudtrail", "sts")
PACKAGE = Path(kmsguard.__file__).parent


@cache
def method_operations() -> dict[str, set[str]]:
    """Map each boto3 method name of our services to its "service:Operation" keys."""
    session = botocore.session.get_session()
    methods: dict[str, set[str]] = {}
    for service in SERVICES:
        model = session.get_service_model(service)
        for operation in model.operation_names:
            methods.setdefault(xform_name(operation), set()).add(
                f"{service}:{operation}"
            )
    return methods


# The names kmsguard gives boto3 clients and its Kms wrapper: a call counts
# when its receiver ends in one of them (self.client, ctx.kms, aws.client(...)).
CLIENT_NAMES = frozenset({"client", "kms", "s3", "sqs", "sts", "kinesis", "cloudtrail"})
CLIENT_NAMES |= {"Kms"}
# Methods of our own objects that share a name with an AWS operation.
NOT_AWS_CALLS = frozenset({"verify"})


def receiver_name(node: ast.expr) -> str:
    """Return the last name of a call's receiver: ctx.kms -> kms, Kms(...) -> Kms."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def method_calls(tree: ast.AST) -> list[tuple[str, str]]:
    """Return (receiver name, method) of each call that names an AWS operation."""
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name = node.func.attr
        if name == "get_paginator" and node.args:
            argument = node.args[0]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                name = argument.value
        if name in method_operations():
            calls.append((receiver_name(node.func.value), name))
    return calls


@cache
def scanned_calls() -> dict[str, dict[str, set[str]]]:
    """Return the AWS-named calls of the package: "client" or "other" -> method -> modules."""
    found: dict[str, dict[str, set[str]]] = {"client": {}, "other": {}}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for receiver, name in method_calls(tree):
            kind = "client" if receiver in CLIENT_NAMES else "other"
            module = str(path.relative_to(PACKAGE))
            found[kind].setdefault(name, set()).add(module)
    return found


def package_calls() -> dict[str, set[str]]:
    """Return each boto3 method called in the package, with the modules calling it."""
    return scanned_calls()["client"]


def test_calls_on_other_receivers_are_known() -> None:
    # A new entry here is either a boto3 client with an unusual name (add it
    # to CLIENT_NAMES) or one of our methods named like an AWS operation.
    assert set(scanned_calls()["other"]) - NOT_AWS_CALLS == set()


def test_every_boto3_call_is_in_iam_policy() -> None:
    needed = all_operations(PROCEDURES.values())
    missing = {
        name: sorted(modules)
        for name, modules in package_calls().items()
        if not method_operations()[name] & needed
    }

    assert missing == {}


def test_every_iam_operation_is_called() -> None:
    called = {
        operation for name in package_calls() for operation in method_operations()[name]
    }

    assert set(OPERATIONS) - called == set()


def test_call_scan_finds_known_calls() -> None:
    calls = package_calls()

    assert "lookup_events" in calls
    assert "list_grants" in calls
    assert "get_caller_identity" in calls


def test_operations_are_botocore_operations() -> None:
    known = {op for ops in method_operations().values() for op in ops}

    assert set(OPERATIONS) - known == set()


def test_groups_name_known_operations() -> None:
    named = {op for ops in CALL_GROUPS.values() for op in ops}

    assert named - set(OPERATIONS) == set()


def test_every_step_handler_has_groups() -> None:
    handlers = {
        step.handler
        for procedure in PROCEDURES.values()
        for step in (procedure.start, *procedure.steps)
    }

    assert handlers - set(HANDLER_GROUPS) == set()


def test_handler_groups_are_known() -> None:
    groups = {group for names in HANDLER_GROUPS.values() for group in names}

    assert groups - set(CALL_GROUPS) == set()


def test_rotation_policy_includes_disable_and_put_policy() -> None:
    actions = iam_actions(operations_for("rotation"))

    assert "kms:DisableKey" in actions
    assert "kms:PutKeyPolicy" in actions
    assert "cloudtrail:LookupEvents" in actions


def test_onboarding_policy_never_retires_a_key() -> None:
    actions = iam_actions(operations_for("onboarding"))

    assert "kms:DisableKey" not in actions
    assert "kms:ScheduleKeyDeletion" not in actions
    assert "kms:CreateKey" in actions


def test_create_key_also_needs_tag_resource() -> None:
    assert "kms:TagResource" in iam_actions(["kms:CreateKey"])


def test_s3_operations_use_iam_action_names() -> None:
    actions = iam_actions(["s3:HeadObject", "s3:ListObjectsV2"])

    assert actions == ["s3:GetObject", "s3:ListBucket"]


def test_unknown_procedure_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="unknown procedure 'nope'"):
        operations_for("nope")


def statement(document: dict[str, Any], sid: str) -> dict[str, Any]:
    return next(s for s in document["Statement"] if s["Sid"] == sid)


def test_render_scopes_key_actions_to_region_and_account() -> None:
    document = render_iam_policy(
        operations_for(None), ResourceScope("eu-west-1", "123456789012")
    )

    keys = statement(document, "KmsKeys")
    assert keys["Resource"] == "arn:aws:kms:eu-west-1:123456789012:key/*"
    assert "kms:CreateKey" not in keys["Action"]
    assert "kms:DisableKey" in keys["Action"]


def test_render_puts_account_actions_on_any_resource() -> None:
    document = render_iam_policy(operations_for(None))

    account = statement(document, "KmsAccount")
    assert account["Resource"] == "*"
    assert account["Action"] == [
        "kms:CreateKey",
        "kms:ListAliases",
        "kms:ListKeys",
        "kms:TagResource",
    ]


def test_render_create_alias_on_alias_and_key() -> None:
    document = render_iam_policy(["kms:CreateAlias"])

    assert document["Statement"] == [
        {
            "Sid": "KmsAliases",
            "Effect": "Allow",
            "Action": ["kms:CreateAlias"],
            "Resource": ["arn:aws:kms:*:*:alias/*", "arn:aws:kms:*:*:key/*"],
        }
    ]


def test_render_rejects_bad_account() -> None:
    with pytest.raises(InvalidInput, match="--key-account"):
        render_iam_policy(["kms:DescribeKey"], ResourceScope(account="12345"))


def test_render_covers_every_action_once() -> None:
    operations = operations_for(None)
    document = render_iam_policy(operations)

    rendered = [a for s in document["Statement"] for a in s["Action"]]
    assert sorted(rendered) == iam_actions(operations)


def invoke(tmp_path: Path, *args: str) -> Any:
    return CliRunner().invoke(
        main, ["--db", str(tmp_path / "kmsguard.db"), "--output", "json", *args]
    )


def test_iam_policy_command_prints_policy(tmp_path: Path) -> None:
    result = invoke(tmp_path, "iam-policy", "--procedure", "disablement")

    data = json.loads(result.stdout)
    assert result.exit_code == 0
    assert "kms:ScheduleKeyDeletion" in data["actions"]
    assert "kms:CreateKey" not in data["actions"]
    assert data["policy"]["Version"] == "2012-10-17"


def test_iam_policy_command_unknown_procedure(tmp_path: Path) -> None:
    result = invoke(tmp_path, "iam-policy", "--procedure", "nope")

    assert result.exit_code == 2
    assert "unknown procedure" in json.loads(result.stdout)["error"]


def test_iam_policy_command_scopes_to_environment(tmp_path: Path) -> None:
    invoke(
        tmp_path,
        "env",
        "add",
        "prod",
        "--region",
        "eu-west-1",
        "--pipeline-account",
        "210987654321",
    )

    result = invoke(tmp_path, "iam-policy", "--env", "prod")

    keys = statement(json.loads(result.stdout)["policy"], "KmsKeys")
    assert keys["Resource"] == "arn:aws:kms:eu-west-1:*:key/*"
