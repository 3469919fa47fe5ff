"""Handlers of the steps that write to a KMS key: create, policy, disable, delete."""

from __future__ import annotations

import json
import logging
from typing import Any

from kmsguard.workflow import protection_shared, protection_steps
from kmsguard.workflow.aws import KeyFacts
from kmsguard.workflow.context import Outcome, StepContext
from kmsguard.workflow.drift import applied_policy_update
from kmsguard.workflow.errors import InvalidInput, OperationFailed
from kmsguard.workflow.evidence_environment import (
    validate_deletion_params,
    validate_disable_params,
)
from kmsguard.workflow.handlers import BaseHandler
from kmsguard.workflow.identifiers import (
    parse_key_reference,
    validate_alias,
    validate_role_arn,
)
from kmsguard.workflow.keys import VENDOR_KEY_CHECKS, KeyExpectations, check_key
from kmsguard.workflow.records import Event, PolicyBackup, utc_now

log = logging.getLogger(__name__)

RUN_TAG = "kmsguard:run"
ENVIRONMENT_TAG = "kmsguard:environment"
NEW_KEY_CHECKS = (*VENDOR_KEY_CHECKS, "key_not_current")


def run_tag_value(ctx: StepContext) -> str:
    assert ctx.run is not None
    return f"{ctx.env_name}/{ctx.run.id}"


class NewKey(BaseHandler):
    """Create the new key with the documented settings, or adopt one by identifier."""

    def validate(self, ctx: StepContext) -> None:
        create, key = bool(ctx.params.get("create")), ctx.params.get("key")
        if create == bool(key):
            raise InvalidInput(
                "give exactly one of --create (kmsguard creates the key) or "
                "--key KEY (adopt an existing key)"
            )
        if key:
            parse_key_reference(str(key))
        alias = ctx.params.get("alias")
        if alias and not create:
            raise InvalidInput(
                "--alias applies only with --create; remove it or use --create"
            )
        if alias:
            ctx.params["alias"] = validate_alias(str(alias))

    def prepare(self, ctx: StepContext) -> None:
        ctx.identify_caller()
        if ctx.params.get("key"):
            ctx.facts["key"] = ctx.kms.resolve(str(ctx.params["key"]))
            return
        ctx.facts["key"] = None
        alias = ctx.params.get("alias")
        if alias:
            target = ctx.kms.alias_target(str(alias))
            if target:
                raise InvalidInput(
                    f"alias {alias} already exists and points to key {target}; choose "
                    "another --alias, or adopt that key with --key"
                )

    def intent(self, ctx: StepContext) -> dict[str, Any] | None:
        if not ctx.params.get("create"):
            return None
        return {
            "action": "kms:CreateKey",
            "tag": {RUN_TAG: run_tag_value(ctx)},
            "params": _json_params(ctx),
        }

    def execute(self, ctx: StepContext) -> Outcome:
        notes: list[str] = []
        if ctx.params.get("create"):
            facts = self._create(ctx)
        else:
            facts = ctx.facts["key"]
            if not facts.rotation_enabled:
                notes.append(
                    f"warning: automatic rotation is off on {facts.arn}; turn it on "
                    f"with `aws kms enable-key-rotation --key-id {facts.arn}`"
                )
        return Outcome(
            updates={"new_key_arn": facts.arn},
            evidence={
                "key": facts.to_evidence(),
                "created": bool(ctx.params.get("create")),
            },
            message=f"new key {facts.arn}",
            notes=notes,
        )

    def _create(self, ctx: StepContext) -> KeyFacts:
        kms = ctx.kms
        tags = {RUN_TAG: run_tag_value(ctx), ENVIRONMENT_TAG: ctx.env_name}
        try:
            arn = kms.create_key(
                f"kmsguard {ctx.procedure.name} key for {ctx.env_name}", tags
            )
        except OperationFailed as exc:
            # An error response from AWS means that no key was created. An
            # error without one (a timeout) leaves it open, for reconcile.
            ctx.facts["create_rejected"] = bool(getattr(exc, "aws_code", ""))
            raise
        ctx.facts["created_key_arn"] = arn
        return self._finish(ctx, arn)

    def _finish(self, ctx: StepContext, arn: str) -> KeyFacts:
        kms = ctx.kms
        alias = ctx.params.get("alias")
        if alias and kms.alias_target(str(alias)) is None:
            kms.create_alias(str(alias), arn)
        kms.enable_key_rotation(arn)
        facts = kms.describe(arn)
        expected = KeyExpectations(
            ctx.environment.region, ctx.facts.get("caller_account"), _current(ctx)
        )
        failed = [c for c in check_key(facts, expected, NEW_KEY_CHECKS) if not c.passed]
        if failed:
            raise OperationFailed(
                f"created key {arn} fails its checks: "
                + "; ".join(c.reason for c in failed)
            )
        return facts

    def reconcile(self, ctx: StepContext, intent: Event) -> Outcome | None:
        """Adopt the key an interrupted create made, found by its run tag.

        In the process that made the call, the key ARN CreateKey returned is
        used, so the account's keys are listed only after a crash.
        """
        tag = intent.evidence.get("tag", {}).get(RUN_TAG)
        if not tag or ctx.facts.get("create_rejected"):
            return None
        arn = ctx.facts.get("created_key_arn") or ctx.kms.find_key_by_tag(
            RUN_TAG, str(tag)
        )
        if arn is None:
            return None
        ctx.identify_caller()
        facts = self._finish(ctx, arn)
        return Outcome(
            updates={"new_key_arn": facts.arn},
            evidence={
                "key": facts.to_evidence(),
                "created": True,
                "adopted_by_tag": tag,
            },
        )


