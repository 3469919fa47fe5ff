"""The store's SQLite connection: opening, configuring, locks and transactions.

The connection waits KMSGUARD_BUSY_TIMEOUT seconds (default 10) for another
process's lock, and a lock held longer ends in LockTimeout. `immediate()` runs
a block of writes in one `BEGIN IMMEDIATE` transaction, and `snapshot()` runs
reads in one read transaction.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.errors import InvalidInput, LockTimeout
from kmsguard.workflow.schema_names import (
    BUSY_TIMEOUT_SECONDS,
    BUSY_TIMEOUT_VARIABLE,
    MIGRATION_NAMES,
    MIGRATION_SET,
)
from kmsguard.workflow.status_view import row_dicts

if TYPE_CHECKING:
    from sqlite_utils import Database

log = logging.getLogger(__name__)


def busy_timeout() -> float:
    """Return the lock wait in seconds: KMSGUARD_BUSY_TIMEOUT, else the default.

    Raises:
        InvalidInput: the variable is not a number of seconds from 0 to 3600.
    """
    text = os.environ.get(BUSY_TIMEOUT_VARIABLE, "").strip()
    if not text:
        return BUSY_TIMEOUT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise InvalidInput(
            f"invalid {BUSY_TIMEOUT_VARIABLE}={text!r}: give the seconds to wait "
            "for another kmsguard process, from 0 to 3600 (default 10)"
        )
    return seconds


def create_private_file(path: Path) -> None:
    """Create the database file with mode 0600 before SQLite opens it.

    SQLite gives the -wal and -shm files it creates the database file's mode.
    An existing file keeps its mode; a mode open to group or others is logged.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        descriptor = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(descriptor)
        return
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning(
            "database %s has mode %o, readable by other users; run `chmod 600 %s`",
            path,
            mode,
            path,
        )


class SqliteConnection:
    """One open, migrated SQLite file, with its transactions and row reads."""

    def __init__(self, path: str | Path, timeout: float | None = None) -> None:
        if str(path) == ":memory:":
            # SQLite would keep everything in memory and lose it on exit, while
            # each command reported success.
            raise InvalidInput(
                "database path ':memory:' is not a file: kmsguard keeps state and "
                "the audit log in a file; give its path with --db or KMSGUARD_DB"
            )
        self.path = Path(path)
        if self.path.is_dir():
            raise InvalidInput(
                f"database path {str(self.path)!r} is a directory: give a file "
                "path with --db or KMSGUARD_DB"
            )
        self._db: Database | None = None
        try:
            create_private_file(self.path)
            self.conn = sqlite3.connect(
                str(self.path),
                timeout=busy_timeout() if timeout is None else timeout,
                isolation_level=None,
            )
            self._configure()
        except (OSError, sqlite3.DatabaseError) as exc:
            # For example a parent path that is a file, or a file that is not SQLite.
            raise InvalidInput(
                f"cannot open database {str(self.path)!r}: {exc}; give the path "
                "of a kmsguard SQLite file in a writable directory with --db or "
                "KMSGUARD_DB"
            ) from exc

    @property
    def db(self) -> Database:
        """The sqlite-utils view of the connection, for writes and migrations.

        Reads use the sqlite3 connection directly, so that commands that only
        read (status, history) never import sqlite-utils, which costs more
        start-up time than all of their queries.
        """
        if self._db is None:
            from sqlite_utils import Database

            self._db = Database(self.conn)
        return self._db

    def _configure(self) -> None:
        with self._translate_lock_errors("opening the database"):
            self.conn.execute("PRAGMA foreign_keys=ON")
            mode = self.conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            if self._needs_migration():
                from kmsguard.workflow.schema import apply_migrations

                with self.immediate():
                    apply_migrations(self.db)

    def _needs_migration(self) -> bool:
        """Return whether a migration is not applied yet, read with one plain query."""
        try:
            rows = self.conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = ?",
                [MIGRATION_SET],
            ).fetchall()
        except sqlite3.OperationalError:
            # A new database: the migrations table does not exist yet.
            return True
        return not set(MIGRATION_NAMES) <= {str(name) for (name,) in rows}

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _translate_lock_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise LockTimeout(
                    f"{action} failed: the database {str(self.path)!r} stayed "
                    "locked by another kmsguard process; wait for it and run the "
                    "command again"
                ) from exc
            raise

    @contextmanager
    def immediate(self) -> Iterator[None]:
        """Run the block in one BEGIN IMMEDIATE transaction."""
        with self._translate_lock_errors("starting a write"):
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        with self._translate_lock_errors("committing"):
            self.conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Run the block's reads in one read transaction: one consistent view."""
        if self.conn.in_transaction:
            yield
            return
        with self._translate_lock_errors("reading"):
            self.conn.execute("BEGIN")
        try:
            yield
        finally:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        return row_dicts(self.conn.execute(sql, params or []))
