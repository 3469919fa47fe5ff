"""Tests of key policy parsing, rendering, analysis, evaluation, merge and diff."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.policy import (
    ALLOW,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    KEY_ADMIN_ACTIONS,
    PIPELINE_GRANT_ACTIONS,
    PIPELINE_GRANTS_SID,
    PIPELINE_USE_ACTIONS,
    PIPELINE_USE_SID,
    POLICY_SCOPE,
    PROTECTION_SID,
    ROOT_SID,
    Finding,
    PolicyDocumentError,
    add_protection,
    analyse_policy,
    canonical_json,
    diff_policies,
    evaluate,
    merge_policy,
    parse_policy_text,
    policy_errors,
    policy_warnings,
    render_key_policy,
    same_statements,
    validate_policy,
)
from kmsguard.workflow.policy_glob import glob_covers, glob_match, globs_overlap

KEY = "111122223333"
PIPE = "444455556789"
OTHER = "999988887777"
KEY_ROOT = f"arn:aws:iam::{KEY}:root"
PIPE_ROOT = f"arn:aws:iam::{PIPE}:root"
BREAK_GLASS = f"arn:aws:iam::{KEY}:role/BreakGlass"

ROOT = "Enable IAM User Permissions"
ADMINS = "Allow access for Key Administrators"
USE = "Allow use of the key"
GRANTS = "Allow attachment of persistent resources"
ROLES = "Allow use of the key - Specific Roles"

Expected = set[tuple[str, str, str]]


def vendor_policy(key: str = KEY, pipe: str = PIPE, admin: str = "") -> dict[str, Any]:
    """Return the vendor's root-form key policy with the given values filled in."""
    admins = [
        f"arn:aws:iam::{key}:role/SecurityTeamRole",
        f"arn:aws:iam::{key}:role/AdminRole",
    ]
    if admin:
        admins = [
            f"arn:aws:iam::{key}:role/{admin}Security",
            f"arn:aws:iam::{key}:role/{admin}Admin",
        ]
    return {
        "Id": "key-consolepolicy-3",
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": ROOT,
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{key}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": ADMINS,
                "Effect": "Allow",
                "Principal": {"AWS": admins},
                "Action": list(KEY_ADMIN_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": USE,
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{pipe}:root"},
                "Action": list(PIPELINE_USE_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": GRANTS,
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{pipe}:root"},
                "Action": list(PIPELINE_GRANT_ACTIONS),
                "Resource": "*",
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
            },
        ],
    }


def statement_index(doc: dict[str, Any], sid: str) -> int:
    return [s.get("Sid") for s in doc["Statement"]].index(sid)


def changed(sid: str, **elements: Any) -> dict[str, Any]:
    """Return the vendor policy with elements of one statement replaced (None drops)."""
    doc = vendor_policy()
    statement = doc["Statement"][statement_index(doc, sid)]
    for name, value in elements.items():
        if value is None:
            statement.pop(name, None)
        else:
            statement[name] = value
    return doc


def without(*sids: str) -> dict[str, Any]:
    doc = vendor_policy()
    doc["Statement"] = [s for s in doc["Statement"] if s.get("Sid") not in sids]
    return doc


def plus(
    *statements: dict[str, Any], base: dict[str, Any] | None = None
) -> dict[str, Any]:
    doc = base if base is not None else vendor_policy()
    doc["Statement"] = [*doc["Statement"], *statements]
    return doc


def allow(
    sid: str, principal: Any, action: Any, condition: Any = None
) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": principal,
        "Action": action,
        "Resource": "*",
    }
    if condition is not None:
        statement["Condition"] = condition
    return statement


def deny(
    sid: str, principal: Any, action: Any, condition: Any = None
) -> dict[str, Any]:
    statement = allow(sid, principal, action, condition)
    statement["Effect"] = "Deny"
    return statement


def roles_form_statements(patterns: list[str], operator: str = "ArnLike") -> list[Any]:
    """Return use and grant statements narrowed to pipeline roles by a condition."""
    arns = [f"arn:aws:iam::{PIPE}:role/{pattern}" for pattern in patterns]
    condition = {operator: {"aws:PrincipalArn": arns}}
    grant_condition = {**condition, "Bool": {"kms:GrantIsForAWSResource": "true"}}
    return [
        allow(USE, {"AWS": PIPE_ROOT}, list(PIPELINE_USE_ACTIONS), condition),
        allow(
            GRANTS, {"AWS": PIPE_ROOT}, list(PIPELINE_GRANT_ACTIONS), grant_condition
        ),
    ]


def roles_policy(patterns: list[str], operator: str = "ArnLike") -> dict[str, Any]:
    return plus(*roles_form_statements(patterns, operator), base=without(USE, GRANTS))


DOCUMENTED_ROLES = ["SnowplowOperator", "sp-*", "snowplow-*"]
USE_MISSING = ("error", "pipeline-use-missing", POLICY_SCOPE)
GRANT_MISSING = ("error", "pipeline-grant-missing", POLICY_SCOPE)
ROOT_MISSING = ("error", "key-root-missing", POLICY_SCOPE)
PIPELINE_MISSING = {USE_MISSING, GRANT_MISSING}


def placeholders_policy() -> dict[str, Any]:
    doc = vendor_policy("YOUR_ACCOUNT_ID", "SNOWPLOW_PIPELINE_ACCOUNT_ID")
    doc["Statement"][1]["Principal"]["AWS"] = [
        "arn:aws:iam::YOUR_ACCOUNT_ID:role/YourSecurityRole",
        "arn:aws:iam::YOUR_ACCOUNT_ID:role/YourAdminRole",
    ]
    return doc


def role_placeholders_policy() -> dict[str, Any]:
    doc = vendor_policy()
    doc["Statement"][1]["Principal"]["AWS"] = [
        f"arn:aws:iam::{KEY}:role/YourSecurityRole",
        f"arn:aws:iam::{KEY}:role/YourAdminRole",
    ]
    return doc


def vendor_roles_snippet() -> dict[str, Any]:
    """Return the vendor's roles example: role patterns named directly in Principal."""
    statement = allow(
        ROLES,
        {"AWS": [f"arn:aws:iam::{PIPE}:role/{name}" for name in DOCUMENTED_ROLES]},
        list(PIPELINE_USE_ACTIONS) + list(PIPELINE_GRANT_ACTIONS),
    )
    return plus(statement, base=without(USE, GRANTS))


