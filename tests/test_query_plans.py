"""The reads of status and history use indexes: they never scan every run or event.

Each test records the SQL that a library call runs (sqlite3's trace callback
gives each statement with its values), then asks SQLite for its plan with
EXPLAIN QUERY PLAN. A full scan of `runs` or `events` grows with the whole
database; an index search grows only with the environment's own rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import PIPELINE_ACCOUNT, REGION

from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App, Settings

ONBOARDING = PROCEDURES["onboarding"]
LARGE_TABLES = ("runs", "events")


@pytest.fixture
def busy_app(tmp_path: Path) -> Iterator[App]:
    """Two environments with runs and events, made with steps that need no AWS."""
    app = App(Settings(db_path=tmp_path / "kmsguard.db", operator="alice"))
    for name in ("prod", "qa1"):
        app.add_environment(name, REGION, PIPELINE_ACCOUNT)
        for _ in range(3):
            app.start(ONBOARDING, name, {})
            app.step(ONBOARDING, "cancel", name, {"reason": "testing"})
        app.start(ONBOARDING, name, {})
    yield app
    app.close()


@contextmanager
def recorded(connection: sqlite3.Connection) -> Iterator[list[str]]:
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        connection.set_trace_callback(None)


def reads(app: App, call: Callable[[], Any]) -> list[str]:
    """Return the SELECT statements that `call` runs on the app's database."""
    with recorded(app.store.conn) as statements:
        call()
    return [s for s in statements if s.lstrip().upper().startswith("SELECT")]


def plan(connection: sqlite3.Connection, statement: str) -> list[str]:
    rows = connection.execute(f"EXPLAIN QUERY PLAN {statement}").fetchall()
    return [str(row[-1]) for row in rows]


def full_scans(connection: sqlite3.Connection, statements: list[str]) -> list[str]:
    """Return each plan step that reads a large table row by row."""
    found = []
    for statement in statements:
        for step in plan(connection, statement):
            if any(step.startswith(f"SCAN {table}") for table in LARGE_TABLES):
                found.append(f"{step}  <-  {statement}")
    return found


def test_history_reads_only_its_environment(busy_app: App) -> None:
    statements = reads(busy_app, lambda: busy_app.history("prod"))
    connection = busy_app.store.conn

    event_reads = [s for s in statements if "FROM events" in s]
    steps = [step for s in event_reads for step in plan(connection, s)]

    assert event_reads
    assert full_scans(connection, statements) == []
    assert any("USING INDEX events_environment (environment=?)" in s for s in steps)


def test_status_reads_no_table_whole(busy_app: App) -> None:
    statements = reads(busy_app, lambda: busy_app.status())

    assert statements
    assert full_scans(busy_app.store.conn, statements) == []


def test_status_of_one_environment_reads_no_table_whole(busy_app: App) -> None:
    statements = reads(busy_app, lambda: busy_app.status("qa1"))

    assert full_scans(busy_app.store.conn, statements) == []


def test_status_start_hint_reads_newest_completed_run_only(busy_app: App) -> None:
    """The hint for an environment without an open run reads one run, not all."""
    busy_app.step(ONBOARDING, "cancel", "qa1", {"reason": "testing"})

    statements = reads(busy_app, lambda: busy_app.status("qa1"))
    run_reads = [s for s in statements if "FROM runs" in s and "LIMIT 1" in s]

    assert any("state = 'completed'" in s for s in run_reads)
    assert full_scans(busy_app.store.conn, statements) == []


def test_full_scan_detected_by_plan_check(busy_app: App) -> None:
    """The check itself can fail: a query on an unindexed column is a scan."""
    statement = "SELECT * FROM events WHERE operator = 'alice'"

    assert full_scans(busy_app.store.conn, [statement]) != []
