"""The guard registry: each guard by name, reading facts the handler prepared.

A guard returns a GuardResult: passed or not, the reason, and the command that
would satisfy it. Guards never write and never change a run.
"""

from __future__ import annotations

from kmsguard.workflow.aws import KeyFacts
from kmsguard.workflow.context import Guard, StepContext
from kmsguard.workflow.errors import GuardResult
from kmsguard.workflow.evidence_guards import EVIDENCE_GUARDS
from kmsguard.workflow.keys import KEY_CHECKS, KeyExpectations, run_key_check
from kmsguard.workflow.procedure_guards import PROCEDURE_GUARDS
from kmsguard.workflow.records import parse_time


def _key_guard(name: str) -> Guard:
    def guard(ctx: StepContext) -> GuardResult:
        facts = ctx.facts.get("key")
        if facts is None:
            # The key does not exist yet: kmsguard creates it with the
            # documented settings and checks it again after CreateKey.
            return GuardResult(
                name, True, "kmsguard creates the key with the documented settings"
            )
        assert isinstance(facts, KeyFacts)
        check = run_key_check(name, facts, key_expectations(ctx))
        next_command = ""
        if not check.passed:
            next_command = ctx.command(ctx.step.name)
        return GuardResult(
            name,
            check.passed,
            check.reason if check.passed else f"{check.reason}; {check.fix}",
            next_command,
        )

    guard.__name__ = name
    return guard


def key_expectations(ctx: StepContext) -> KeyExpectations:
    other = None
    if ctx.run is not None and ctx.step.target == "new":
        other = ctx.run.current_key_arn
    account = ctx.facts.get("caller_account")
    return KeyExpectations(
        region=ctx.environment.region,
        account=account if isinstance(account, str) else None,
        other_key_arn=other,
    )


def ticket_matches(ctx: StepContext) -> GuardResult:
    assert ctx.run is not None
    ticket = ctx.params.get("ticket")
    if ctx.run.ticket_id and ticket == ctx.run.ticket_id:
        return GuardResult(
            "ticket_matches", True, f"ticket {ticket} is the one contacted"
        )
    return GuardResult(
        "ticket_matches",
        False,
        f"ticket {ticket!r} is not the ticket support was contacted on "
        f"({ctx.run.ticket_id!r})",
        ctx.command("confirm", ID=ctx.run.ticket_id or "ID"),
    )


def confirmation_after_contact(ctx: StepContext) -> GuardResult:
    assert ctx.run is not None
    confirmed_at = ctx.params.get("confirmed_at")
    contacted_at = ctx.run.contacted_at
    if (
        not confirmed_at
        or not contacted_at
        or parse_time(confirmed_at) >= parse_time(contacted_at)
    ):
        return GuardResult(
            "confirmation_after_contact", True, "confirmation is after the contact"
        )
    return GuardResult(
        "confirmation_after_contact",
        False,
        f"support's confirmation time {confirmed_at} is before the latest contact "
        f"or recovery at {contacted_at}, so it cannot confirm the current request",
        "ask support to confirm again, then record it without --confirmed-at",
    )


def confirmation_recorded(ctx: StepContext) -> GuardResult:
    """Pass only with a confirmation of the contacted ticket, after the latest contact.

    This guard is never overridable: it is the procedure's own rule.
    """
    assert ctx.run is not None
    run = ctx.run
    confirm_step = _step_named(ctx, "confirm")
    next_command = ""
    if confirm_step:
        next_command = ctx.command("confirm", ID=run.ticket_id or "ID")
    if not run.ticket_id or not run.contacted_at:
        return GuardResult(
            "confirmation_recorded",
            False,
            "support has not been contacted",
            next_command,
        )
    contacted = parse_time(run.contacted_at)
    for confirmation in reversed(ctx.store.confirmations(run.id)):
        if confirmation.ticket_id != run.ticket_id:
            continue
        if parse_time(confirmation.recorded_at) > contacted:
            return GuardResult(
                "confirmation_recorded",
                True,
                f"{confirmation.confirmed_by} confirmed ticket {run.ticket_id} "
                f"at {confirmation.confirmed_at}",
            )
    return GuardResult(
        "confirmation_recorded",
        False,
        f"no support confirmation of ticket {run.ticket_id} is recorded after the "
        f"latest contact at {run.contacted_at}",
        next_command,
    )


def key_reads_disabled(ctx: StepContext) -> GuardResult:
    facts = ctx.facts.get("key")
    if isinstance(facts, KeyFacts) and facts.state == "Disabled":
        return GuardResult("key_reads_disabled", True, "key state is Disabled")
    state = facts.state if isinstance(facts, KeyFacts) else "unknown"
    return GuardResult(
        "key_reads_disabled",
        False,
        f"the key reads {state} in AWS, but this step needs it Disabled; "
        "someone changed it outside kmsguard",
        f"kmsguard status {ctx.env_name} --live",
    )


def policy_checks_pass(ctx: StepContext) -> GuardResult:
    findings = ctx.facts.get("policy_findings", [])
    errors = [f for f in findings if getattr(f, "severity", "") == "error"]
    if not errors:
        return GuardResult(
            "policy_checks_pass", True, "the policy to apply passes every check"
        )
    reasons = "; ".join(f"{f.statement}: {f.message}" for f in errors)
    return GuardResult(
        "policy_checks_pass",
        False,
        f"the policy to apply fails its checks: {reasons}",
        f"kmsguard check policy --key {ctx.facts.get('policy_key', 'KEY')} --env {ctx.env_name}",
        details={"findings": [f.to_dict() for f in errors]},
    )


def _step_named(ctx: StepContext, name: str) -> bool:
    return any(step.name == name for step in ctx.procedure.steps)


GUARDS: dict[str, Guard] = {name: _key_guard(name) for name in KEY_CHECKS}
GUARDS.update(
    {
        "ticket_matches": ticket_matches,
        "confirmation_after_contact": confirmation_after_contact,
        "confirmation_recorded": confirmation_recorded,
        "key_reads_disabled": key_reads_disabled,
        "policy_checks_pass": policy_checks_pass,
    }
)
GUARDS.update(PROCEDURE_GUARDS)
GUARDS.update(EVIDENCE_GUARDS)
