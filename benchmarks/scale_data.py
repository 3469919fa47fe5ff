"""Build a large kmsguard database with SQL: 10,000 runs and 1,000,000 events.

The rows have the shape kmsguard writes, but the hashes are placeholders,
not a valid chain. `status` and `history` never walk the chain, so their
timings do not depend on it; `audit verify` on this file reports the first
bad link. The schema comes from kmsguard's own migrations.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from kmsguard.workflow.store import SqliteStore

# The environment with a handful of rows, for timing `history` beside 1M events.
SMALL_ENVIRONMENT = "qa-small"


@dataclass(frozen=True)
class Scale:
    environments: int = 50
    runs: int = 10_000
    events: int = 1_000_000


def build(path: Path, scale: Scale = Scale()) -> Path:
    """Create the database at `path` (which must not exist) and return it."""
    SqliteStore(path).close()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN")
        _environments(connection, scale)
        _runs(connection, scale)
        _events(connection, scale)
        _small_environment(connection)
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
    finally:
        connection.close()
    return path


def _environments(connection: sqlite3.Connection, scale: Scale) -> None:
    connection.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO environments (name, region, pipeline_account, resources, "
        "created_at, created_by) SELECT printf('env%03d', i), 'eu-west-1', "
        "'210987654321', '{}', '2026-01-01T00:00:00+00:00', 'bench' FROM n",
        [scale.environments],
    )


def _runs(connection: sqlite3.Connection, scale: Scale) -> None:
    # Runs are spread evenly over the environments; the newest run of each
    # environment is open, every older one completed.
    per_env = scale.runs // scale.environments
    connection.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO runs (id, environment, procedure, state, version, "
        "current_key_arn, new_key_arn, ticket_id, head_hash, data, created_at, "
        "updated_at, closed_at) SELECT i + 1, printf('env%03d', i % ? + 1), "
        "'rotation', CASE WHEN i / ? = ? - 1 THEN 'support_contacted' "
        "ELSE 'completed' END, 5, "
        "printf('arn:aws:kms:eu-west-1:123456789012:key/%08d', i), "
        "printf('arn:aws:kms:eu-west-1:123456789012:key/%08d', i + 1), "
        "printf('SUP-%d', i), printf('%064x', i), '{}', "
        "'2026-01-01T00:00:00+00:00', '2026-01-02T00:00:00+00:00', "
        "CASE WHEN i / ? = ? - 1 THEN NULL ELSE '2026-01-03T00:00:00+00:00' END "
        "FROM n",
        [
            scale.runs - 1,
            scale.environments,
            scale.environments,
            per_env,
            scale.environments,
            per_env,
        ],
    )


def _events(connection: sqlite3.Connection, scale: Scale) -> None:
    connection.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO events (id, run_id, environment, procedure, step, outcome, "
        "from_state, to_state, run_version, operator, message, evidence, "
        "created_at, prev_hash, hash) SELECT i, i % ? + 1, "
        "printf('env%03d', (i % ?) % ? + 1), 'rotation', 'contact_support', "
        "'applied', 'policy_applied', 'support_contacted', 4, 'bench', "
        "'ticket recorded', '{}', '2026-01-02T00:00:00+00:00', "
        "printf('%064x', i - 1), printf('%064x', i) FROM n",
        [scale.events, scale.runs, scale.runs, scale.environments],
    )


def _small_environment(connection: sqlite3.Connection) -> None:
    connection.execute(
        "INSERT INTO environments (name, region, pipeline_account, resources, "
        "created_at, created_by) VALUES (?, 'eu-west-1', '210987654321', '{}', "
        "'2026-01-01T00:00:00+00:00', 'bench')",
        [SMALL_ENVIRONMENT],
    )
    last = connection.execute("SELECT max(id) FROM events").fetchone()[0] or 0
    connection.executemany(
        "INSERT INTO events (id, environment, step, outcome, operator, message, "
        "evidence, created_at, prev_hash, hash) VALUES (?, ?, 'note', 'recorded', "
        "'bench', 'a note', '{}', '2026-01-02T00:00:00+00:00', ?, ?)",
        [
            (i, SMALL_ENVIRONMENT, f"{i - 1:064x}", f"{i:064x}")
            for i in range(last + 1, last + 21)
        ],
    )
