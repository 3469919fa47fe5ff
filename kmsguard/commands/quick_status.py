"""Print a plain `kmsguard status` without importing click.

Deployment pipelines run status as a pre-check, where start-up is most of its
run time, and importing click alone takes longer than every status query. So
the `kmsguard` command first tries this path. It takes only the common form:
global `--db` and `--output` options (or their variables), then `status` and
an optional ENV, on an existing, migrated database, with colour off. For
anything else `try_status` returns None and the full command line runs; that
includes every error, so this path never prints one. It opens the database
read-only, so it changes no row and never checkpoints the write-ahead log.

The rows and the text come from the same functions the full command uses
(workflow.status_view and commands.text), so both print the same bytes.
"""

from __future__ import annotations

import os
import sqlite3
import sys

from kmsguard.commands.text import table_lines, to_json, use_color
from kmsguard.workflow.schema_names import MIGRATION_NAMES, MIGRATION_SET
from kmsguard.workflow.status_view import status_rows

# mypy reads the block below by this name; at run time typing is not imported.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    Paint = Callable[[str], str]

STATUS_COLUMNS = [
    ("environment", "ENV"),
    ("procedure", "PROCEDURE"),
    ("state", "STATE"),
    ("state_age", "AGE"),
    ("next", "NEXT"),
]
NO_ENVIRONMENTS = "no environments; add one with `kmsguard env add`"
OUTPUTS = ("text", "json")
# A reader of a WAL database waits only in rare cases (a writer in exclusive
# locking mode, a recovery). This path then hands over soon, and the full
# command line waits its usual time and reports a lock that stays.
QUICK_BUSY_TIMEOUT_SECONDS = 0.2
# Variables the full command line reads before status runs: it checks their
# values, logs or waits by them, so with any of them set it runs instead.
FULL_PATH_VARIABLES = (
    "KMSGUARD_VERBOSE",
    "KMSGUARD_ENDPOINT_URL",
    "AWS_ENDPOINT_URL",
    "KMSGUARD_BUSY_TIMEOUT",
)


def try_status(argv: list[str], environ: Mapping[str, str]) -> int | None:
    """Print the status for `argv` and return 0, or return None to run the full CLI."""
    request = parse(argv, environ)
    if request is None:
        return None
    db_path, output, environment = request
    if output == "text" and use_color():
        return None
    try:
        rows = read_status(db_path, environment)
    except (OSError, sqlite3.Error, ValueError, KeyError):
        return None
    if rows is None:
        return None
    if output == "json":
        text = to_json({"environments": rows}) + "\n"
    else:
        text = "".join(line + "\n" for line in status_lines(rows))
    if not printable(text):
        return None
    return write(text)


def printable(text: str) -> bool:
    """Return whether stdout can take `text` as the full command line prints it.

    click strips escape sequences from output that is not a terminal and
    replaces what the stream's encoding lacks, so text with either goes to it.
    """
    if "\x1b" in text:
        return False
    try:
        text.encode(sys.stdout.encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def write(text: str) -> int:
    """Write `text` to stdout; return 0, or 1 when the reader has gone."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # As a closed pipe ends the full command line: status 1, no traceback.
        # Python flushes stdout again at exit, so point it at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0


def parse(
    argv: list[str], environ: Mapping[str, str]
) -> tuple[str, str, str | None] | None:
    """Return (database, output, environment) for the forms this path takes."""
    if any(environ.get(name) for name in FULL_PATH_VARIABLES):
        return None
    options = {
        "--db": environ.get("KMSGUARD_DB", ""),
        "--output": environ.get("KMSGUARD_OUTPUT") or "text",
    }
    rest = list(argv)
    while rest and rest[0].startswith("-"):
        name, equals, value = rest.pop(0).partition("=")
        if name not in options or (not equals and not rest):
            return None
        options[name] = value if equals else rest.pop(0)
        if not options[name]:
            # An empty --db is the current directory to click, not the default.
            return None
    if rest[:1] != ["status"] or len(rest) > 2:
        return None
    environment = rest[1] if len(rest) == 2 else None
    db_path, output = options["--db"] or default_database(), options["--output"]
    if db_path.startswith("-") or output not in OUTPUTS:
        return None
    if environment is not None and environment.startswith("-"):
        return None
    return db_path, output, environment


def default_database() -> str:
    """Return the database used without --db: kmsguard.db in the user data directory."""
    from platformdirs import user_data_dir

    return os.path.join(user_data_dir("kmsguard", appauthor=False), "kmsguard.db")


def read_status(db_path: str, environment: str | None) -> list[dict[str, Any]] | None:
    """Return the status rows, or None where the full command line must run."""
    if not os.path.isfile(db_path) or os.stat(db_path).st_mode & 0o077:
        # A missing file is created, and a file others can read is warned
        # about, by the full command line.
        return None
    conn = sqlite3.connect(
        read_only_uri(db_path),
        uri=True,
        timeout=QUICK_BUSY_TIMEOUT_SECONDS,
        isolation_level=None,
    )
    try:
        if not _ready(conn):
            return None
        rows = status_rows(conn, environment)
    finally:
        conn.close()
    if environment is not None and not rows:
        return None
    return rows


def read_only_uri(db_path: str) -> str:
    """Return a SQLite URI that opens `db_path` read-only.

    SQLite decodes %XX in a URI's path, and ? and # would end it, so those
    three characters are escaped.
    """
    path = os.path.abspath(db_path)
    for char, escaped in (("%", "%25"), ("?", "%3F"), ("#", "%23")):
        path = path.replace(char, escaped)
    return f"file:{path}?mode=ro"


def _ready(conn: sqlite3.Connection) -> bool:
    """Return whether the database is in WAL mode with every migration applied."""
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    applied = conn.execute(
        "SELECT name FROM _sqlite_migrations WHERE migration_set = ?",
        [MIGRATION_SET],
    ).fetchall()
    names = {str(name) for (name,) in applied}
    return str(mode).lower() == "wal" and set(MIGRATION_NAMES) <= names


def status_lines(
    rows: list[dict[str, Any]],
    header: Paint = str,
    warning: Paint = str,
) -> list[str]:
    """Render status rows as text; `header` and `warning` add colour, if any."""
    if not rows:
        return [NO_ENVIRONMENTS]
    lines = table_lines(rows, STATUS_COLUMNS)
    lines[0] = header(lines[0])
    for row in rows:
        intent = row.get("unresolved_intent")
        if intent:
            lines.append(
                warning(
                    f"unresolved: {row['environment']}: {intent['step']} "
                    f"({intent.get('action')}) since {intent.get('since')} by "
                    f"{intent.get('operator')}; the next step command reconciles it "
                    "from AWS"
                )
            )
    return lines
