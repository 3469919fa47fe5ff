"""Text output: aligned tables, colour only on a terminal, progress, KMSGUARD_* variables.

The colour tests run the installed command with stdout or stderr on a
pseudo-terminal, because colour depends on the stream really being one.
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import threading
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import PIPELINE_ACCOUNT, REGION, Cli, kmsguard_executable

from kmsguard.cli import main
from kmsguard.commands.common import fields, table
from kmsguard.commands.progress import (
    StderrProgress,
    busy,
    progress_display,
)

ESCAPE = "\x1b["
ADD_PROD = ("env", "add", "prod", "--region", REGION, "--pipeline-account")


class TerminalBuffer(io.StringIO):
    """A text buffer whose isatty() returns True, as a terminal's does."""

    def isatty(self) -> bool:
        return True


def run_on_terminal(
    db_path: Path, *args: str, stream: str = "stderr", **env: str
) -> str:
    """Run kmsguard with `stream` on a pseudo-terminal; return what it wrote there."""
    leader, follower = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    environment.update(KMSGUARD_DB=str(db_path), TERM="xterm", **env)
    subprocess.run(
        [kmsguard_executable(), *args],
        stdin=subprocess.DEVNULL,
        stdout=follower if stream == "stdout" else subprocess.PIPE,
        stderr=follower if stream == "stderr" else subprocess.PIPE,
        env=environment,
        timeout=60,
    )
    os.close(follower)
    return read_all(leader)


