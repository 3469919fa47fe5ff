"""One invocation of every kmsguard command, with the state it needs and its shape.

Each case prepares the database and moto through the library (fast, in
process), then names the command line to run and the JSON output shape in
docs/json-schema/ that its output must match. The output test runs each case
with click's CliRunner inside mock_aws.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import (
    PIPELINE_ACCOUNT,
    REGION,
    CloudTrailFixture,
    create_key,
    drive_rotation,
)
from procedure_drivers import drive_disablement, drive_onboarding
from test_protection import BREAK_GLASS, pipeline_policy

from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App


@dataclass
class World:
    """What a case can prepare: the App on the test database, moto's KMS, files."""

    app: App
    kms: Any
    tmp_path: Path
    cloudtrail: CloudTrailFixture

    def key(self) -> str:
        """Create an Enabled key whose policy lets the pipeline account use it."""
        arn = create_key(self.kms, Description="pipeline key")
        self.kms.put_key_policy(
            KeyId=arn, PolicyName="default", Policy=json.dumps(pipeline_policy())
        )
        return arn

    def rotation(self, state: str) -> str:
        return drive_rotation(self.app, self.kms, state)

    def run_key(self, target: str = "current_key_arn") -> str:
        run = self.app.store.runs("prod")[-1]
        return str(getattr(run, target))


Prepare = Callable[[World], list[str]]


@dataclass(frozen=True)
class Case:
    """A command line, the shape its JSON has, and the exit statuses it may have."""

    path: str
    shape: str
    prepare: Prepare
    codes: tuple[int, ...] = (0,)
    label: str = ""

    @property
    def id(self) -> str:
        return self.label or self.path.replace(" ", "-")


def _words(path: str, *args: str) -> Prepare:
    return lambda world: [*path.split(), *args]


def _rotation_at(state: str, path: str, *args: str) -> Prepare:
    def prepare(world: World) -> list[str]:
        world.rotation(state)
        return [*path.split(), "prod", *args]

    return prepare


def _onboarding_at(state: str, path: str, *args: str) -> Prepare:
    def prepare(world: World) -> list[str]:
        drive_onboarding(world.app, state)
        return [*path.split(), "prod", *args]

    return prepare


def _disablement_at(state: str, path: str, *args: str) -> Prepare:
    def prepare(world: World) -> list[str]:
        drive_disablement(world.app, world.kms, state)
        return [*path.split(), "prod", *args]

    return prepare


def _with_key(path: str, *args: str) -> Prepare:
    def prepare(world: World) -> list[str]:
        return [*path.split(), world.key(), *args]

    return prepare


def _rotation_start(world: World) -> list[str]:
    return ["rotation", "start", "prod", "--current-key", world.key()]


def _disablement_start(world: World) -> list[str]:
    return ["disablement", "start", "prod", "--key", world.key()]


def _check_policy(world: World) -> list[str]:
    return ["check", "policy", "--key", world.key(), "--env", "prod"]


def _policy_diff(world: World) -> list[str]:
    return ["policy", "diff", "--env", "prod", "--key", world.key()]


def _evidence(world: World) -> list[str]:
    return ["evidence", "prod", "--key", world.key()]


def _doctor(world: World) -> list[str]:
    return ["doctor", "prod", "--key", world.key()]


def _protect(world: World) -> list[str]:
    world.app.start(PROCEDURES["rotation"], "prod", {"key": world.key()})
    return ["protect", "prod", "--break-glass-role", BREAK_GLASS]


def _unprotect(world: World) -> list[str]:
    from kmsguard.workflow.protection import protect

    world.app.start(PROCEDURES["rotation"], "prod", {"key": world.key()})
    protect(world.app, "prod", [BREAK_GLASS])
    return ["unprotect", "prod", "--reason", "testing"]


def _audit_verify(world: World) -> list[str]:
    world.rotation("started")
    return ["audit", "verify"]


def _audit_export_file(world: World) -> list[str]:
    target = world.tmp_path / "export.jsonl"
    return [
        "audit",
        "export",
        "prod",
        "--format",
        "jsonl",
        "--output-file",
        str(target),
    ]


CONFIRM = ("--confirmed-by", "Sam (vendor support)", "--message", "done")
ACCEPT = ("--accept-risk", "test: the key was disabled moments ago")

