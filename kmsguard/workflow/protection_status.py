"""Whether a run's protection statement is in place, and whether its policy drifted.

The live key policy is compared with what the run records, and with the policy
kmsguard last wrote to the key, which the run's applied policies contain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kmsguard.workflow.aws import AwsSession, Kms
from kmsguard.workflow.drift import APPLIED_POLICIES
from kmsguard.workflow.errors import KmsguardError
from kmsguard.workflow.policy import (
    PROTECTION_SID,
    normal_statement,
    parse_policy_text,
    protection_actions,
    same_statements,
    statement_list,
)
from kmsguard.workflow.protection_kms import (
    read_policy,
)
from kmsguard.workflow.protection_policy import (
    WRITTEN_PREFIX,
    full_protection,
    protection_roles,
)
from kmsguard.workflow.protection_steps import protected_key, recorded
from kmsguard.workflow.records import Run

if TYPE_CHECKING:
    from kmsguard.workflow.app import App
    from kmsguard.workflow.store import SqliteStore


def protection_status(
    source: App | SqliteStore, aws: AwsSession, run: Run
) -> dict[str, Any]:
    """Read the run's key policy and report its protection and any drift.

    The result has these keys:
        run_id, key_arn: the run and the key its protection guards.
        recorded_in_place, recorded_actions: what the run records.
        released: True when the run gave the statement up with unprotect or
            a closing step while other runs kept it, so it no longer expects
            the statement in place or missing.
        shared_with: the other open runs (as "run N of environment X") whose
            statement is on the key while this run keeps none in place.
        in_place, actions, full, break_glass_roles: read from AWS now.
        last_written_at, last_written_event: kmsguard's latest write to the
            key in this run (the event is None when the run does not record it).
        changed_outside_kmsguard, protection_changed, other_statements_changed:
            True or False, or None when there is no write to compare with.
            protection_changed is None for a released run too.
        problems: sentences for the operator.
        error: why the policy could not be read, or None.
    """
    known = recorded(run)
    key_arn = protected_key(run)
    status: dict[str, Any] = {
        "run_id": run.id,
        "key_arn": key_arn,
        "recorded_in_place": bool(known.get("in_place")),
        "recorded_actions": list(known.get("actions") or ()),
        "released": bool(known.get("released")),
        "in_place": None,
        "actions": [],
        "full": False,
        "break_glass_roles": [],
        "last_written_at": None,
        "last_written_event": None,
        "changed_outside_kmsguard": None,
        "protection_changed": None,
        "other_statements_changed": None,
        "problems": [],
        "error": None,
    }
    if key_arn is None:
        return status
    try:
        _, live = read_policy(Kms(aws, key_arn.split(":")[3]), key_arn)
    except KmsguardError as exc:
        status["error"] = str(exc)
        status["problems"].append(f"the key policy could not be read: {exc}")
        return status

    _describe_live(status, live)
    store = _store(source)
    status["shared_with"] = _sharing_runs(store, run, key_arn, status)
    _compare_with_written(status, store, run, key_arn, live)
    status["problems"].extend(_problems(status, run))
    return status


def _sharing_runs(
    store: SqliteStore, run: Run, key_arn: str, status: dict[str, Any]
) -> list[str]:
    """Return the other open runs whose statement is on a key this run does not protect."""
    from kmsguard.workflow.protection_shared import other_protecting_runs

    if not status["in_place"] or (
        status["recorded_in_place"] and not status["released"]
    ):
        return []
    return [other.name for other in other_protecting_runs(store, key_arn, run.id)]


def _store(source: App | SqliteStore) -> SqliteStore:
    from kmsguard.workflow.app import App

    return source.store if isinstance(source, App) else source


def _describe_live(status: dict[str, Any], live: dict[str, Any]) -> None:
    actions = protection_actions(live)
    status.update(
        in_place=actions is not None,
        actions=list(actions or ()),
        full=full_protection(actions),
        break_glass_roles=protection_roles(live),
    )


def _compare_with_written(
    status: dict[str, Any],
    store: SqliteStore,
    run: Run,
    key_arn: str,
    live: dict[str, Any],
) -> None:
    written = last_written(store, run, key_arn)
    if written is None:
        return
    status.update(
        last_written_at=written["created_at"], last_written_event=written["event_id"]
    )
    document = parse_policy_text(str(written["policy"]))
    others_changed = not same_statements(_others(live), _others(document))
    # A statement the run released, or one that other runs put on the key
    # after this run removed its own, belongs to those runs, which may add,
    # narrow or remove it without this run's record changing.
    protection_changed = None
    if not status["released"] and not status["shared_with"]:
        protection_changed = _protection(live) != _protection(document)
    status.update(
        protection_changed=protection_changed,
        other_statements_changed=others_changed,
        changed_outside_kmsguard=bool(protection_changed) or others_changed,
    )


def last_written(store: SqliteStore, run: Run, key_arn: str) -> dict[str, Any] | None:
    """Return kmsguard's latest write of the key's policy, or None when unknown.

    The run's applied policies record every write; runs from before they did
    fall back to the policy_backups rows that the protection changes write.
    The result has the keys policy, created_at and event_id (None when the
    applied policies do not record it).
    """
    applied = dict(run.data.get(APPLIED_POLICIES) or {}).get(key_arn)
    if isinstance(applied, dict) and applied.get("policy"):
        return {
            "policy": applied["policy"],
            "created_at": applied.get("applied_at"),
            "event_id": None,
        }
    return _last_written_backup(store, run, key_arn)


def _last_written_backup(
    store: SqliteStore, run: Run, key_arn: str
) -> dict[str, Any] | None:
    # A later backup of the key by a step that records no written version
    # means the latest write is unknown.
    rows = [row for row in store.policy_backups(run.id) if row["key_arn"] == key_arn]
    written = [row for row in rows if str(row["reason"]).startswith(WRITTEN_PREFIX)]
    if not written:
        return None
    latest = written[-1]
    later = [row for row in rows if row["id"] > latest["id"]]
    if any(row["event_id"] != latest["event_id"] for row in later):
        return None
    return latest


def _protection(doc: dict[str, Any]) -> dict[str, Any] | None:
    for statement in statement_list(doc):
        if statement.get("Sid") == PROTECTION_SID:
            return normal_statement(statement)
    return None


def _others(doc: dict[str, Any]) -> dict[str, Any]:
    statements = [s for s in statement_list(doc) if s.get("Sid") != PROTECTION_SID]
    return {"Version": doc.get("Version"), "Statement": statements}


def _problems(status: dict[str, Any], run: Run) -> list[str]:
    env = run.environment
    problems = []
    missing_or_extra = _statement_problem(status, run)
    if missing_or_extra:
        problems.append(missing_or_extra)
    if status["changed_outside_kmsguard"]:
        parts = [
            name
            for name, changed in (
                ("the protection statement", status["protection_changed"]),
                ("other statements", status["other_statements_changed"]),
            )
            if changed
        ]
        problems.append(
            f"the key policy changed outside kmsguard since kmsguard wrote it at "
            f"{status['last_written_at']}: "
            f"{' and '.join(parts)} differ. Compare with `kmsguard history {env}`"
        )
    return problems


def _statement_problem(status: dict[str, Any], run: Run) -> str | None:
    """Return why the statement differs from the run's record, or None."""
    env = run.environment
    # A released run expects nothing, because the runs that kept the statement
    # decide whether it stays.
    if status["released"]:
        return None
    if status["recorded_in_place"] and not status["in_place"]:
        return (
            f"the protection statement that run {run.id} records is missing from the "
            f"key policy: it was removed outside kmsguard. Add it again with "
            f"`kmsguard protect {env} --break-glass-role ARN`"
        )
    if status["in_place"] and not status["recorded_in_place"]:
        if status["shared_with"]:
            return None
        return (
            f"the key policy has a {PROTECTION_SID} statement that run {run.id} does "
            f"not record; remove it with `kmsguard unprotect {env} --reason TEXT`, or "
            f"record it with `kmsguard protect {env} --break-glass-role ARN`"
        )
    return None