def _current(ctx: StepContext) -> str | None:
    return ctx.run.current_key_arn if ctx.run else None


def _json_params(ctx: StepContext) -> dict[str, Any]:
    return {
        k: v
        for k, v in ctx.params.items()
        if isinstance(v, str | int | bool | list | type(None))
    }


class ApplyPolicy(BaseHandler):
    """Apply the rendered key policy: back up, put, read back, check again."""

    def validate(self, ctx: StepContext) -> None:
        form = ctx.params.get("pipeline_principal") or "root"
        if form not in ("root", "roles"):
            raise InvalidInput(
                f"invalid --pipeline-principal {form!r}: use root or roles"
            )
        ctx.params["pipeline_principal"] = form
        roles = [
            validate_role_arn(r, "--admin-role")
            for r in ctx.params.get("admin_roles") or ()
        ]
        ctx.params["admin_roles"] = roles

    def prepare(self, ctx: StepContext) -> None:
        from kmsguard.workflow import policy

        ctx.identify_caller()
        key_arn = ctx.target_key()
        ctx.facts["policy_key"] = key_arn
        current_text = ctx.kms.get_key_policy(key_arn)
        current = json.loads(current_text)
        rendered = policy.render_key_policy(
            key_account=key_arn.split(":")[4],
            pipeline_account=ctx.environment.pipeline_account,
            principal_form=str(ctx.params["pipeline_principal"]),
            admin_roles=list(ctx.params["admin_roles"]),
        )
        merged = policy.merge_policy(current, rendered)
        ctx.facts.update(
            current_policy_text=current_text,
            current_policy=current,
            new_policy=merged,
            policy_diff=policy.diff_policies(current, merged),
            policy_findings=self._findings(ctx, merged),
        )

    @staticmethod
    def _findings(ctx: StepContext, document: dict[str, Any]) -> list[Any]:
        from kmsguard.workflow import policy

        key_arn = ctx.target_key()
        return list(
            policy.analyse_policy(
                document,
                key_account=key_arn.split(":")[4],
                pipeline_account=ctx.environment.pipeline_account,
                principal_form=str(ctx.params["pipeline_principal"]),
            )
        )

    def intent(self, ctx: StepContext) -> dict[str, Any] | None:
        from kmsguard.workflow import policy

        text = policy.canonical_json(ctx.facts["new_policy"])
        return {
            "action": "kms:PutKeyPolicy",
            "key": ctx.target_key(),
            "policy": text,
            # Committed before the write, so the backup survives a crash.
            "previous_policy": ctx.facts["current_policy_text"],
            "params": _json_params(ctx),
        }

    def execute(self, ctx: StepContext) -> Outcome:
        from kmsguard.workflow import policy

        key_arn = ctx.target_key()
        text = policy.canonical_json(ctx.facts["new_policy"])
        ctx.kms.put_key_policy(key_arn, text)
        read_back = json.loads(ctx.kms.get_key_policy(key_arn))
        errors = [f for f in self._findings(ctx, read_back) if f.severity == "error"]
        if errors or not policy.same_statements(read_back, ctx.facts["new_policy"]):
            raise OperationFailed(
                f"the key policy read back from {key_arn} does not match the policy "
                "applied or fails its checks; the previous policy is backed up, see "
                f"`kmsguard history {ctx.env_name}`"
            )
        form = str(ctx.params["pipeline_principal"])
        return Outcome(
            data_updates=applied_policy_update(ctx.run, key_arn, text, form),
            evidence={
                "key": key_arn,
                "policy_diff": ctx.facts["policy_diff"],
                "form": form,
            },
            message=f"key policy applied to {key_arn}",
            backups=(
                PolicyBackup(
                    key_arn, ctx.facts["current_policy_text"], "before apply-policy"
                ),
            ),
        )

    def reconcile(self, ctx: StepContext, intent: Event) -> Outcome | None:
        from kmsguard.workflow import policy

        key_arn = str(intent.evidence.get("key"))
        current = json.loads(ctx.kms.get_key_policy(key_arn))
        text = str(intent.evidence.get("policy"))
        if not policy.same_statements(current, json.loads(text)):
            return None
        form = str(intent.evidence.get("params", {}).get("pipeline_principal", "root"))
        previous = intent.evidence.get("previous_policy")
        backups: tuple[PolicyBackup, ...] = ()
        if isinstance(previous, str):
            backups = (PolicyBackup(key_arn, previous, "before apply-policy"),)
        return Outcome(
            data_updates=applied_policy_update(ctx.run, key_arn, text, form),
            evidence={"key": key_arn, "form": form},
            message=f"key policy applied to {key_arn}",
            backups=backups,
        )


