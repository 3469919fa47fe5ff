"""Intents: a step's AWS write survives a crash between the call and its record.

A step that writes to AWS first commits an "intent" event in a compare-and-set
that bumps the run's version, so a racing process loses before it calls AWS.
An "applied" or "failed" event resolves the intent after the call. A process
that dies in between leaves the run's pending_intent_id set, and the next step
command on the environment has the handler reconcile it from AWS before
anything else, so the write is never repeated blindly.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from kmsguard.workflow.errors import Conflict
from kmsguard.workflow.records import Event, Run, parse_time

log = logging.getLogger(__name__)

# An intent whose process is gone, or older than this, is reconciled from AWS.
# It exceeds the worst case of the AWS calls of one step with standard retries.
INTENT_LEASE = timedelta(minutes=10)

# Test hook: the kill tests set this variable to one of KILL_POINTS.
KILL_AT_VARIABLE = "KMSGUARD_TEST_KILL_AT"
KILL_POINTS = ("before_aws", "after_aws", "before_commit")


def kill_point(name: str) -> None:
    """Test hook: end this process with SIGKILL at `name` when asked to.

    KMSGUARD_TEST_KILL_AT names the point: before_aws (intent committed, AWS
    not called yet), after_aws (AWS called, nothing recorded) or before_commit
    (outcome written inside a transaction that never commits). The kill tests
    set it to prove that the next command reconciles; normal use never does.
    """
    if os.environ.get(KILL_AT_VARIABLE) == name:
        log.warning("%s=%s: killing process %d", KILL_AT_VARIABLE, name, os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)


def claim_evidence(intent: dict[str, Any]) -> dict[str, Any]:
    """Return the intent's evidence with the process that makes the AWS call."""
    evidence = dict(intent)
    evidence.update({"pid": os.getpid(), "host": socket.gethostname()})
    return evidence


def running_owner(intent: Event, now: datetime | None = None) -> str:
    """Return the process that may still be making an intent's AWS call, or "".

    An intent is abandoned when its process has ended or its lease has run
    out. Processes of another host cannot be checked, so their intents wait
    out the lease.
    """
    age = (now or datetime.now(UTC)) - parse_time(intent.created_at)
    if age >= INTENT_LEASE:
        return ""
    host, pid = intent.evidence.get("host"), intent.evidence.get("pid")
    if host != socket.gethostname():
        return f"process {pid} on host {host}"
    if isinstance(pid, int) and process_alive(pid):
        return f"process {pid}"
    return ""


def busy_conflict(run: Run, intent: Event, owner: str) -> Conflict:
    return Conflict(
        f"another operator's {intent.step} on run {run.id} of {run.environment!r} "
        f"is in progress ({owner}, since {intent.created_at}); wait for it, then "
        f"run `kmsguard status {run.environment}`. If that process has died, the "
        "next step command reconciles its step from AWS, at the latest "
        f"{int(INTENT_LEASE.total_seconds() // 60)} minutes after it started"
    )


def process_alive(pid: int) -> bool:
    """Return whether a process of this host exists (this process counts).

    NOTE: a pid the system has reused for another process counts as alive,
    so such an intent waits out the lease.
    """
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