def single_statement_policy() -> dict[str, Any]:
    doc = vendor_policy()
    doc["Statement"] = doc["Statement"][0]
    return doc


def root_without_sid_narrowed() -> dict[str, Any]:
    doc = changed(ROOT, Action="kms:Describe*")
    del doc["Statement"][0]["Sid"]
    return doc


def duplicate_sid_policy() -> dict[str, Any]:
    doc = vendor_policy()
    doc["Statement"][1]["Sid"] = USE
    return doc


def protected_vendor_policy() -> dict[str, Any]:
    return add_protection(vendor_policy(), [BREAK_GLASS])


def roles(*names: str) -> dict[str, Any]:
    return {"AWS": [f"arn:aws:iam::{PIPE}:role/{name}" for name in names]}


PIN_PIPELINE = {"StringEquals": {"kms:CallerAccount": PIPE}}
NOT_OURS = {"StringNotEquals": {"aws:PrincipalAccount": [KEY, PIPE]}}

ANALYSIS_CASES = [
    pytest.param(vendor_policy(), "root", set(), id="vendor-root-example"),
    pytest.param(
        placeholders_policy(),
        "root",
        {
            ("error", "principal-placeholder", ROOT),
            ("error", "principal-placeholder", ADMINS),
            ("error", "principal-placeholder", USE),
            ("error", "principal-placeholder", GRANTS),
            ROOT_MISSING,
            *PIPELINE_MISSING,
        },
        id="vendor-placeholders-left",
    ),
    pytest.param(
        role_placeholders_policy(),
        "root",
        {("error", "principal-placeholder", ADMINS)},
        id="template-role-names-left",
    ),
    pytest.param(
        vendor_policy(pipe="SNOWPLOW_PIPELINE_ACCOUNT_ID"),
        "root",
        {
            ("error", "principal-placeholder", USE),
            ("error", "principal-placeholder", GRANTS),
            *PIPELINE_MISSING,
        },
        id="pipeline-placeholder-left",
    ),
    pytest.param(
        vendor_policy(pipe="4444555567"),
        "root",
        {
            ("error", "principal-account-invalid", USE),
            ("error", "principal-account-invalid", GRANTS),
            *PIPELINE_MISSING,
        },
        id="ten-digit-pipeline-account",
    ),
    pytest.param(
        vendor_policy(pipe="444455556780"),
        "root",
        {
            ("error", "pipeline-account-mismatch", USE),
            ("error", "pipeline-account-mismatch", GRANTS),
            *PIPELINE_MISSING,
        },
        id="pipeline-account-one-digit-off",
    ),
    pytest.param(
        vendor_policy(pipe="444455556798"),
        "root",
        {
            ("error", "pipeline-account-mismatch", USE),
            ("error", "pipeline-account-mismatch", GRANTS),
            *PIPELINE_MISSING,
        },
        id="pipeline-account-digits-swapped",
    ),
    pytest.param(
        changed(ROOT, Principal={"AWS": "arn:aws:iam::111122223334:root"}),
        "root",
        {("error", "key-account-mismatch", ROOT), ROOT_MISSING},
        id="key-account-one-digit-off",
    ),
    pytest.param(without(ROOT), "root", {ROOT_MISSING}, id="root-statement-removed"),
    pytest.param(
        changed(ROOT, Action="kms:Describe*"),
        "root",
        {("error", "key-root-narrowed", ROOT)},
        id="root-narrowed-to-describe",
    ),
    pytest.param(
        changed(ROOT, Condition={"StringEquals": {"aws:PrincipalTag/team": "sec"}}),
        "root",
        {("error", "key-root-narrowed", ROOT)},
        id="root-given-condition",
    ),
    pytest.param(
        changed(ROOT, Action=None, NotAction="kms:ScheduleKeyDeletion"),
        "root",
        {("error", "key-root-narrowed", ROOT)},
        id="root-with-notaction",
    ),
    pytest.param(
        changed(ROOT, Principal={"AWS": KEY}), "root", set(), id="root-as-account-id"
    ),
    pytest.param(changed(ROOT, Action="*"), "root", set(), id="root-action-star"),
    pytest.param(
        root_without_sid_narrowed(),
        "root",
        {("error", "key-root-narrowed", "statement 1")},
        id="root-without-sid-narrowed",
    ),
    pytest.param(
        changed(GRANTS, Condition=None),
        "root",
        {("warning", "grant-condition-missing", GRANTS)},
        id="grant-without-condition",
    ),
    pytest.param(
        changed(GRANTS, Condition={"Bool": {"kms:GrantIsForAWSResource": "false"}}),
        "root",
        {GRANT_MISSING, ("warning", "grant-condition-missing", GRANTS)},
        id="grant-condition-false",
    ),
    pytest.param(
        without(GRANTS), "root", {GRANT_MISSING}, id="grant-statement-removed"
    ),
    pytest.param(without(USE), "root", {USE_MISSING}, id="use-statement-removed"),
    pytest.param(
        changed(USE, Action=["kms:Encrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"]),
        "root",
        {USE_MISSING},
        id="use-without-decrypt",
    ),
    pytest.param(
        changed(
            USE,
            Action=[
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey",
            ],
        ),
        "root",
        {USE_MISSING},
        id="generate-data-key-without-wildcard",
    ),
    pytest.param(
        changed(USE, Action="kms:Decrypt"), "root", {USE_MISSING}, id="action-as-string"
    ),
    pytest.param(
        changed(USE, Action="kms:*"),
        "root",
        {("warning", "grant-condition-missing", USE)},
        id="action-kms-star-string",
    ),
    pytest.param(
        changed(
            USE,
            Action=None,
            NotAction=["kms:Disable*", "kms:ScheduleKeyDeletion", "kms:PutKeyPolicy"],
        ),
        "root",
        {("warning", "grant-condition-missing", USE)},
        id="notaction-keeps-use",
    ),
    pytest.param(
        changed(USE, Action=None, NotAction=["kms:Decrypt", "kms:*Grant*"]),
        "root",
        {USE_MISSING},
        id="notaction-excludes-decrypt",
    ),
    pytest.param(
        changed(
            USE, Action=["kms:*crypt", "kms:ReEncrypt*", "kms:Gen*", "kms:Describe*"]
        ),
        "root",
        set(),
        id="wildcards-cover-use",
    ),
    pytest.param(
        changed(USE, Action=["kms:*crypt", "kms:Re*", "kms:Gen*", "kms:Describe*"]),
        "root",
        {("warning", "grant-condition-missing", USE)},
        id="re-star-also-covers-revoke-grant",
    ),
    pytest.param(
        changed(
            USE,
            Action=[
                "kms:encrypt",
                "KMS:DECRYPT",
                "kms:reencrypt*",
                "kms:generatedatakey*",
                "kms:describekey",
            ],
        ),
        "root",
        set(),
        id="actions-in-other-case",
    ),
    pytest.param(
        changed(GRANTS, Action=["kms:*Grant*"]),
        "root",
        set(),
        id="wildcard-covers-grants",
    ),
    pytest.param(
        plus(allow("Public", "*", "kms:Decrypt")),
        "root",
        {("error", "public-principal", "Public")},
        id="star-principal-unpinned",
    ),
    pytest.param(
        plus(allow("Public", {"AWS": "*"}, "kms:Decrypt", PIN_PIPELINE)),
        "root",
        set(),
        id="star-principal-pinned-account",
    ),
    pytest.param(
        plus(
            allow(
                "Org",
                "*",
                "kms:Decrypt",
                {"StringEquals": {"aws:PrincipalOrgID": "o-abc"}},
            )
        ),
        "root",
        set(),
        id="star-principal-pinned-org",
    ),
    pytest.param(
        plus(
            allow(
                "Public",
                "*",
                "kms:Decrypt",
                {"StringEqualsIfExists": {"kms:CallerAccount": PIPE}},
            )
        ),
        "root",
        {("error", "public-principal", "Public")},
        id="star-principal-ifexists-not-pinned",
    ),
    pytest.param(
        plus(
            allow(
                "Partner",
                "*",
                "kms:Decrypt",
                {"StringEquals": {"kms:CallerAccount": OTHER}},
            )
        ),
        "root",
        {("warning", "foreign-account", "Partner")},
        id="star-principal-pinned-foreign",
    ),
    pytest.param(
        plus(
            {
                "Sid": "Everyone",
                "Effect": "Allow",
                "NotPrincipal": {"AWS": KEY_ROOT},
                "Action": "kms:Decrypt",
                "Resource": "*",
            }
        ),
        "root",
        {("error", "public-principal", "Everyone")},
        id="allow-with-notprincipal",
    ),
    pytest.param(
        plus(deny("NoDecrypt", {"AWS": PIPE_ROOT}, "kms:Decrypt")),
        "root",
        {("error", "pipeline-denied", "NoDecrypt")},
        id="deny-decrypt-for-pipeline",
    ),
    pytest.param(
        plus(deny("NoStrangers", "*", "kms:*", NOT_OURS)),
        "root",
        set(),
        id="deny-other-accounts",
    ),
    pytest.param(
        plus(
            deny("TlsOnly", "*", "kms:*", {"Bool": {"aws:SecureTransport": "false"}}),
        ),
        "root",
        {("warning", "pipeline-deny-possible", "TlsOnly")},
        id="deny-with-unknown-condition",
    ),
    pytest.param(
        plus(
            deny(
                "OnlyBreakGlass",
                "*",
                ["kms:Decrypt"],
                {"ArnNotLike": {"aws:PrincipalArn": BREAK_GLASS}},
            )
        ),
        "root",
        {("error", "pipeline-denied", "OnlyBreakGlass")},
        id="deny-decrypt-except-break-glass",
    ),
    pytest.param(
        plus(deny("Frozen", {"AWS": "*"}, "kms:PutKeyPolicy")),
        "root",
        {("warning", "key-root-denied", "Frozen")},
        id="deny-put-key-policy",
    ),
    pytest.param(protected_vendor_policy(), "root", set(), id="protection-added"),
    pytest.param(
        vendor_roles_snippet(),
        "roles",
        {
            ("error", "principal-wildcard", ROLES),
            ("warning", "grant-condition-missing", ROLES),
        },
        id="vendor-roles-example",
    ),
    pytest.param(
        roles_policy(DOCUMENTED_ROLES), "roles", set(), id="roles-form-arnlike"
    ),
    pytest.param(
        roles_policy(DOCUMENTED_ROLES, "StringLike"),
        "roles",
        set(),
        id="roles-form-stringlike",
    ),
    pytest.param(roles_policy(["*"]), "roles", set(), id="roles-form-any-role"),
    pytest.param(
        roles_policy(["SnowplowOperator", "sp-*"]),
        "roles",
        PIPELINE_MISSING,
        id="roles-form-missing-pattern",
    ),
    pytest.param(
        roles_policy(["SnowplowOperator", "sp-loader", "snowplow-*"]),
        "roles",
        PIPELINE_MISSING,
        id="roles-form-one-role-for-pattern",
    ),
    pytest.param(vendor_policy(), "roles", set(), id="root-policy-in-roles-form"),
    pytest.param(
        roles_policy(DOCUMENTED_ROLES),
        "root",
        PIPELINE_MISSING,
        id="roles-policy-in-root-form",
    ),
    pytest.param(
        plus(
            deny("NoLoader", roles("sp-loader"), "kms:Decrypt"),
            base=roles_policy(DOCUMENTED_ROLES),
        ),
        "roles",
        {("warning", "pipeline-deny-possible", "NoLoader")},
        id="deny-one-pipeline-role",
    ),
    pytest.param(
        changed(ADMINS, Principal={"AWS": f"arn:aws:iam::{OTHER}:role/Admin"}),
        "root",
        {("warning", "foreign-account", ADMINS)},
        id="admin-in-foreign-account",
    ),
    pytest.param(
        changed(ADMINS, Principal={"AWS": f"arn:aws:iam::{KEY}:group/Admins"}),
        "root",
        {("error", "principal-malformed", ADMINS)},
        id="group-as-principal",
    ),
    pytest.param(
        changed(ADMINS, Principal={"AWS": f"arn:aws:iam::{KEY}:user/alice"}),
        "root",
        set(),
        id="user-principal",
    ),
    pytest.param(
        plus(
            allow(
                "Loader", {"AWS": f"arn:aws:iam::{OTHER}:role/sp-loader"}, "kms:Decrypt"
            )
        ),
        "root",
        {("error", "pipeline-account-mismatch", "Loader")},
        id="pipeline-role-in-other-account",
    ),
    pytest.param(
        duplicate_sid_policy(),
        "root",
        {("warning", "duplicate-sid", USE)},
        id="duplicate-sid",
    ),
    pytest.param(
        single_statement_policy(),
        "root",
        PIPELINE_MISSING,
        id="statement-as-single-object",
    ),
]


