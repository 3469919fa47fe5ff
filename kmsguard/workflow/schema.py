"""The SQLite schema of kmsguard, as migrations applied in order from the first."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("kmsguard")

# Raw DDL because sqlite-utils cannot declare CHECK constraints, partial
# indexes or triggers.
INITIAL_SCHEMA = """
CREATE TABLE environments (
    name TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    pipeline_account TEXT NOT NULL CHECK (length(pipeline_account) = 12),
    resources TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    environment TEXT NOT NULL REFERENCES environments(name),
    procedure TEXT NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    current_key_arn TEXT,
    new_key_arn TEXT,
    ticket_id TEXT,
    contacted_at TEXT,
    pending_intent_id INTEGER,
    head_hash TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    closed_at TEXT
);
-- At most one open run per environment, whatever its procedure.
CREATE UNIQUE INDEX runs_one_open_per_environment
    ON runs(environment) WHERE closed_at IS NULL;
CREATE INDEX runs_environment ON runs(environment, id);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    run_id INTEGER REFERENCES runs(id),
    environment TEXT NOT NULL,
    procedure TEXT,
    step TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (
        outcome IN ('applied', 'refused', 'failed', 'intent', 'recorded')
    ),
    from_state TEXT,
    to_state TEXT,
    run_version INTEGER,
    operator TEXT NOT NULL,
    caller_arn TEXT,
    message TEXT NOT NULL DEFAULT '',
    evidence TEXT NOT NULL DEFAULT '{}',
    resolves INTEGER,
    created_at TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE
);
CREATE INDEX events_run ON events(run_id, id);
CREATE INDEX events_environment ON events(environment, id);
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
CREATE TABLE confirmations (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    event_id INTEGER NOT NULL REFERENCES events(id),
    ticket_id TEXT NOT NULL CHECK (length(ticket_id) > 0),
    confirmed_by TEXT NOT NULL CHECK (length(confirmed_by) > 0),
    confirmed_at TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    recorded_by TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX confirmations_run ON confirmations(run_id, id);
CREATE TABLE policy_backups (
    id INTEGER PRIMARY KEY,
    run_id INTEGER REFERENCES runs(id),
    event_id INTEGER REFERENCES events(id),
    key_arn TEXT NOT NULL,
    policy TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX policy_backups_key ON policy_backups(key_arn, id);
"""


@migrations(name="0001_initial")
def initial(db: Any) -> None:
    for statement in split_statements(INITIAL_SCHEMA):
        db.execute(statement)


# The run digest ties each event to the run row it left behind, so a run row
# edited with sqlite3 (its keys, ticket or state) fails the check on load.
# chain_head keeps the newest event's id and hash, so deleting the newest
# events, which no later event links to, still fails `audit verify`.
RUN_DIGEST_AND_CHAIN_HEAD = """
ALTER TABLE events ADD COLUMN run_digest TEXT;
CREATE TABLE chain_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    event_id INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO chain_head (id, event_id, hash)
    SELECT 1, id, hash FROM events ORDER BY id DESC LIMIT 1;
CREATE TRIGGER events_chain_head AFTER INSERT ON events
BEGIN
    INSERT OR REPLACE INTO chain_head (id, event_id, hash)
        VALUES (1, NEW.id, NEW.hash);
END;
"""


@migrations(name="0002_run_digest_and_chain_head")
def run_digest_and_chain_head(db: Any) -> None:
    for statement in split_statements(RUN_DIGEST_AND_CHAIN_HEAD):
        db.execute(statement)


def split_statements(script: str) -> list[str]:
    """Split DDL on semicolons that end a statement, keeping trigger bodies whole."""
    statements, current = [], []
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        joined = "\n".join(current).strip()
        if joined.endswith(";") and (
            not joined.upper().startswith("CREATE TRIGGER") or joined.endswith("END;")
        ):
            statements.append(joined)
            current = []
    return statements


def apply_migrations(db: Database) -> None:
    migrations.apply(db)
