"""The requests kmsguard prints for the operator to send to vendor support.

Each kind of request is a list of labelled fields built from the run's recorded
facts. Only key ARNs are sent, never other forms of key identifier.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kmsguard.workflow.context import StepContext

Fields = dict[str, Any]

COMPONENT_TITLES = {
    "s3": "S3 buckets",
    "kinesis": "Kinesis streams",
    "sqs": "SQS queues (with surge protection)",
}


def support_request(ctx: StepContext) -> dict[str, Any]:
    """Build the request for the step's ticket from the run's recorded facts."""
    env = ctx.environment
    fields: Fields = {
        "ticket": ctx.params.get("ticket"),
        "environment": env.name,
        "region": env.region,
    }
    kind = ctx.step.request or ctx.procedure.name
    build, labels = REQUESTS.get(kind, (_no_fields, COMMON_LABELS))
    fields.update(build(ctx))
    lines = [f"Send this to vendor support on ticket {fields['ticket']}:", ""]
    lines += [f"  {label}: {fields[name]}" for name, label in labels]
    return {"kind": kind, "fields": fields, "lines": lines}


def _no_fields(ctx: StepContext) -> Fields:
    return {}


def _rotation_fields(ctx: StepContext) -> Fields:
    assert ctx.run is not None
    run = ctx.run
    return {
        "request": "Switch the pipeline to the new KMS key; keep the current key "
        "until you confirm the switch is complete and all data under it is processed",
        "new_key_arn": run.new_key_arn,
        "current_key_arn": run.current_key_arn,
    }


def _onboarding_fields(ctx: StepContext) -> Fields:
    assert ctx.run is not None
    components = list(ctx.params.get("components") or COMPONENT_TITLES)
    if len(components) == len(COMPONENT_TITLES):
        wanted = "all pipeline components: " + ", ".join(COMPONENT_TITLES.values())
    else:
        wanted = ", ".join(COMPONENT_TITLES[name] for name in components)
    account = ctx.environment.pipeline_account
    return {
        "request": "Encrypt the pipeline's data at rest with this customer managed "
        "KMS key, and confirm on this ticket when the configuration is applied",
        "key_arn": ctx.run.new_key_arn,
        "cross_account": f"configured: the key policy lets pipeline account "
        f"{account} use the key ({_policy_form(ctx)}) and create grants for AWS "
        "resources",
        "components": wanted,
    }


def _policy_form(ctx: StepContext) -> str:
    """Return how the applied key policy names the pipeline account."""
    assert ctx.run is not None
    forms = [
        str(event.evidence.get("form"))
        for event in ctx.store.run_events(ctx.run.id)
        if event.step == "apply_policy"
        and event.outcome == "applied"
        and event.evidence.get("form")
    ]
    form = forms[-1] if forms else "root"
    return "its documented roles" if form == "roles" else "its root principal"


def _disablement_fields(ctx: StepContext) -> Fields:
    assert ctx.run is not None
    return {
        "request": "Remove every reference to this KMS key from the pipeline "
        "configuration and redeploy, then confirm on this ticket that the pipeline "
        "no longer references the key. We will not disable the key before you "
        "confirm",
        "key_arn": ctx.run.current_key_arn,
    }


COMMON_LABELS = [("environment", "Environment"), ("region", "Region")]
REQUESTS: dict[str, tuple[Callable[[StepContext], Fields], list[tuple[str, str]]]] = {
    "rotation": (
        _rotation_fields,
        [
            ("request", "Request"),
            *COMMON_LABELS,
            ("new_key_arn", "New key ARN"),
            ("current_key_arn", "Current key ARN (being replaced)"),
        ],
    ),
    "onboarding": (
        _onboarding_fields,
        [
            ("request", "Request"),
            *COMMON_LABELS,
            ("key_arn", "Key ARN"),
            ("cross_account", "Cross-account access"),
            ("components", "Components to encrypt"),
        ],
    ),
    "disablement": (
        _disablement_fields,
        [
            ("request", "Request"),
            *COMMON_LABELS,
            ("key_arn", "Key ARN (to be removed, then disabled)"),
        ],
    ),
}
