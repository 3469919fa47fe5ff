"""Read-only views of the store: status rows and the next command to run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.records import parse_time

if TYPE_CHECKING:
    from kmsguard.workflow.app import App


def format_age(since: str, now: datetime | None = None) -> str:
    """Return a short age such as 3d4h, 2h5m or 40s."""
    seconds = int(((now or datetime.now(UTC)) - parse_time(since)).total_seconds())
    days, rest = divmod(max(seconds, 0), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def status_rows(app: App, environment: str | None) -> list[dict[str, Any]]:
    if environment is not None:
        app.environment(environment)
    rows = []
    for env, run in app.store.status_rows(environment):
        row: dict[str, Any] = {
            "environment": env.name,
            "region": env.region,
            "procedure": None,
            "state": None,
            "run_id": None,
            "state_age": None,
            "next": None,
            "unresolved_intent": None,
        }
        if run is not None:
            row.update(
                procedure=run.procedure,
                state=run.state,
                run_id=run.id,
                state_since=run.updated_at,
                state_age=format_age(run.updated_at),
                current_key_arn=run.current_key_arn,
                new_key_arn=run.new_key_arn,
                ticket_id=run.ticket_id,
                next=app.next_command(run),
            )
        else:
            row["next"] = start_hint(app, env.name)
        # A closed run can hold an unresolved intent too (a recovery step on
        # a completed run), so every run of the environment is looked at.
        pending = app.store.pending_intent_runs(env.name)
        if pending:
            row["unresolved_intent"] = _intent(app, pending[0].pending_intent_id)
        rows.append(row)
    return rows


def start_hint(app: App, environment: str) -> str:
    """Return the command that opens the next run of an environment with none open.

    The newest completed run shows which key the pipeline uses now. After an
    onboarding or a rotation, its new key is the key to rotate from. After a
    disablement, or before any run, the next key comes from an onboarding.
    """
    last = app.store.latest_completed_run(environment)
    if last is None or last.procedure == "disablement":
        return f"kmsguard onboarding start {environment}"
    key = last.new_key_arn or "KEY"
    return f"kmsguard rotation start {environment} --current-key {key}"


def _intent(app: App, event_id: int | None) -> dict[str, Any] | None:
    if event_id is None:
        return None
    event = app.store.get_event(event_id)
    if event is None:
        return {"event_id": event_id, "step": "unknown"}
    return {
        "event_id": event.id,
        "step": event.step,
        "action": event.evidence.get("action"),
        "since": event.created_at,
        "operator": event.operator,
    }