@pytest.mark.parametrize(("doc", "form", "expected"), ANALYSIS_CASES)
def test_analyse_policy_findings(
    doc: dict[str, Any], form: str, expected: Expected
) -> None:
    findings = analyse_policy(
        doc, key_account=KEY, pipeline_account=PIPE, principal_form=form
    )

    assert {(f.severity, f.rule, f.statement) for f in findings} == expected


def test_analysis_table_size() -> None:
    assert len(ANALYSIS_CASES) >= 40


@pytest.mark.parametrize(("doc", "form", "expected"), ANALYSIS_CASES)
def test_analyse_policy_findings_have_fix(
    doc: dict[str, Any], form: str, expected: Expected
) -> None:
    findings = analyse_policy(
        doc, key_account=KEY, pipeline_account=PIPE, principal_form=form
    )

    assert all(f.message and f.fix for f in findings)


def analyse(doc: dict[str, Any], form: str = "root") -> list[Finding]:
    return analyse_policy(
        doc, key_account=KEY, pipeline_account=PIPE, principal_form=form
    )


def test_placeholder_fix_names_pipeline_account() -> None:
    findings = analyse(vendor_policy(pipe="SNOWPLOW_PIPELINE_ACCOUNT_ID"))
    placeholder = next(f for f in findings if f.rule == "principal-placeholder")

    assert "SNOWPLOW_PIPELINE_ACCOUNT_ID" in placeholder.message
    assert PIPE in placeholder.fix