CASES: tuple[Case, ...] = (
    # Environments, status, history, audit
    Case(
        "env add",
        "environment",
        _words(
            "env add", "qa1", "--region", REGION, "--pipeline-account", PIPELINE_ACCOUNT
        ),
    ),
    Case("env list", "environment-list", _words("env list")),
    Case("env show", "environment", _words("env show", "prod")),
    Case(
        "env set-resources",
        "environment",
        _words("env set-resources", "prod", "--s3-bucket", "pipeline-archive"),
    ),
    Case("status", "status", _rotation_at("support_contacted", "status")),
    Case("history", "history", _rotation_at("policy_applied", "history")),
    Case("audit verify", "audit-verify", _audit_verify),
    Case("audit export", "audit-export", _rotation_at("started", "audit export")),
    Case(
        "audit export",
        "audit-export",
        _audit_export_file,
        label="audit-export-file",
    ),
    Case("diagram", "diagram", _rotation_at("new_key_ready", "diagram rotation")),
    # Rotation
    Case("rotation start", "step-result", _rotation_start),
    Case(
        "rotation new-key",
        "step-result",
        _rotation_at("started", "rotation new-key", "--create"),
    ),
    Case(
        "rotation apply-policy",
        "step-result",
        _rotation_at("new_key_ready", "rotation apply-policy"),
    ),
    Case(
        "rotation apply-policy",
        "policy-preview",
        _rotation_at("new_key_ready", "rotation apply-policy", "--dry-run"),
        label="rotation-apply-policy-dry-run",
    ),
    Case(
        "rotation contact-support",
        "step-result",
        _rotation_at("policy_applied", "rotation contact-support", "--ticket", "SUP-1"),
    ),
    Case(
        "rotation confirm",
        "step-result",
        _rotation_at(
            "support_contacted", "rotation confirm", "--ticket", "SUP-1", *CONFIRM
        ),
    ),
    Case(
        "rotation disable-old-key",
        "step-result",
        _rotation_at(
            "rotation_confirmed", "rotation disable-old-key", "--yes", *ACCEPT
        ),
    ),
    Case(
        "rotation schedule-deletion",
        "step-result",
        _rotation_at(
            "old_key_disabled", "rotation schedule-deletion", "--yes", *ACCEPT
        ),
    ),
    Case(
        "rotation complete",
        "step-result",
        _rotation_at("old_key_disabled", "rotation complete"),
    ),
    Case(
        "rotation cancel",
        "step-result",
        _rotation_at("started", "rotation cancel", "--reason", "testing"),
    ),
    # Onboarding
    Case("onboarding start", "step-result", _words("onboarding start", "prod")),
    Case(
        "onboarding new-key",
        "step-result",
        _onboarding_at("started", "onboarding new-key", "--create"),
    ),
    Case(
        "onboarding apply-policy",
        "step-result",
        _onboarding_at("key_ready", "onboarding apply-policy"),
    ),
    Case(
        "onboarding share",
        "step-result",
        _onboarding_at("policy_applied", "onboarding share", "--ticket", "SUP-10"),
    ),
    Case(
        "onboarding confirm",
        "step-result",
        _onboarding_at(
            "shared_with_support", "onboarding confirm", "--ticket", "SUP-10", *CONFIRM
        ),
    ),
    Case(
        "onboarding verify",
        "refusal",
        _onboarding_at("configured", "onboarding verify"),
        codes=(3,),
    ),
    Case(
        "onboarding complete",
        "step-result",
        _onboarding_at("verified", "onboarding complete"),
    ),
    Case(
        "onboarding cancel",
        "step-result",
        _onboarding_at("started", "onboarding cancel", "--reason", "testing"),
    ),
    # Disablement
    Case("disablement start", "step-result", _disablement_start),
    Case(
        "disablement request-removal",
        "step-result",
        _disablement_at("started", "disablement request-removal", "--ticket", "SUP-20"),
    ),
    Case(
        "disablement confirm",
        "step-result",
        _disablement_at(
            "removal_requested", "disablement confirm", "--ticket", "SUP-20", *CONFIRM
        ),
    ),
    Case(
        "disablement disable-key",
        "step-result",
        _disablement_at(
            "removal_confirmed", "disablement disable-key", "--yes", *ACCEPT
        ),
    ),
    Case(
        "disablement schedule-deletion",
        "step-result",
        _disablement_at(
            "key_disabled", "disablement schedule-deletion", "--yes", *ACCEPT
        ),
    ),
    Case(
        "disablement complete",
        "step-result",
        _disablement_at("key_disabled", "disablement complete"),
    ),
    Case(
        "disablement cancel",
        "step-result",
        _disablement_at("started", "disablement cancel", "--reason", "testing"),
    ),
    # Recovery
    Case(
        "recover re-enable",
        "step-result",
        _rotation_at("old_key_disabled", "recover re-enable", "--yes"),
    ),
    Case(
        "recover cancel-deletion",
        "step-result",
        _rotation_at("old_key_deletion_scheduled", "recover cancel-deletion", "--yes"),
    ),
    # Checks and reports
    Case("evidence", "evidence-report", _evidence, codes=(0, 3)),
    Case("check key", "check-key", _with_key("check key", "--env", "prod")),
    Case("check policy", "check-policy", _check_policy, codes=(0, 3)),
    Case("policy render", "policy-render", _words("policy render", "--env", "prod")),
    Case("policy diff", "policy-diff", _policy_diff),
    Case("doctor", "doctor", _doctor, codes=(0, 3)),
    Case("iam-policy", "iam-policy", _words("iam-policy")),
    Case("protect", "protection", _protect),
    Case("unprotect", "protection", _unprotect),
    Case(
        "watch",
        "watch",
        _rotation_at("old_key_disabled", "watch"),
        codes=(0, 3),
    ),
    # Errors
    Case("history", "error", _words("history", "nowhere"), codes=(2,), label="error"),
    Case(
        "rotation disable-old-key",
        "refusal",
        _rotation_at("support_contacted", "rotation disable-old-key", "--yes"),
        codes=(3,),
        label="refusal",
    ),
)
