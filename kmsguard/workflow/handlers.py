"""Step handlers: the work of each kind of step, shared by the procedures.

A handler validates input (no I/O), prepares facts for the guards, declares an
intent when it is about to write to AWS, executes, and reconciles an intent
that a crashed process left behind.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kmsguard.workflow import protection_shared, protection_steps
from kmsguard.workflow.context import Outcome, StepContext
from kmsguard.workflow.errors import InvalidInput
from kmsguard.workflow.identifiers import parse_key_reference
from kmsguard.workflow.records import Confirmation, Event, utc_now


class BaseHandler:
    """A handler that needs no input, reads nothing and writes nothing to AWS."""

    def validate(self, ctx: StepContext) -> None:
        return None

    def prepare(self, ctx: StepContext) -> None:
        return None

    def intent(self, ctx: StepContext) -> dict[str, Any] | None:
        return None

    def execute(self, ctx: StepContext) -> Outcome:
        return Outcome()

    def reconcile(self, ctx: StepContext, intent: Event) -> Outcome | None:
        return None


def require_text(ctx: StepContext, name: str, option: str, example: str) -> str:
    value = str(ctx.params.get(name) or "").strip()
    if not value:
        raise InvalidInput(f"missing {option}: it is empty; give {option} {example}")
    if len(value) > 2000:
        raise InvalidInput(
            f"{option} is {len(value)} characters long; keep it under 2000"
        )
    return value


class RecordKey(BaseHandler):
    """Record the key the run starts from: it must exist and be usable now."""

    def validate(self, ctx: StepContext) -> None:
        key = str(ctx.params.get("key") or "")
        parse_key_reference(key)
        protection_steps.validate_start(ctx)

    def prepare(self, ctx: StepContext) -> None:
        ctx.identify_caller()
        ctx.facts["key"] = ctx.kms.resolve(str(ctx.params["key"]))

    def execute(self, ctx: StepContext) -> Outcome:
        facts = ctx.facts["key"]
        outcome = Outcome(
            updates={"current_key_arn": facts.arn},
            evidence={"key": facts.to_evidence()},
            message=f"current key {facts.arn}",
        )
        # With --protect, the policy is checked here, before the run exists;
        # the statement is written once the run can record its intent.
        return protection_steps.plan_at_start(ctx, facts.arn, outcome)


class Complete(BaseHandler):
    """Close the run and remove its protection statement unless another run needs it."""

    def prepare(self, ctx: StepContext) -> None:
        protection_shared.prepare_closing(ctx)

    def intent(self, ctx: StepContext) -> dict[str, Any] | None:
        return protection_steps.removal_intent(ctx)

    def execute(self, ctx: StepContext) -> Outcome:
        change = protection_shared.apply_closing(ctx)
        outcome = Outcome(message="run completed")
        return protection_shared.record_shared(ctx, outcome, change, ctx.step.command)

    def reconcile(self, ctx: StepContext, intent: Event) -> Outcome | None:
        outcome = Outcome(message="run completed")
        return protection_steps.reconcile_removal(
            ctx, intent, outcome, ctx.step.command
        )


class Cancel(BaseHandler):
    """Close the run before retiring the key, handling the statement like Complete."""

    def validate(self, ctx: StepContext) -> None:
        require_text(ctx, "reason", "--reason", '"switching to another key"')

    def prepare(self, ctx: StepContext) -> None:
        protection_shared.prepare_closing(ctx)

    def intent(self, ctx: StepContext) -> dict[str, Any] | None:
        return protection_steps.removal_intent(ctx)

    def execute(self, ctx: StepContext) -> Outcome:
        change = protection_shared.apply_closing(ctx)
        outcome = self.outcome(ctx)
        return protection_shared.record_shared(ctx, outcome, change, ctx.step.command)

    def reconcile(self, ctx: StepContext, intent: Event) -> Outcome | None:
        return protection_steps.reconcile_removal(
            ctx, intent, self.outcome(ctx), ctx.step.command
        )

    @staticmethod
    def outcome(ctx: StepContext) -> Outcome:
        reason = str(ctx.params["reason"]).strip()
        return Outcome(evidence={"reason": reason}, message=f"cancelled: {reason}")


class RecordTicket(BaseHandler):
    """Record the support ticket and print the request to send."""

    def validate(self, ctx: StepContext) -> None:
        from kmsguard.workflow.identifiers import validate_ticket

        ctx.params["ticket"] = validate_ticket(str(ctx.params.get("ticket") or ""))

    def execute(self, ctx: StepContext) -> Outcome:
        from kmsguard.workflow.support import support_request

        assert ctx.run is not None
        ticket = str(ctx.params["ticket"])
        request = support_request(ctx)
        return Outcome(
            updates={"ticket_id": ticket, "contacted_at": utc_now()},
            evidence={"ticket": ticket, "request": request},
            message=f"support contacted on ticket {ticket}",
            notes=request["lines"],
        )


class RecordConfirmation(BaseHandler):
    """Record support's confirmation: ticket, who, when, their words, who recorded it."""

    def validate(self, ctx: StepContext) -> None:
        from kmsguard.workflow.identifiers import validate_ticket

        ctx.params["ticket"] = validate_ticket(str(ctx.params.get("ticket") or ""))
        require_text(
            ctx, "confirmed_by", "--confirmed-by", '"Jane Doe (vendor support)"'
        )
        ctx.params["confirmed_at"] = parse_confirmed_at(ctx.params.get("confirmed_at"))

    def execute(self, ctx: StepContext) -> Outcome:
        now = utc_now()
        confirmation = Confirmation(
            ticket_id=str(ctx.params["ticket"]),
            confirmed_by=str(ctx.params["confirmed_by"]).strip(),
            confirmed_at=str(ctx.params.get("confirmed_at") or now),
            message=str(ctx.params.get("message") or "").strip(),
            recorded_by=ctx.operator,
            recorded_at=now,
        )
        return Outcome(
            evidence={"confirmation": confirmation.to_dict()},
            message=f"{confirmation.confirmed_by} confirmed ticket {confirmation.ticket_id}",
            confirmation=confirmation,
        )