def test_placeholder_fix_names_key_account() -> None:
    findings = analyse(vendor_policy(key="YOUR_ACCOUNT_ID"))
    placeholder = next(f for f in findings if f.rule == "principal-placeholder")

    assert KEY in placeholder.fix


def test_account_mismatch_names_both_accounts() -> None:
    findings = analyse(vendor_policy(pipe="444455556780"))
    mismatch = next(f for f in findings if f.rule == "pipeline-account-mismatch")

    assert "444455556780" in mismatch.message
    assert PIPE in mismatch.message


def test_use_missing_names_uncovered_operations() -> None:
    doc = changed(
        USE,
        Action=["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey"],
    )
    missing = next(f for f in analyse(doc) if f.rule == "pipeline-use-missing")

    assert "kms:GenerateDataKeyWithoutPlaintext" in missing.message
    assert "kms:DescribeKey" in missing.message
    assert "kms:Encrypt," not in missing.message


def test_roles_policy_in_root_form_suggests_roles_form() -> None:
    missing = [
        f for f in analyse(roles_policy(DOCUMENTED_ROLES)) if f.rule == USE_MISSING[1]
    ]

    assert "--pipeline-principal roles" in missing[0].fix


def test_policy_errors_and_warnings_split() -> None:
    findings = analyse(
        plus(allow("Public", "*", "kms:Decrypt"), base=changed(GRANTS, Condition=None))
    )

    assert [f.rule for f in policy_errors(findings)] == ["public-principal"]
    assert [f.rule for f in policy_warnings(findings)] == ["grant-condition-missing"]


def test_finding_to_dict() -> None:
    finding = Finding("error", "S1", "rule-id", "message", "fix")

    assert finding.to_dict() == {
        "severity": "error",
        "statement": "S1",
        "rule": "rule-id",
        "message": "message",
        "fix": "fix",
    }


def test_analyse_policy_rejects_bad_account() -> None:
    with pytest.raises(InvalidInput):
        analyse_policy(vendor_policy(), key_account=KEY, pipeline_account="12345")


def test_analyse_policy_rejects_bad_form() -> None:
    with pytest.raises(InvalidInput):
        analyse_policy(
            vendor_policy(), key_account=KEY, pipeline_account=PIPE, principal_form="x"
        )


def test_analyse_policy_rejects_invalid_document() -> None:
    with pytest.raises(InvalidInput):
        analyse_policy({"Statement": []}, key_account=KEY, pipeline_account=PIPE)


def test_analyse_policy_reports_oversized_policy() -> None:
    filler = [
        allow(
            f"Filler{i}",
            {"AWS": f"arn:aws:iam::{KEY}:role/R{i:04d}"},
            "kms:DescribeKey",
        )
        for i in range(300)
    ]
    findings = analyse(plus(*filler))

    assert ("error", "policy-too-large", POLICY_SCOPE) in {
        (f.severity, f.rule, f.statement) for f in findings
    }


# Grammar


def policy_text(**replace: Any) -> str:
    doc = vendor_policy()
    for path, value in replace.items():
        index, element = path.split("__")
        doc["Statement"][int(index[1:])][element] = value
    return json.dumps(doc, indent=2)


def bad_principal_list() -> str:
    doc = vendor_policy()
    doc["Statement"][2]["Principal"]["AWS"] = [PIPE_ROOT, 42]
    return json.dumps(doc)


def with_top_level(**elements: Any) -> str:
    doc: dict[str, Any] = vendor_policy()
    for name, value in elements.items():
        if value is None:
            doc.pop(name)
        else:
            doc[name] = value
    return json.dumps(doc)


