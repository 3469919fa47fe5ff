"""The requests kmsguard prints for the operator to send to vendor support."""

from __future__ import annotations

from typing import Any

from kmsguard.workflow.context import StepContext


def support_request(ctx: StepContext) -> dict[str, Any]:
    """Build the request for the step's ticket from the run's recorded facts."""
    env = ctx.environment
    fields: dict[str, Any] = {
        "ticket": ctx.params.get("ticket"),
        "environment": env.name,
        "region": env.region,
    }
    kind = ctx.step.request or ctx.procedure.name
    fields.update(_request_fields(kind, ctx))
    lines = [f"Send this to vendor support on ticket {fields['ticket']}:", ""]
    lines += [f"  {label}: {fields[name]}" for name, label in _labels(kind)]
    return {"kind": kind, "fields": fields, "lines": lines}


def _request_fields(kind: str, ctx: StepContext) -> dict[str, Any]:
    assert ctx.run is not None
    run = ctx.run
    if kind == "rotation":
        return {
            "request": "Switch the pipeline to the new KMS key; keep the current key "
            "until you confirm the switch is complete and all data under it is processed",
            "new_key_arn": run.new_key_arn,
            "current_key_arn": run.current_key_arn,
        }
    return {}


def _labels(kind: str) -> list[tuple[str, str]]:
    common = [("environment", "Environment"), ("region", "Region")]
    if kind == "rotation":
        return [
            ("request", "Request"),
            *common,
            ("new_key_arn", "New key ARN"),
            ("current_key_arn", "Current key ARN (being replaced)"),
        ]
    return common