class KeyStateHandler(BaseHandler):
    """Common parts of the handlers that change a key's state."""

    action = ""
    result_state = ""

    def prepare(self, ctx: StepContext) -> None:
        ctx.identify_caller()
        ctx.facts["key"] = ctx.kms.describe(ctx.target_key())

    def intent(self, ctx: StepContext) -> dict[str, Any] | None:
        return {
            "action": self.action,
            "key": ctx.target_key(),
            "params": _json_params(ctx),
        }

    def reconcile(self, ctx: StepContext, intent: Event) -> Outcome | None:
        facts = ctx.kms.describe(str(intent.evidence.get("key")))
        if facts.state != self.result_state:
            return None
        return self.outcome(ctx, facts)

    def outcome(self, ctx: StepContext, facts: KeyFacts) -> Outcome:
        raise NotImplementedError


class DisableKey(KeyStateHandler):
    """Disable the key; a protection statement is narrowed to let DisableKey through."""

    action = "kms:DisableKey"
    result_state = "Disabled"

    def validate(self, ctx: StepContext) -> None:
        validate_disable_params(ctx.params)

    def prepare(self, ctx: StepContext) -> None:
        super().prepare(ctx)
        protection_steps.prepare_narrowing(ctx)

    def intent(self, ctx: StepContext) -> dict[str, Any] | None:
        return protection_steps.with_intent(ctx, super().intent(ctx) or {})

    def execute(self, ctx: StepContext) -> Outcome:
        key_arn = ctx.target_key()
        change = protection_steps.apply_planned(ctx)
        protection_steps.call_allowed(ctx, change, lambda: ctx.kms.disable_key(key_arn))
        outcome = self.outcome(ctx, ctx.kms.describe(key_arn))
        return protection_shared.record_shared(ctx, outcome, change, ctx.step.command)

    def reconcile(self, ctx: StepContext, intent: Event) -> Outcome | None:
        outcome = super().reconcile(ctx, intent)
        return protection_steps.reconcile_record(ctx, intent, outcome, ctx.step.command)

    def outcome(self, ctx: StepContext, facts: KeyFacts) -> Outcome:
        return Outcome(
            data_updates={
                "key_retired": True,
                "disabled_at": utc_now(),
                "retired_key": facts.arn,
            },
            evidence={"key": facts.to_evidence()},
            message=f"key {facts.arn} disabled",
        )