GRAMMAR_CASES = [
    pytest.param(
        bad_principal_list(), "Statement[2].Principal.AWS[1]", id="principal-not-string"
    ),
    pytest.param(
        policy_text(s0__Effect="allow"), "Statement[0].Effect", id="effect-lowercase"
    ),
    pytest.param(
        policy_text(s2__Action="s3:GetObject"), "Statement[2].Action", id="not-kms"
    ),
    pytest.param(
        policy_text(s2__Action=["kms:Encrypt", "Decrypt"]),
        "Statement[2].Action[1]",
        id="action-without-prefix",
    ),
    pytest.param(
        policy_text(s2__NotAction=["kms:Decrypt"]),
        "Statement[2]",
        id="action-and-notaction",
    ),
    pytest.param(
        policy_text(s0__Principal="arn:aws:iam::111122223333:root"),
        "Statement[0].Principal",
        id="principal-bare-string",
    ),
    pytest.param(
        policy_text(s0__Principal={"IAM": KEY_ROOT}),
        "Statement[0].Principal.IAM",
        id="principal-type",
    ),
    pytest.param(
        policy_text(s0__Resource=[]), "Statement[0].Resource", id="empty-resource"
    ),
    pytest.param(
        policy_text(s3__Condition={"StringEqual": {"aws:PrincipalAccount": PIPE}}),
        "Statement[3].Condition.StringEqual",
        id="unknown-operator",
    ),
    pytest.param(
        policy_text(s3__Condition={"NullIfExists": {"aws:PrincipalArn": "true"}}),
        "Statement[3].Condition.NullIfExists",
        id="null-ifexists",
    ),
    pytest.param(
        policy_text(s3__Condition={"Bool": {"kms:GrantIsForAWSResource": {"x": 1}}}),
        "Statement[3].Condition.Bool.kms:GrantIsForAWSResource",
        id="condition-value-object",
    ),
    pytest.param(
        policy_text(s3__Condition={"Bool": {"kms:GrantIsForAWSResource": []}}),
        "Statement[3].Condition.Bool.kms:GrantIsForAWSResource",
        id="condition-value-empty-list",
    ),
    pytest.param(policy_text(s1__Sid=7), "Statement[1].Sid", id="sid-not-string"),
    pytest.param(
        policy_text(s1__Actions=["kms:Get*"]),
        "Statement[1].Actions",
        id="unknown-element",
    ),
    pytest.param(with_top_level(Version=None), "Version", id="missing-version"),
    pytest.param(with_top_level(Version="2012-10-18"), "Version", id="unknown-version"),
    pytest.param(with_top_level(Statement=[]), "Statement", id="empty-statement-list"),
    pytest.param(with_top_level(Statements=[]), "Statements", id="unknown-top-level"),
    pytest.param('["Version"]', "(document)", id="not-an-object"),
    pytest.param(
        json.dumps({"Version": "2012-10-17", "Statement": {"Effect": "Allow"}}),
        "Statement",
        id="single-statement-without-principal",
    ),
    pytest.param(
        policy_text(s2__Principal={"AWS": f" {PIPE_ROOT}"}),
        "Statement[2].Principal.AWS",
        id="principal-with-space",
    ),
]


@pytest.mark.parametrize(("text", "path"), GRAMMAR_CASES)
def test_parse_policy_text_names_path(text: str, path: str) -> None:
    with pytest.raises(PolicyDocumentError) as caught:
        parse_policy_text(text)

    assert caught.value.path == path
    assert path in str(caught.value)
    assert caught.value.exit_code == 2


def test_parse_invalid_json_line_column() -> None:
    text = '{\n  "Version": "2012-10-17"\n  "Statement": []\n}'

    with pytest.raises(PolicyDocumentError) as caught:
        parse_policy_text(text)

    assert (caught.value.line, caught.value.column) == (3, 3)
    assert "line 3, column 3" in str(caught.value)
    assert isinstance(caught.value, InvalidInput)


def test_parse_policy_text_rejects_duplicate_key() -> None:
    text = '{"Version": "2012-10-17", "Statement": [], "Statement": []}'

    with pytest.raises(PolicyDocumentError, match='"Statement" appears twice'):
        parse_policy_text(text)


def test_parse_policy_text_rejects_character_outside_latin1() -> None:
    text = policy_text(s0__Sid="Enable IAM User\u2019s Permissions").replace(
        "\\u2019", "\u2019"
    )

    with pytest.raises(PolicyDocumentError, match="U\\+2019") as caught:
        parse_policy_text(text)

    assert (caught.value.line, caught.value.column) == (6, 30)


def test_parse_policy_text_rejects_oversized_text() -> None:
    text = json.dumps(vendor_policy()) + " " * 33_000

    with pytest.raises(PolicyDocumentError, match="32768-byte limit"):
        parse_policy_text(text)


def test_parse_policy_text_accepts_vendor_example() -> None:
    assert parse_policy_text(json.dumps(vendor_policy(), indent=2)) == vendor_policy()


def test_parse_policy_text_accepts_single_statement_object() -> None:
    doc = single_statement_policy()

    assert parse_policy_text(json.dumps(doc)) == doc


def test_parse_policy_text_accepts_qualified_operators() -> None:
    condition = {
        "ForAnyValue:StringLike": {"kms:EncryptionContextKeys": ["app*"]},
        "ForAllValues:StringEquals": {"aws:TagKeys": ["team"]},
        "ArnLikeIfExists": {"aws:PrincipalArn": "arn:aws:iam::*:role/x"},
        "NumericLessThan": {"kms:RecipientAttestation:ImageSha384": 5},
        "Null": {"aws:PrincipalTag/team": True},
    }

    assert (
        parse_policy_text(policy_text(s3__Condition=condition))["Version"]
        == "2012-10-17"
    )


def test_unknown_operator_suggests_close_name() -> None:
    text = policy_text(s3__Condition={"StringEqual": {"aws:PrincipalAccount": PIPE}})

    with pytest.raises(PolicyDocumentError, match='Did you mean "StringEquals"'):
        parse_policy_text(text)


def test_validate_policy_returns_same_document() -> None:
    doc = vendor_policy()

    assert validate_policy(doc) is doc


# Rendering


@pytest.mark.parametrize("form", ["root", "roles"])
def test_render_passes_analysis(form: str) -> None:
    doc = render_key_policy(key_account=KEY, pipeline_account=PIPE, principal_form=form)

    assert analyse(doc, form) == []


@pytest.mark.parametrize("form", ["root", "roles"])
def test_render_contains_required_statements(form: str) -> None:
    doc = render_key_policy(key_account=KEY, pipeline_account=PIPE, principal_form=form)
    by_sid = {s["Sid"]: s for s in doc["Statement"]}

    assert by_sid[ROOT_SID]["Principal"] == {"AWS": KEY_ROOT}
    assert by_sid[ROOT_SID]["Action"] == "kms:*"
    assert "Condition" not in by_sid[ROOT_SID]
    assert by_sid[PIPELINE_USE_SID]["Action"] == list(PIPELINE_USE_ACTIONS)
    assert by_sid[PIPELINE_GRANTS_SID]["Action"] == list(PIPELINE_GRANT_ACTIONS)
    assert by_sid[PIPELINE_GRANTS_SID]["Condition"]["Bool"] == {
        "kms:GrantIsForAWSResource": "true"
    }


def test_render_root_form_names_pipeline_root() -> None:
    doc = render_key_policy(key_account=KEY, pipeline_account=PIPE)
    use = doc["Statement"][1]

    assert use["Principal"] == {"AWS": PIPE_ROOT}
    assert "Condition" not in use


