"""Text lines of `status --live`: each open run's live keys and drift."""

from __future__ import annotations

from typing import Any


def live_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Return a line per key read, and per drift with the recovery command."""
    lines: list[str] = []
    for row in rows:
        live = row.get("live")
        if not live:
            continue
        env = row["environment"]
        if "error" in live:
            lines.append(f"{env}: could not read AWS: {live['error']}")
            continue
        for target, key in sorted(live["keys"].items()):
            state = key["state"] or "not found"
            lines.append(f"{env}: {target} key {key['arn']} reads {state}")
        for drift in live["drift"]:
            lines.append(f"drift: {env}: {drift['reason']}")
            lines.append(f"  recovery: {drift['recovery']}")
        if not live["drift"]:
            lines.append(f"{env}: no drift: the keys match the run")
        lines.extend(protection_lines(env, live.get("protection")))
    return lines


def live_exit_code(rows: list[dict[str, Any]]) -> int:
    """Return 3 on drift or a protection problem, 1 when AWS could not be read, else 0.

    A pipeline that runs `status --live` as a pre-check stops on either.
    """
    found = [row["live"] for row in rows if row.get("live")]
    if any(live.get("drift") or _protection_problem(live) for live in found):
        return 3
    if any("error" in live or _protection_unread(live) for live in found):
        return 1
    return 0


def _protection_unread(live: dict[str, Any]) -> bool:
    return bool((live.get("protection") or {}).get("error"))


def _protection_problem(live: dict[str, Any]) -> bool:
    """Return whether the protection check found a problem, not a read failure."""
    protection = live.get("protection") or {}
    return bool(protection.get("problems")) and not protection.get("error")


def protection_lines(env: str, status: dict[str, Any] | None) -> list[str]:
    """Return whether the protection statement is in place, and its problems."""
    if not status:
        return []
    if status.get("released") and not status.get("error"):
        text = _released_line(env, status)
    elif status.get("shared_with"):
        text = (
            f"{env}: no protection of this run on {status['key_arn']}; the "
            f"statement there is that of {' and '.join(status['shared_with'])}"
        )
    elif status.get("in_place"):
        actions = ", ".join(status.get("actions") or [])
        text = f"{env}: protection in place on {status['key_arn']}: denies {actions}"
    elif status.get("error"):
        text = f"{env}: protection not checked"
    else:
        text = f"{env}: no protection statement on {status['key_arn']}"
    return [text] + [f"protection: {env}: {p}" for p in status.get("problems", [])]


def _released_line(env: str, status: dict[str, Any]) -> str:
    """Return the line for a run that gave a shared statement up to other runs."""
    if status.get("in_place"):
        left = "stays for the other runs that protect the key"
    else:
        left = "is removed"
    return (
        f"{env}: protection released by run {status.get('run_id')} on "
        f"{status['key_arn']}; the statement {left}"
    )