def read_all(descriptor: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(descriptor, 4096)
        except OSError:  # EIO: the other end is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(descriptor)
    return b"".join(chunks).decode()


@pytest.fixture
def one_env_db(tmp_path: Path) -> Path:
    db_path = tmp_path / "kmsguard.db"
    CliRunner().invoke(main, ["--db", str(db_path), *ADD_PROD, PIPELINE_ACCOUNT])
    return db_path


# Colour


def test_error_coloured_on_terminal(one_env_db: Path) -> None:
    text = run_on_terminal(one_env_db, "history", "nowhere")

    assert "unknown environment 'nowhere'" in text
    assert ESCAPE in text


def test_error_plain_with_no_color(one_env_db: Path) -> None:
    text = run_on_terminal(one_env_db, "history", "nowhere", NO_COLOR="1")

    assert "unknown environment 'nowhere'" in text
    assert ESCAPE not in text


def test_error_plain_when_stderr_piped(one_env_db: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}

    result = subprocess.run(
        [kmsguard_executable(), "--db", str(one_env_db), "history", "nowhere"],
        capture_output=True,
        text=True,
        env=environment,
    )

    assert "unknown environment" in result.stderr
    assert ESCAPE not in result.stderr


def test_table_header_bold_on_terminal(one_env_db: Path) -> None:
    text = run_on_terminal(one_env_db, "env", "list", stream="stdout")

    assert ESCAPE in text


def test_table_plain_on_terminal_with_no_color(one_env_db: Path) -> None:
    text = run_on_terminal(one_env_db, "env", "list", stream="stdout", NO_COLOR="1")

    assert "PIPELINE ACCOUNT" in text
    assert ESCAPE not in text


# Tables and next commands


def test_table_columns_aligned() -> None:
    rows = [{"a": "x", "b": "long value"}, {"a": "much longer", "b": "y"}]

    lines = table(rows, [("a", "A"), ("b", "B")])

    starts = {
        line.index(cell) for line, cell in zip(lines, ["B", "long", "y"], strict=True)
    }
    assert len(starts) == 1


def test_table_cell_keeps_first_line_only() -> None:
    lines = table([{"m": "first\nsecond"}], [("m", "MESSAGE")])

    assert lines[1] == "first"


def test_fields_aligned() -> None:
    lines = fields({"name": "prod", "pipeline_account": "210987654321"})

    assert lines[0].index("prod") == lines[1].index("210987654321")


def test_status_text_names_next_command(one_env_db: Path) -> None:
    result = CliRunner().invoke(main, ["--db", str(one_env_db), "status"])

    assert "kmsguard onboarding start prod" in result.stdout


def test_env_list_text_ends_with_next_command(one_env_db: Path) -> None:
    result = CliRunner().invoke(main, ["--db", str(one_env_db), "env", "list"])

    assert result.stdout.splitlines()[-1] == "next: kmsguard status"


# Progress


def test_progress_drawn_on_terminal_after_delay() -> None:
    stream = TerminalBuffer()
    progress = StderrProgress(stream, delay=0)

    progress("s3_objects", 2, 5)

    assert "reading s3_objects: 2 of 5" in stream.getvalue()


def test_progress_silent_before_delay() -> None:
    stream = TerminalBuffer()
    progress = StderrProgress(stream, delay=3600)

    progress("s3_objects", 2, 5)

    assert stream.getvalue() == ""


def test_progress_cleared_after_use() -> None:
    stream = TerminalBuffer()
    progress = StderrProgress(stream, delay=0)
    progress("grants", 1, None)

    progress.clear()

    assert stream.getvalue().endswith("\r\x1b[K")


def test_progress_display_none_off_terminal() -> None:
    assert progress_display(io.StringIO()) is None


def test_busy_draws_elapsed_on_terminal() -> None:
    stream = TerminalBuffer()
    drawn = threading.Event()

    with busy("checking the audit chain", stream=stream, delay=0):
        # Wait (without timing anything) until the background line appears.
        for _ in range(1000):
            if "checking the audit chain" in stream.getvalue():
                drawn.set()
                break
            time.sleep(0.01)

    assert drawn.is_set()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_busy_silent_off_terminal() -> None:
    stream = io.StringIO()

    with busy("checking the audit chain", stream=stream, delay=0):
        time.sleep(0.05)

    assert stream.getvalue() == ""


@pytest.mark.e2e
def test_evidence_prints_no_progress_when_stderr_piped(cli: Cli) -> None:
    cli.run(*ADD_PROD, PIPELINE_ACCOUNT, check=0)
    key = cli.kms().create_key(Description="k")["KeyMetadata"]["Arn"]

    result = cli.run("evidence", "prod", "--key", key)

    assert result.returncode in (0, 3)
    assert "\r" not in result.stderr
    assert "reading" not in result.stderr


# Configuration


def global_options() -> list[click.Option]:
    return [
        param
        for param in main.params
        if isinstance(param, click.Option) and param.name not in ("help", "version")
    ]


def variables(option: click.Option) -> list[str]:
    if option.envvar is None:
        return []
    return [option.envvar] if isinstance(option.envvar, str) else list(option.envvar)


@pytest.mark.parametrize("option", global_options(), ids=lambda option: option.name)
def test_global_option_has_kmsguard_variable(option: click.Option) -> None:
    names = variables(option)

    assert names
    assert names[0].startswith("KMSGUARD_")
    assert option.show_envvar


def test_help_shows_every_kmsguard_variable() -> None:
    text = CliRunner().invoke(main, ["--help"]).stdout

    for option in global_options():
        assert variables(option)[0] in text


def test_kmsguard_output_variable_selects_json(one_env_db: Path) -> None:
    result = CliRunner().invoke(
        main, ["--db", str(one_env_db), "env", "list"], env={"KMSGUARD_OUTPUT": "json"}
    )

    assert result.stdout.startswith("{")


def test_kmsguard_verbose_variable_logs_steps(tmp_path: Path) -> None:
    environment = dict(os.environ, KMSGUARD_DB=str(tmp_path / "k.db"))
    environment["KMSGUARD_VERBOSE"] = "1"

    result = subprocess.run(
        [kmsguard_executable(), *ADD_PROD, PIPELINE_ACCOUNT],
        capture_output=True,
        text=True,
        env=environment,
    )

    assert "INFO kmsguard.workflow.app: added environment prod" in result.stderr