def test_render_roles_form_has_no_wildcard_principal() -> None:
    doc = render_key_policy(
        key_account=KEY, pipeline_account=PIPE, principal_form="roles"
    )
    principals = [json.dumps(s["Principal"]) for s in doc["Statement"]]

    assert not any("*" in text for text in principals)


def test_render_roles_form_conditions_on_both_statements() -> None:
    doc = render_key_policy(
        key_account=KEY, pipeline_account=PIPE, principal_form="roles"
    )
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    expected = [
        f"arn:aws:iam::{PIPE}:role/SnowplowOperator",
        f"arn:aws:iam::{PIPE}:role/sp-*",
        f"arn:aws:iam::{PIPE}:role/snowplow-*",
    ]

    assert by_sid[PIPELINE_USE_SID]["Condition"] == {
        "ArnLike": {"aws:PrincipalArn": expected}
    }
    assert by_sid[PIPELINE_GRANTS_SID]["Condition"]["ArnLike"] == {
        "aws:PrincipalArn": expected
    }
    assert "Bool" in by_sid[PIPELINE_GRANTS_SID]["Condition"]


def test_render_roles_form_allows_documented_roles_only() -> None:
    doc = render_key_policy(
        key_account=KEY, pipeline_account=PIPE, principal_form="roles"
    )

    assert (
        evaluate(
            doc,
            principal_arn=f"arn:aws:iam::{PIPE}:role/sp-enrich",
            action="kms:Decrypt",
        )
        == ALLOW
    )
    assert (
        evaluate(
            doc,
            principal_arn=f"arn:aws:iam::{PIPE}:role/SnowplowOperator",
            action="kms:Encrypt",
        )
        == ALLOW
    )
    assert (
        evaluate(
            doc, principal_arn=f"arn:aws:iam::{PIPE}:role/other", action="kms:Decrypt"
        )
        == IMPLICIT_DENY
    )


def test_render_admin_statement() -> None:
    admin = f"arn:aws:iam::{KEY}:role/KeyAdmin"
    doc = render_key_policy(
        key_account=KEY, pipeline_account=PIPE, admin_roles=[admin, admin]
    )
    statement = doc["Statement"][1]

    assert statement["Principal"] == {"AWS": [admin]}
    assert statement["Action"] == list(KEY_ADMIN_ACTIONS)
    assert analyse(doc) == []


def test_render_without_admins_has_three_statements() -> None:
    doc = render_key_policy(key_account=KEY, pipeline_account=PIPE)

    assert [s["Sid"] for s in doc["Statement"]] == [
        ROOT_SID,
        PIPELINE_USE_SID,
        PIPELINE_GRANTS_SID,
    ]


def test_render_other_partition() -> None:
    doc = render_key_policy(key_account=KEY, pipeline_account=PIPE, partition="aws-cn")

    assert doc["Statement"][0]["Principal"] == {"AWS": f"arn:aws-cn:iam::{KEY}:root"}
    assert (
        analyse_policy(doc, key_account=KEY, pipeline_account=PIPE, partition="aws-cn")
        == []
    )


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({"principal_form": "users"}, id="bad-form"),
        pytest.param(
            {"admin_roles": ["arn:aws:iam::1234:role/Admin"]}, id="short-account"
        ),
        pytest.param(
            {"admin_roles": [f"arn:aws:iam::{KEY}:user/alice"]}, id="user-not-role"
        ),
        pytest.param(
            {"admin_roles": [f"arn:aws:iam::{KEY}:role/Admin*"]}, id="wildcard-role"
        ),
        pytest.param(
            {"admin_roles": [f"arn:aws-cn:iam::{KEY}:role/A"]}, id="other-partition"
        ),
        pytest.param({"partition": "azure"}, id="bad-partition"),
        pytest.param(
            {"pipeline_account": "SNOWPLOW_PIPELINE_ACCOUNT_ID"}, id="placeholder"
        ),
    ],
)
def test_render_rejects_invalid_input(arguments: dict[str, Any]) -> None:
    values: dict[str, Any] = {"key_account": KEY, "pipeline_account": PIPE, **arguments}

    with pytest.raises(InvalidInput):
        render_key_policy(**values)


# Merge, canonical JSON and diff


def rendered() -> dict[str, Any]:
    return render_key_policy(key_account=KEY, pipeline_account=PIPE)


def test_merge_keeps_console_root_statement() -> None:
    current = vendor_policy()
    merged = merge_policy(current, rendered())
    sids = [s["Sid"] for s in merged["Statement"]]

    assert merged["Statement"][0] == current["Statement"][0]
    assert sids[:3] == [ROOT, PIPELINE_USE_SID, PIPELINE_GRANTS_SID]
    assert ROOT_SID not in sids


def test_merge_adds_root_statement_when_missing() -> None:
    current = vendor_policy()
    current["Statement"] = current["Statement"][1:]
    merged = merge_policy(current, rendered())

    assert merged["Statement"][0]["Sid"] == ROOT_SID


def test_merge_keeps_customer_statements_in_order() -> None:
    current = vendor_policy()
    merged = merge_policy(current, rendered())

    assert merged["Statement"][3:] == current["Statement"][1:]


def test_merge_keeps_protection_statement() -> None:
    merged = merge_policy(add_protection(vendor_policy(), [BREAK_GLASS]), rendered())

    assert merged["Statement"][-1]["Sid"] == PROTECTION_SID


def test_merge_replaces_statements_with_rendered_sids() -> None:
    current = plus(allow(PIPELINE_USE_SID, {"AWS": PIPE_ROOT}, "kms:Decrypt"))
    merged = merge_policy(current, rendered())
    uses = [s for s in merged["Statement"] if s["Sid"] == PIPELINE_USE_SID]

    assert uses == [rendered()["Statement"][1]]


def test_merge_keeps_root_statement_with_other_principals() -> None:
    current = changed(ROOT, Principal={"AWS": [KEY_ROOT, f"arn:aws:iam::{OTHER}:root"]})
    merged = merge_policy(current, rendered())

    assert ROOT in [s["Sid"] for s in merged["Statement"]]


def test_merge_keeps_conditional_root_statement() -> None:
    current = changed(ROOT, Condition={"Bool": {"aws:SecureTransport": "true"}})
    merged = merge_policy(current, rendered())

    assert ROOT in [s["Sid"] for s in merged["Statement"]]


