"""The store's integrity reads: a run's head on load, the whole chain for audit.

These reads compare the stored rows with the audit log's hash chain:
`check_run_head` when a step loads a run, and `verify_chain` for `kmsguard
audit verify`.
"""

from __future__ import annotations

from typing import Any

from kmsguard.workflow.chain import (
    GENESIS_HASH,
    head_problem,
    link_problem,
    tail_problem,
)
from kmsguard.workflow.errors import IntegrityError
from kmsguard.workflow.records import Run
from kmsguard.workflow.store_reads import StoreReads


class StoreIntegrity(StoreReads):
    """The checks of stored runs and events against the hash chain."""

    def check_run_head(self, run: Run) -> None:
        """Check the run row against its newest event: hash, version, state, digest.

        Only the run's own head is read, so loading a run stays fast; `audit
        verify` walks the whole chain. Row and event are read in one snapshot,
        so a step another process commits meanwhile is not mistaken for an edit.

        Raises:
            IntegrityError: the run row or its newest event was changed outside
                kmsguard.
        """
        with self.snapshot():
            row = self._raw_run(run.id)
            problem = head_problem(row, self._newest_run_event(run.id))
        if problem:
            raise IntegrityError(
                f"run {run.id} of environment {run.environment!r} failed its "
                f"integrity check: {problem}. Writes to this run are stopped; "
                "run `kmsguard audit verify` to find the changed rows"
            )

    def verify_chain(self) -> dict[str, Any]:
        """Check every event's hash and link, the chain head and every run's head.

        Returns a report with `ok` and `events_checked`; when a check fails,
        also the first bad row (`bad_event` or `bad_run`) and the `problem`.
        """
        with self.snapshot():
            count, last, problem = self._walk_chain()
            if problem:
                return {"ok": False, "events_checked": count, **problem}
            for row in self._rows("SELECT * FROM runs ORDER BY id"):
                found = head_problem(row, self._newest_run_event(row["id"]))
                if found:
                    return {
                        "ok": False,
                        "events_checked": count,
                        "bad_run": row["id"],
                        "problem": f"run {row['id']} of environment "
                        f"{row['environment']!r}: {found}",
                    }
        return {"ok": True, "events_checked": count, "head": last}

    def _walk_chain(self) -> tuple[int, str, dict[str, Any]]:
        previous: dict[str, Any] | None = None
        count = 0
        for row in self._rows("SELECT * FROM events ORDER BY id"):
            problem = link_problem(row, previous)
            if problem:
                return count, "", {"bad_event": row["id"], "problem": problem}
            previous, count = row, count + 1
        heads = self._rows("SELECT event_id, hash FROM chain_head WHERE id = 1")
        head = heads[0] if heads else None
        problem = tail_problem(previous, head)
        if problem:
            bad = head["event_id"] if head else (previous or {}).get("id")
            return count, "", {"bad_event": bad, "problem": problem}
        return count, previous["hash"] if previous else GENESIS_HASH, {}

    def confirmation_events_without_rows(self) -> list[int]:
        """Return the ids of applied events whose confirmation row is missing."""
        rows = self.conn.execute(
            "SELECT e.id FROM events e WHERE e.outcome = 'applied' "
            "AND json_extract(e.evidence, '$.confirmation') IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM confirmations c WHERE c.event_id = e.id) "
            "ORDER BY e.id"
        ).fetchall()
        return [int(row[0]) for row in rows]
