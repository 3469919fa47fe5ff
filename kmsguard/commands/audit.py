"""The `audit` group: check the hash chain, and export an environment's events."""

from __future__ import annotations

from pathlib import Path

import click

from kmsguard.commands.common import emit, get_state, handle_errors
from kmsguard.commands.progress import busy
from kmsguard.workflow.errors import ChecksFailed, InvalidInput

# The files SQLite keeps beside a database in WAL or rollback-journal mode.
SQLITE_SUFFIXES = ("-wal", "-shm", "-journal")


@click.group("audit")
def audit_group() -> None:
    """Check and export the audit log."""


@audit_group.command("verify")
def audit_verify() -> None:
    """Check the whole hash chain and every run; exit 3 on the first bad row."""
    state = get_state()
    with handle_errors():
        with busy("checking the audit chain"):
            report = state.app.verify()
        if not report["ok"]:
            raise ChecksFailed(
                f"audit log check failed: {report['problem']}. Restore the "
                "database from a backup, or keep it as evidence and start a new "
                "one with --db",
                report,
            )
    emit(
        report, [f"audit log verified: {report['events_checked']} events, chain intact"]
    )


@audit_group.command("export")
@click.argument("environment", metavar="ENV")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "markdown"]),
    default="markdown",
    show_default=True,
    help="JSON Lines or CSV (one event a line), or a Markdown report to read.",
)
@click.option(
    "--output-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Write the export to this file instead of standard output.",
)
def audit_export(environment: str, fmt: str, output_file: Path | None) -> None:
    """Export every audit event of an environment, with its chain hashes."""
    state = get_state()
    with handle_errors():
        if output_file is not None:
            reject_database_path(output_file, state.app.settings.db_path)
        export = state.app.export_audit(environment, fmt)
        if output_file is not None:
            write_export(output_file, export.text)
    check = export.verification
    if not check["ok"]:
        click.echo(
            f"warning: the audit chain failed its check: {check['problem']}; "
            "the export says so",
            err=True,
        )
    summary = {
        "environment": environment,
        "format": fmt,
        "events": export.events,
        "chain": check,
    }
    if output_file is not None:
        summary["output_file"] = str(output_file)
        emit(
            summary, [f"wrote {export.events} events of {environment} to {output_file}"]
        )
    elif state.json:
        emit({**summary, "report": export.text}, [])
    else:
        click.echo(export.text, nl=False)


def reject_database_path(path: Path, db_path: Path) -> None:
    """Reject an output file that is the database or one of SQLite's files beside it.

    Raises:
        InvalidInput: writing there would destroy the state and the audit log.
    """
    database = db_path.resolve()
    database_files = {
        database,
        *(Path(f"{database}{suffix}") for suffix in SQLITE_SUFFIXES),
    }
    target = path.resolve()
    same = target in database_files or (
        target.exists() and database.exists() and target.samefile(database)
    )
    if same:
        raise InvalidInput(
            f"--output-file {str(path)!r} is the kmsguard database or one of its "
            "SQLite files, and writing the export there would destroy the audit "
            "log; give another path"
        )


def write_export(path: Path, text: str) -> None:
    """Write the export, naming the path and the fix when it cannot be written."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(
            f"cannot write --output-file {str(path)!r}: {exc.strerror}; give a "
            "path in a directory you can write to"
        ) from exc