class ScheduleDeletion(KeyStateHandler):
    action = "kms:ScheduleKeyDeletion"
    result_state = "PendingDeletion"

    def validate(self, ctx: StepContext) -> None:
        days = ctx.params.get("window_days")
        days = 30 if days is None else days
        if not isinstance(days, int) or not 7 <= days <= 30:
            raise InvalidInput(
                f"invalid --window-days {days!r}: AWS allows a waiting period of 7 to "
                "30 days; give a value in that range (default 30)"
            )
        ctx.params["window_days"] = days
        validate_deletion_params(ctx.params)

    def prepare(self, ctx: StepContext) -> None:
        super().prepare(ctx)
        protection_steps.prepare_removal(ctx, ctx.target_key())

    def intent(self, ctx: StepContext) -> dict[str, Any] | None:
        return protection_steps.with_intent(ctx, super().intent(ctx) or {})

    def execute(self, ctx: StepContext) -> Outcome:
        key_arn = ctx.target_key()
        days = int(ctx.params["window_days"])
        change = protection_steps.apply_planned(ctx)
        protection_steps.call_allowed(
            ctx, change, lambda: ctx.kms.schedule_key_deletion(key_arn, days)
        )
        outcome = self.outcome(ctx, ctx.kms.describe(key_arn))
        return protection_shared.record_shared(ctx, outcome, change, ctx.step.command)

    def reconcile(self, ctx: StepContext, intent: Event) -> Outcome | None:
        outcome = super().reconcile(ctx, intent)
        return protection_steps.reconcile_record(ctx, intent, outcome, ctx.step.command)

    def outcome(self, ctx: StepContext, facts: KeyFacts) -> Outcome:
        evidence = facts.to_evidence()
        return Outcome(
            data_updates={
                "deletion_date": evidence.get("DeletionDate"),
                "key_retired": True,
            },
            evidence={"key": evidence, "window_days": ctx.params.get("window_days")},
            message=f"deletion of key {facts.arn} scheduled for {evidence.get('DeletionDate')}",
            notes=[
                f"key {facts.arn} will be deleted on {evidence.get('DeletionDate')}; "
                f"to stop it: kmsguard recover cancel-deletion {ctx.env_name}"
            ],
        )


class EnableKey(KeyStateHandler):
    """Re-enable a key kmsguard disabled; the run waits for support again."""

    action = "kms:EnableKey"
    result_state = "Enabled"

    def execute(self, ctx: StepContext) -> Outcome:
        key_arn = ctx.target_key()
        ctx.kms.enable_key(key_arn)
        return self.outcome(ctx, ctx.kms.describe(key_arn))

    def outcome(self, ctx: StepContext, facts: KeyFacts) -> Outcome:
        return Outcome(
            updates={"contacted_at": utc_now()},
            data_updates={"key_retired": False, "reenabled_at": utc_now()},
            evidence={"key": facts.to_evidence()},
            message=f"key {facts.arn} enabled again; a new support confirmation is needed",
        )


class CancelKeyDeletion(KeyStateHandler):
    """Cancel a scheduled deletion; the key stays Disabled unless --enable."""

    action = "kms:CancelKeyDeletion"
    result_state = "Disabled"

    def intent(self, ctx: StepContext) -> dict[str, Any] | None:
        data = super().intent(ctx) or {}
        data["enable"] = bool(ctx.params.get("enable"))
        return data

    def execute(self, ctx: StepContext) -> Outcome:
        key_arn = ctx.target_key()
        ctx.kms.cancel_key_deletion(key_arn)
        if ctx.params.get("enable"):
            ctx.kms.enable_key(key_arn)
        facts = ctx.kms.describe(key_arn)
        expected = "Enabled" if ctx.params.get("enable") else "Disabled"
        if facts.state != expected:
            raise OperationFailed(
                f"key {key_arn} reads {facts.state} after recovery, not {expected}"
            )
        return self.outcome(ctx, facts)

    def reconcile(self, ctx: StepContext, intent: Event) -> Outcome | None:
        facts = ctx.kms.describe(str(intent.evidence.get("key")))
        expected = "Enabled" if intent.evidence.get("enable") else "Disabled"
        return self.outcome(ctx, facts) if facts.state == expected else None

    def outcome(self, ctx: StepContext, facts: KeyFacts) -> Outcome:
        enabled = facts.state == "Enabled"
        notes = (
            []
            if enabled
            else [
                f"key {facts.arn} is now Disabled: services that use it still fail. "
                f"Run `kmsguard recover re-enable {ctx.env_name}` to enable it"
            ]
        )
        updates: dict[str, Any] = {"contacted_at": utc_now()} if enabled else {}
        return Outcome(
            updates=updates,
            data_updates={"deletion_date": None, "key_retired": not enabled},
            evidence={"key": facts.to_evidence()},
            message=f"deletion of key {facts.arn} cancelled; key is {facts.state}",
            notes=notes,
        )