def test_merge_does_not_change_inputs() -> None:
    current, new = vendor_policy(), rendered()
    before = (copy.deepcopy(current), copy.deepcopy(new))
    merge_policy(current, new)

    assert (current, new) == before


def test_merge_result_passes_analysis() -> None:
    merged = merge_policy(vendor_policy(pipe=OTHER), rendered())
    rules = {f.rule for f in analyse(merged)}

    assert rules == {"foreign-account"}


def test_merge_keeps_current_id() -> None:
    assert merge_policy(vendor_policy(), rendered())["Id"] == "key-consolepolicy-3"


def test_canonical_json_sorts_keys_with_two_space_indent() -> None:
    text = canonical_json({"b": 1, "a": [1]})

    assert text == '{\n  "a": [\n    1\n  ],\n  "b": 1\n}'


def test_diff_empty_for_reordered_statements() -> None:
    reordered = vendor_policy()
    reordered["Statement"].reverse()

    assert diff_policies(vendor_policy(), reordered) == ""


def test_diff_empty_for_string_and_list_spelling() -> None:
    spelled = changed(ROOT, Action=["kms:*"], Principal={"AWS": [KEY_ROOT]})
    spelled["Statement"][3]["Condition"] = {"Bool": {"kms:GrantIsForAWSResource": True}}

    assert diff_policies(vendor_policy(), spelled) == ""


def test_diff_shows_removed_action() -> None:
    narrowed = changed(USE, Action=["kms:Encrypt"])
    diff = diff_policies(vendor_policy(), narrowed)

    assert '-        "kms:Decrypt",' in diff.splitlines()
    assert diff.startswith("--- current\n+++ proposed\n")


def test_same_statements_ignores_order() -> None:
    reordered = vendor_policy()
    reordered["Statement"].reverse()

    assert same_statements(vendor_policy(), reordered)


def test_same_statements_detects_change() -> None:
    assert not same_statements(vendor_policy(), changed(GRANTS, Condition=None))


# Evaluator


def decide(doc: dict[str, Any], principal: str, action: str, **context: Any) -> str:
    values = {key.replace("__", ":"): value for key, value in context.items()}
    return evaluate(doc, principal_arn=principal, action=action, context=values or None)


def test_evaluate_account_root_matches_any_principal_of_account() -> None:
    role = f"arn:aws:iam::{PIPE}:role/anything/with-path"

    assert decide(vendor_policy(), role, "kms:Decrypt") == ALLOW


def test_evaluate_other_account_implicitly_denied() -> None:
    assert (
        decide(vendor_policy(), f"arn:aws:iam::{OTHER}:role/x", "kms:Decrypt")
        == IMPLICIT_DENY
    )


def test_evaluate_action_not_allowed_implicitly_denied() -> None:
    assert decide(vendor_policy(), PIPE_ROOT, "kms:DisableKey") == IMPLICIT_DENY


def test_evaluate_explicit_deny_wins() -> None:
    doc = plus(deny("NoDecrypt", {"AWS": PIPE_ROOT}, "kms:Decrypt"))

    assert decide(doc, f"arn:aws:iam::{PIPE}:role/sp-x", "kms:Decrypt") == EXPLICIT_DENY


def test_evaluate_action_names_ignore_case() -> None:
    assert decide(vendor_policy(), PIPE_ROOT, "KMS:decrypt") == ALLOW


def test_evaluate_grant_needs_condition_key() -> None:
    role = f"arn:aws:iam::{PIPE}:role/sp-x"

    assert decide(vendor_policy(), role, "kms:CreateGrant") == IMPLICIT_DENY
    assert (
        decide(
            vendor_policy(), role, "kms:CreateGrant", kms__GrantIsForAWSResource=True
        )
        == ALLOW
    )
    assert (
        decide(
            vendor_policy(), role, "kms:CreateGrant", kms__GrantIsForAWSResource="false"
        )
        == IMPLICIT_DENY
    )


def test_evaluate_assumed_role_session_uses_role_arn() -> None:
    doc = roles_policy(DOCUMENTED_ROLES)
    session = f"arn:aws:sts::{PIPE}:assumed-role/snowplow-loader/i-0abc"

    assert decide(doc, session, "kms:Decrypt") == ALLOW


def test_evaluate_role_principal_matches_its_sessions() -> None:
    doc = plus(
        allow("Reader", {"AWS": f"arn:aws:iam::{OTHER}:role/Reader"}, "kms:Decrypt")
    )
    session = f"arn:aws:sts::{OTHER}:assumed-role/Reader/alice"

    assert decide(doc, session, "kms:Decrypt") == ALLOW


def condition_doc(condition: dict[str, Any]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [allow("Probe", "*", "kms:Decrypt", condition)],
    }


