"""The `--dry-run` view of apply-policy: the policy, its diff and its findings."""

from __future__ import annotations

from typing import Any

from kmsguard.commands.common import State, emit
from kmsguard.workflow.procedure import Procedure, Step


def preview(
    state: State,
    procedure: Procedure,
    step: Step,
    environment: str,
    params: dict[str, Any],
) -> None:
    from kmsguard.workflow import policy

    state.app.check_region(environment)
    ctx = state.app.engine.preview(procedure, step.name, environment, params)
    findings = [f.to_dict() for f in ctx.facts.get("policy_findings", [])]
    data = {
        "environment": environment,
        "procedure": procedure.name,
        "state": ctx.run.state if ctx.run else None,
        "dry_run": True,
        "key_arn": ctx.facts.get("policy_key"),
        "policy": ctx.facts.get("new_policy"),
        "diff": ctx.facts.get("policy_diff"),
        "findings": findings,
    }

    def lines() -> list[str]:
        text = [f"dry run: nothing was changed. Policy for {data['key_arn']}:"]
        text.append(policy.canonical_json(ctx.facts["new_policy"]))
        text.append("diff against the key's current policy:")
        text.append(str(data["diff"]) or "(no change)")
        for finding in findings:
            text.append(
                f"{finding['severity']}: {finding['statement']}: {finding['message']} (fix: {finding['fix']})"
            )
        return text

    emit(data, lines)