def parse_confirmed_at(value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        # Converting to UTC overflows at the ends of the calendar (year 1 or
        # 9999 with an offset), so the conversion is checked here too.
        moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(
            f"invalid --confirmed-at {text!r}: give an ISO 8601 time such as "
            "2026-12-04T15:30:00Z"
        ) from exc
    if moment.tzinfo is None:
        raise InvalidInput(
            f"--confirmed-at {text!r} has no time zone; add one, for example "
            f"{text}Z for UTC"
        )
    if moment > datetime.now(UTC):
        raise InvalidInput(
            f"--confirmed-at {text!r} is in the future; give the time support confirmed"
        )
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _import_handlers() -> dict[str, Any]:
    from kmsguard.workflow.key_handlers import (
        ApplyPolicy,
        CancelKeyDeletion,
        DisableKey,
        EnableKey,
        NewKey,
        ScheduleDeletion,
    )

    return {
        "record_key": RecordKey(),
        "new_key": NewKey(),
        "apply_policy": ApplyPolicy(),
        "record_ticket": RecordTicket(),
        "record_confirmation": RecordConfirmation(),
        "disable_key": DisableKey(),
        "schedule_deletion": ScheduleDeletion(),
        "enable_key": EnableKey(),
        "cancel_key_deletion": CancelKeyDeletion(),
        "complete": Complete(),
        "cancel": Cancel(),
    }


def _import_procedure_handlers() -> dict[str, Any]:
    from kmsguard.workflow.procedure_handlers import PROCEDURE_HANDLERS

    return PROCEDURE_HANDLERS


HANDLERS: dict[str, Any] = {**_import_handlers(), **_import_procedure_handlers()}