CALLER = f"arn:aws:iam::{PIPE}:role/sp-enrich"
CONDITION_CASES = [
    pytest.param(
        {"StringEquals": {"kms:CallerAccount": PIPE}}, {}, ALLOW, id="caller-account"
    ),
    pytest.param(
        {"StringEquals": {"aws:PrincipalAccount": KEY}},
        {},
        IMPLICIT_DENY,
        id="other-account",
    ),
    pytest.param(
        {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}},
        {},
        IMPLICIT_DENY,
        id="absent-key-equals",
    ),
    pytest.param(
        {"StringNotEquals": {"kms:ViaService": "x"}},
        {},
        ALLOW,
        id="absent-key-not-equals",
    ),
    pytest.param(
        {"StringEqualsIfExists": {"kms:ViaService": "x"}},
        {},
        ALLOW,
        id="ifexists-absent",
    ),
    pytest.param(
        {"StringEqualsIfExists": {"kms:ViaService": "x"}},
        {"kms:ViaService": "y"},
        IMPLICIT_DENY,
        id="ifexists-present",
    ),
    pytest.param(
        {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/sp-*"}},
        {},
        ALLOW,
        id="string-like",
    ),
    pytest.param(
        {"StringNotLike": {"aws:PrincipalArn": "*sp-*"}},
        {},
        IMPLICIT_DENY,
        id="string-not-like",
    ),
    pytest.param(
        {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/sp-*"}},
        {},
        ALLOW,
        id="arn-like",
    ),
    pytest.param(
        {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam:*"}},
        {},
        IMPLICIT_DENY,
        id="arn-like-field-wise",
    ),
    pytest.param(
        {"ArnEquals": {"aws:PrincipalArn": CALLER}}, {}, ALLOW, id="arn-equals"
    ),
    pytest.param(
        {"ArnNotLike": {"aws:PrincipalArn": BREAK_GLASS}}, {}, ALLOW, id="arn-not-like"
    ),
    pytest.param(
        {"StringEqualsIgnoreCase": {"kms:ViaService": "S3.AMAZONAWS.COM"}},
        {"kms:ViaService": "s3.amazonaws.com"},
        ALLOW,
        id="ignore-case",
    ),
    pytest.param(
        {"Bool": {"aws:SecureTransport": "true"}},
        {"aws:SecureTransport": True},
        ALLOW,
        id="bool",
    ),
    pytest.param({"Null": {"kms:ViaService": "true"}}, {}, ALLOW, id="null-absent"),
    pytest.param(
        {"Null": {"kms:ViaService": "false"}}, {}, IMPLICIT_DENY, id="null-not-present"
    ),
    pytest.param(
        {"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": ["a", "b"]}},
        {"kms:EncryptionContextKeys": ["b", "c"]},
        ALLOW,
        id="for-any-value",
    ),
    pytest.param(
        {"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "a"}},
        {},
        IMPLICIT_DENY,
        id="for-any-value-absent",
    ),
    pytest.param(
        {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["a", "b"]}},
        {"kms:EncryptionContextKeys": ["b", "c"]},
        IMPLICIT_DENY,
        id="for-all-values",
    ),
    pytest.param(
        {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["a"]}},
        {},
        ALLOW,
        id="for-all-values-absent",
    ),
    pytest.param(
        {"ForAllValues:StringNotLike": {"aws:TagKeys": "key1*"}},
        {"aws:TagKeys": ["key2"]},
        ALLOW,
        id="for-all-values-negated",
    ),
    pytest.param(
        {"NumericLessThan": {"kms:ExpirationModel": 5}},
        {"kms:ExpirationModel": "3"},
        ALLOW,
        id="numeric",
    ),
    pytest.param(
        {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
        {"aws:CurrentTime": "2029-06-01T00:00:00Z"},
        ALLOW,
        id="date",
    ),
    pytest.param(
        {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        {"aws:SourceIp": "10.1.2.3"},
        ALLOW,
        id="ip-address",
    ),
    pytest.param(
        {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        {"aws:SourceIp": "10.1.2.3"},
        IMPLICIT_DENY,
        id="not-ip-address",
    ),
    pytest.param(
        {"StringEquals": {"KMS:CALLERACCOUNT": PIPE}},
        {},
        ALLOW,
        id="key-name-ignores-case",
    ),
]


@pytest.mark.parametrize(("condition", "context", "expected"), CONDITION_CASES)
def test_evaluate_condition_operators(
    condition: dict[str, Any], context: dict[str, Any], expected: str
) -> None:
    decision = evaluate(
        condition_doc(condition),
        principal_arn=CALLER,
        action="kms:Decrypt",
        context=context,
    )

    assert decision == expected


def test_evaluate_resource_against_key_arn() -> None:
    key_arn = f"arn:aws:kms:eu-west-1:{KEY}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    doc = changed(USE, Resource=f"arn:aws:kms:eu-west-1:{KEY}:key/other")

    assert (
        evaluate(doc, principal_arn=PIPE_ROOT, action="kms:Decrypt", key_arn=key_arn)
        == IMPLICIT_DENY
    )
    assert evaluate(doc, principal_arn=PIPE_ROOT, action="kms:Decrypt") == ALLOW


@pytest.mark.parametrize(
    ("principal", "action"),
    [
        pytest.param("sp-enrich", "kms:Decrypt", id="principal-not-arn"),
        pytest.param(
            f"arn:aws:sts::{PIPE}:federated-user/bob", "kms:Decrypt", id="sts-not-role"
        ),
        pytest.param(PIPE_ROOT, "kms:Decrypt*", id="wildcard-action"),
        pytest.param(PIPE_ROOT, "Decrypt", id="action-without-prefix"),
    ],
)
def test_evaluate_rejects_invalid_request(principal: str, action: str) -> None:
    with pytest.raises(InvalidInput):
        evaluate(vendor_policy(), principal_arn=principal, action=action)


# Wildcard patterns


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        pytest.param("sp-*", "sp-*", True, id="same-pattern"),
        pytest.param("s*", "sp-*", True, id="shorter-prefix"),
        pytest.param("sp-?*", "sp-*", False, id="needs-one-more-character"),
        pytest.param("*", "a?b", True, id="star-covers-all"),
        pytest.param("a?c", "a*c", False, id="question-mark-not-star"),
        pytest.param("ab?", "abc", True, id="text-inside-pattern"),
        pytest.param("sp-a", "sp-*", False, id="text-does-not-cover-pattern"),
        pytest.param("*-*", "sp-*", True, id="two-stars"),
        pytest.param("kms:*", "kms:GenerateDataKey*", True, id="kms-star"),
    ],
)
def test_glob_covers(outer: str, inner: str, expected: bool) -> None:
    assert glob_covers(outer, inner) is expected


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        pytest.param("sp-*", "snowplow-*", False, id="distinct-prefixes"),
        pytest.param("sp-*", "*-loader", True, id="prefix-and-suffix"),
        pytest.param("a?", "*b", True, id="question-mark-and-star"),
        pytest.param("abc", "abd", False, id="different-texts"),
        pytest.param("SnowplowOperator", "sp-*", False, id="case-sensitive"),
    ],
)
def test_globs_overlap(first: str, second: str, expected: bool) -> None:
    assert globs_overlap(first, second) is expected


SHORT_TEXTS = [
    "".join(chars) for n in range(9) for chars in itertools.product("ab", repeat=n)
]
patterns = st.text(alphabet="ab*?", max_size=4)


@given(outer=patterns, inner=patterns)
def test_glob_covers_never_claims_a_counterexample(outer: str, inner: str) -> None:
    counterexamples = [
        text
        for text in SHORT_TEXTS
        if glob_match(inner, text) and not glob_match(outer, text)
    ]

    if glob_covers(outer, inner):
        assert counterexamples == []


@given(first=patterns, second=patterns)
def test_globs_overlap_agrees_with_common_texts(first: str, second: str) -> None:
    common = [t for t in SHORT_TEXTS if glob_match(first, t) and glob_match(second, t)]

    assert globs_overlap(first, second) is bool(common)
