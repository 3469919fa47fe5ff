"""Handlers of the onboarding, disablement and recovery steps.

They build on the shared handlers. Sharing the key records a ticket with the
components requested, and each recovery step is a key state change that also
records when it reopens a completed run.
"""

from __future__ import annotations

from typing import Any

from kmsguard.workflow.context import Outcome, StepContext
from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.handlers import BaseHandler, RecordTicket
from kmsguard.workflow.key_handlers import CancelKeyDeletion, EnableKey
from kmsguard.workflow.records import Event, utc_now

COMPONENTS = ("s3", "kinesis", "sqs")


class OpenRun(BaseHandler):
    """Open a run that records no key yet, because a later step brings the key."""

    def execute(self, ctx: StepContext) -> Outcome:
        return Outcome(message=f"{ctx.procedure.name} started for {ctx.env_name}")


def parse_components(value: Any) -> list[str]:
    """Parse `all` or a comma-separated subset of s3, kinesis and sqs.

    Raises:
        InvalidInput: an empty list, or a name that is not a component.
    """
    if isinstance(value, list | tuple):
        value = ",".join(str(item) for item in value)
    text = str(value if value is not None else "all").strip().lower()
    if text == "all":
        return list(COMPONENTS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in COMPONENTS]
    if unknown or not names:
        raise InvalidInput(
            f"invalid --components {value!r}: give all, or a comma-separated list "
            "of s3, kinesis and sqs, for example --components s3,kinesis"
        )
    return [name for name in COMPONENTS if name in names]


class ShareKey(RecordTicket):
    """Record the ticket the key was shared on and print what support needs."""

    def validate(self, ctx: StepContext) -> None:
        super().validate(ctx)
        ctx.params["components"] = parse_components(ctx.params.get("components"))

    def execute(self, ctx: StepContext) -> Outcome:
        outcome = super().execute(ctx)
        outcome.data_updates["components"] = list(ctx.params["components"])
        outcome.message = f"key shared with support on ticket {ctx.params['ticket']}"
        return outcome


class VerifyOnboarding(BaseHandler):
    """Check that the pipeline uses the key: CloudTrail and the resources' settings."""

    def prepare(self, ctx: StepContext) -> None:
        from kmsguard.workflow.environment_resources import resources_of
        from kmsguard.workflow.verify import verify_onboarding

        assert ctx.run is not None
        caller = ctx.identify_caller()
        verification = verify_onboarding(
            ctx.aws,
            environment=ctx.env_name,
            region=ctx.environment.region,
            key_arn=ctx.target_key(),
            pipeline_account=ctx.environment.pipeline_account,
            since=confirmation_time(ctx),
            resources=resources_of(ctx.environment),
            components=list(ctx.run.data.get("components") or COMPONENTS),
            own_caller_arns=(caller,),
        )
        ctx.facts["verification"] = verification
        ctx.facts["evidence"] = {"verification": verification.to_dict()}

    def execute(self, ctx: StepContext) -> Outcome:
        verification = ctx.facts["verification"]
        return Outcome(
            data_updates={"verified_at": verification.checked_at},
            evidence={"verification": verification.to_dict()},
            message=f"the pipeline account uses key {verification.key_arn}",
            notes=verification.lines(),
        )


def confirmation_time(ctx: StepContext) -> str:
    """Return when support confirmed the run's ticket, or the contact time if none."""
    assert ctx.run is not None
    run = ctx.run
    times = [
        confirmation.confirmed_at
        for confirmation in ctx.store.confirmations(run.id)
        if confirmation.ticket_id == run.ticket_id
    ]
    return times[-1] if times else str(run.contacted_at or run.created_at)


def note_reopened(ctx: StepContext, outcome: Outcome) -> Outcome:
    """Record in the outcome that the step reopens a completed run."""
    run = ctx.run
    if run is None or run.closed_at is None:
        return outcome
    outcome.evidence["reopened"] = {
        "run_id": run.id,
        "state": run.state,
        "closed_at": run.closed_at,
        "reopened_at": utc_now(),
    }
    outcome.message = f"run {run.id} reopened from {run.state}; {outcome.message}"
    return outcome


class RecoverEnableKey(EnableKey):
    """Enable a key kmsguard disabled, so the run waits for support again."""

    def execute(self, ctx: StepContext) -> Outcome:
        return note_reopened(ctx, super().execute(ctx))

    def reconcile(self, ctx: StepContext, intent: Event) -> Outcome | None:
        outcome = super().reconcile(ctx, intent)
        return note_reopened(ctx, outcome) if outcome else None


class RecoverCancelDeletion(CancelKeyDeletion):
    """Cancel a scheduled deletion, leaving the key Disabled and the run disabled."""

    enable = False

    def validate(self, ctx: StepContext) -> None:
        # The step decides whether the key is enabled too, because the two
        # outcomes lead to different states of the run.
        ctx.params["enable"] = self.enable

    def execute(self, ctx: StepContext) -> Outcome:
        return note_reopened(ctx, super().execute(ctx))

    def reconcile(self, ctx: StepContext, intent: Event) -> Outcome | None:
        outcome = super().reconcile(ctx, intent)
        return note_reopened(ctx, outcome) if outcome else None


class RecoverCancelDeletionAndEnable(RecoverCancelDeletion):
    """Cancel a scheduled deletion and enable the key, so the run waits for support."""

    enable = True


PROCEDURE_HANDLERS: dict[str, Any] = {
    "open_run": OpenRun(),
    "share_key": ShareKey(),
    "verify_onboarding": VerifyOnboarding(),
    "recover_enable_key": RecoverEnableKey(),
    "recover_cancel_deletion": RecoverCancelDeletion(),
    "recover_cancel_deletion_and_enable": RecoverCancelDeletionAndEnable(),
}
