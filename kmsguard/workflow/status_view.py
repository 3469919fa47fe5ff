"""The rows `kmsguard status` shows, read from the database with plain SQL.

Both ways of running status use this module: the full command line, and the
quick path that prints a plain `kmsguard status` before click is imported
(kmsguard.commands.quick_status). It therefore imports none of click,
dataclasses, typing or logging: each costs more start-up time than every
query status runs.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from kmsguard.workflow.next_steps import FORWARD, RECOVERY, RECOVERY_STEPS

# mypy reads the block below by this name; at run time typing is not imported.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Row = dict[str, Any]

# Characters a shell takes literally in a word, besides letters and digits.
SHELL_SAFE = "-_./:@%+=,"
RUN_COLUMNS = (
    "r.id, r.procedure, r.state, r.updated_at, r.current_key_arn, "
    "r.new_key_arn, r.ticket_id"
)


def format_age(since: str, now: datetime | None = None) -> str:
    """Return a short age such as 3d4h, 2h5m or 40s."""
    elapsed = (now or datetime.now(UTC)) - datetime.fromisoformat(since)
    days, rest = divmod(max(int(elapsed.total_seconds()), 0), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def next_command(
    procedure: str,
    state: str,
    environment: str,
    ticket_id: str | None = None,
    last_step: str | None = None,
) -> str:
    """Return the command that moves a run on from `state`, or "".

    After a recovery step that leaves the key disabled (cancel-deletion), the
    next command is the following recovery step (re-enable), as the step
    itself printed, not the procedure's next forward step.
    """
    if last_step in RECOVERY_STEPS.get(procedure, ()):
        recovery = RECOVERY.get(procedure, {}).get(state)
        if recovery:
            return _command(recovery, environment)
    forward = FORWARD.get(procedure, {}).get(state)
    if forward is None:
        return ""
    command = _command(forward, environment)
    if ticket_id:
        command = command.replace("--ticket ID", f"--ticket {shell_word(ticket_id)}")
    return command


def shell_word(text: str) -> str:
    """Return `text` quoted for a shell when it contains a space or a special.

    The commands kmsguard prints are meant to be pasted, and a ticket ID may
    contain a space.
    """
    if text and all(ch.isalnum() or ch in SHELL_SAFE for ch in text):
        return text
    import shlex

    return shlex.quote(text)


def _command(step: tuple[str, str], environment: str) -> str:
    label, usage = step
    text = f"kmsguard {label} {environment}"
    return f"{text} {usage}" if usage else text


def status_rows(
    conn: sqlite3.Connection,
    environment: str | None = None,
    now: datetime | None = None,
) -> list[Row]:
    """Return every environment (or one) with its open run and the next command.

    Every read runs in one read transaction, so a step that another process
    commits meanwhile shows whole or not at all.
    """
    started = not conn.in_transaction
    if started:
        conn.execute("BEGIN")
    try:
        return [_row(conn, found, now) for found in _environments(conn, environment)]
    finally:
        if started:
            conn.execute("COMMIT")


def _environments(conn: sqlite3.Connection, environment: str | None) -> list[Row]:
    sql = (
        f"SELECT e.name, e.region, {RUN_COLUMNS} FROM environments e "
        "LEFT JOIN runs r ON r.environment = e.name AND r.closed_at IS NULL"
    )
    params: list[str] = []
    if environment is not None:
        sql += " WHERE e.name = ?"
        params.append(environment)
    return row_dicts(conn.execute(sql + " ORDER BY e.name", params))


def _row(conn: sqlite3.Connection, found: Row, now: datetime | None) -> Row:
    name = found["name"]
    row: Row = {
        "environment": name,
        "region": found["region"],
        "procedure": None,
        "state": None,
        "run_id": None,
        "state_age": None,
        "next": None,
        "unresolved_intent": None,
    }
    if found["id"] is not None:
        last_step = _last_applied_step(conn, found["id"])
        row.update(
            procedure=found["procedure"],
            state=found["state"],
            run_id=found["id"],
            state_since=found["updated_at"],
            state_age=format_age(found["updated_at"], now),
            current_key_arn=found["current_key_arn"],
            new_key_arn=found["new_key_arn"],
            ticket_id=found["ticket_id"],
            next=next_command(
                found["procedure"], found["state"], name, found["ticket_id"], last_step
            ),
        )
    else:
        row["next"] = start_hint(conn, name)
    # A closed run can hold an unresolved intent too (a recovery step on a
    # completed run), so every run of the environment is looked at.
    row["unresolved_intent"] = _unresolved_intent(conn, name)
    return row


def start_hint(conn: sqlite3.Connection, environment: str) -> str:
    """Return the command that opens the next run of an environment with none open.

    The newest completed run shows which key the pipeline uses now. After an
    onboarding or a rotation, its new key is the key to rotate from. After a
    disablement, or before any run, the next key comes from an onboarding.
    """
    last = conn.execute(
        "SELECT procedure, new_key_arn FROM runs WHERE environment = ? "
        "AND state = 'completed' ORDER BY id DESC LIMIT 1",
        [environment],
    ).fetchone()
    if last is None or last[0] == "disablement":
        return f"kmsguard onboarding start {environment}"
    return f"kmsguard rotation start {environment} --current-key {last[1] or 'KEY'}"


def _last_applied_step(conn: sqlite3.Connection, run_id: int) -> str | None:
    found = conn.execute(
        "SELECT step FROM events WHERE run_id = ? AND outcome = 'applied' "
        "ORDER BY id DESC LIMIT 1",
        [run_id],
    ).fetchone()
    return str(found[0]) if found else None


def _unresolved_intent(conn: sqlite3.Connection, environment: str) -> Row | None:
    pending = conn.execute(
        "SELECT pending_intent_id FROM runs WHERE environment = ? "
        "AND pending_intent_id IS NOT NULL ORDER BY id LIMIT 1",
        [environment],
    ).fetchone()
    if pending is None:
        return None
    rows = row_dicts(
        conn.execute(
            "SELECT id, step, evidence, created_at, operator FROM events WHERE id = ?",
            [pending[0]],
        )
    )
    if not rows:
        return {"event_id": pending[0], "step": "unknown"}
    import json

    event = rows[0]
    return {
        "event_id": event["id"],
        "step": event["step"],
        "action": json.loads(event["evidence"]).get("action"),
        "since": event["created_at"],
        "operator": event["operator"],
    }


def row_dicts(cursor: sqlite3.Cursor) -> list[Row]:
    """Return a cursor's rows as dicts keyed by column name."""
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor]
