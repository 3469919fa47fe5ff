"""The schema's migration names and the lock wait, readable without sqlite-utils.

The store checks these against `_sqlite_migrations` with one plain query on
every open, and imports the migrations themselves (and sqlite-utils) only
when one is missing. Every migration added to workflow.schema is listed here
too; a test compares both lists.
"""

from __future__ import annotations

MIGRATION_SET = "kmsguard"
MIGRATION_NAMES = (
    "0001_initial",
    "0002_run_digest_and_chain_head",
)

# How long a write waits for another process's lock before LockTimeout.
BUSY_TIMEOUT_SECONDS = 10.0
BUSY_TIMEOUT_VARIABLE = "KMSGUARD_BUSY_TIMEOUT"
