"""The quick status path: the same output as the full command line, or a hand-over.

`kmsguard status` is printed before click is imported when its form is
plain (kmsguard.commands.quick_status). These tests compare its output with
the full command line's on databases with runs in many states, check every
form it must hand over to the full command line, and check that the
installed command takes it without loading click.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import PIPELINE_ACCOUNT, REGION, drive_rotation, kmsguard_executable
from procedure_drivers import drive_disablement, drive_onboarding

from kmsguard.cli import main
from kmsguard.commands import quick_status
from kmsguard.commands.quick_status import try_status
from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App, Settings
from kmsguard.workflow.recovery import recover
from kmsguard.workflow.status_view import next_command

# A fixed, old state time, so that both paths print the same AGE however long
# the test takes between them. Plain status checks no run's integrity.
OLD_TIME = "2026-01-02T03:04:05+00:00"


def backdate(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE runs SET updated_at = ?", [OLD_TIME])
    conn.close()


def full_output(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout


def quick_output(
    capsys: pytest.CaptureFixture[str], argv: list[str], **env: str
) -> tuple[int | None, str]:
    capsys.readouterr()
    code = try_status(argv, env)
    return code, capsys.readouterr().out


@pytest.fixture
def busy_db(app: App, kms: Any, db_path: Path) -> Iterator[Path]:
    """Environments with no run, and with onboarding, rotation, disablement and recovered runs."""
    for name in ("empty", "onb", "rot", "dis", "rec"):
        app.add_environment(name, REGION, PIPELINE_ACCOUNT)
    drive_onboarding(app, "policy_applied", env="onb")
    drive_rotation(app, kms, "support_contacted", env="rot")
    drive_disablement(app, kms, "removal_requested", env="dis")
    drive_rotation(app, kms, "old_key_deletion_scheduled", env="rec")
    recover(app, "cancel_deletion", "rec", {})
    backdate(db_path)
    yield db_path


@pytest.mark.parametrize("output", ["text", "json"])
@pytest.mark.parametrize("environment", [None, "rot", "rec", "empty"])
def test_quick_status_prints_what_full_cli_prints(
    busy_db: Path,
    capsys: pytest.CaptureFixture[str],
    output: str,
    environment: str | None,
) -> None:
    args = ["--db", str(busy_db), "--output", output, "status"]
    args += [environment] if environment else []

    quick = quick_output(capsys, args)
    full = full_output(*args)

    assert quick == full
    assert quick[1].strip()


def test_quick_status_lists_every_environment(
    busy_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = quick_output(capsys, ["--db", str(busy_db), "--output=json", "status"])
    names = [row["environment"] for row in json.loads(out)["environments"]]

    assert code == 0
    assert names == ["dis", "empty", "onb", "prod", "rec", "rot"]


def test_status_after_cancel_deletion_names_re_enable(busy_db: Path) -> None:
    code, out = full_output("--db", str(busy_db), "--output", "json", "status", "rec")
    [row] = json.loads(out)["environments"]

    assert code == 0
    assert row["state"] == "old_key_disabled"
    assert row["next"] == "kmsguard recover re-enable rec"


def test_quick_status_takes_variables(
    busy_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = quick_output(
        capsys, ["status", "rot"], KMSGUARD_DB=str(busy_db), KMSGUARD_OUTPUT="json"
    )

    assert code == 0
    assert json.loads(out)["environments"][0]["state"] == "support_contacted"


def test_quick_status_empty_database_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db_path = tmp_path / "new.db"
    new = App(Settings(db_path=db_path, operator="alice"))
    assert new.store.list_environments() == []
    new.close()
    args = ["--db", str(db_path), "status"]

    quick = quick_output(capsys, args)

    assert quick == full_output(*args)
    assert quick == (0, "no environments; add one with `kmsguard env add`\n")


HANDED_OVER = [
    (["--help"], {}),
    (["status", "--help"], {}),
    (["status", "--live"], {}),
    (["-v", "status"], {}),
    (["status", "rot", "extra"], {}),
    (["--profile", "ops", "status"], {}),
    (["--output", "yaml", "status"], {}),
    (["--output"], {}),
    (["status", "nosuchenv"], {}),
    (["history", "rot"], {}),
    (["status", "-x"], {}),
    (["status"], {"KMSGUARD_VERBOSE": "1"}),
    (["status"], {"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}),
    (["status"], {"KMSGUARD_ENDPOINT_URL": "http://127.0.0.1:1"}),
    (["status"], {"KMSGUARD_BUSY_TIMEOUT": "x"}),
    (["status"], {"KMSGUARD_OUTPUT": "yaml"}),
    (["--db=", "status"], {}),
    (["--db", "", "status"], {}),
]


@pytest.mark.parametrize(
    ("argv", "env"), HANDED_OVER, ids=[" ".join(a) + str(e) for a, e in HANDED_OVER]
)
def test_quick_status_hands_over(
    busy_db: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
) -> None:
    code, out = quick_output(capsys, argv, KMSGUARD_DB=str(busy_db), **env)

    assert code is None
    assert out == ""


def test_quick_status_reads_default_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --db both paths read the same file in the user data directory."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    default = Path(quick_status.default_database())
    new_app = App(Settings(db_path=default, operator="alice"))
    new_app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    new_app.start(PROCEDURES["onboarding"], "qa1", {})
    new_app.close()
    backdate(default)

    quick = quick_output(capsys, ["status", "qa1"])

    assert quick == full_output("status", "qa1")
    assert "kmsguard onboarding new-key qa1 --create" in quick[1]


def test_quick_status_without_default_database_hands_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full command line creates the missing file; the quick path writes nothing."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))

    assert quick_output(capsys, ["status"]) == (None, "")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("problem", ["missing", "directory", "not sqlite", "shared"])
def test_quick_status_hands_over_bad_database(
    busy_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], problem: str
) -> None:
    path = tmp_path / "other.db"
    if problem == "directory":
        path.mkdir()
    elif problem == "not sqlite":
        path.write_text("not a database")
        path.chmod(0o600)
    elif problem == "shared":
        path = busy_db
        path.chmod(0o644)

    code, out = quick_output(capsys, ["--db", str(path), "status"])

    assert code is None
    assert out == ""
    assert path.exists() == (problem != "missing")


def test_quick_status_hands_over_unmigrated_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE _sqlite_migrations (migration_set, name)")
    conn.close()
    path.chmod(0o600)

    assert quick_output(capsys, ["--db", str(path), "status"]) == (None, "")


def test_quick_status_hands_over_with_colour(
    busy_db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Colour is click's, so a terminal without NO_COLOR gets the full CLI."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(quick_status, "use_color", lambda: True)

    assert quick_output(capsys, ["--db", str(busy_db), "status"]) == (None, "")


@pytest.mark.parametrize("name", sorted(PROCEDURES))
def test_next_step_table_matches_procedures(name: str) -> None:
    procedure = PROCEDURES[name]
    for state in (*procedure.states, "completed", "cancelled"):
        for ticket in (None, "SUP-9", "SUP 9", "it's"):
            expected = procedure.next_command(state, "prod", ticket)

            assert next_command(name, state, "prod", ticket) == expected, state


PROBE = """
import sys
from kmsguard.launch import main
sys.argv = ["kmsguard", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    sys.stdout.flush()
    print("LOADED", [m for m in ("click", "typing", "logging") if m in sys.modules])
"""


def test_installed_status_loads_no_click(busy_db: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMSGUARD_")}
    env.pop("AWS_ENDPOINT_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "--db", str(busy_db), "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )

    assert result.stdout.splitlines()[-1] == "LOADED []"


def test_installed_command_prints_full_cli_status(busy_db: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMSGUARD_")}
    env.pop("AWS_ENDPOINT_URL", None)
    args = ["--db", str(busy_db), "status"]

    result = subprocess.run(
        [kmsguard_executable(), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )

    assert (result.returncode, result.stdout) == full_output(*args)


def test_quick_status_hands_over_escape_sequences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """click strips escape sequences from piped output; the quick path does not."""
    db_path = tmp_path / "escape.db"
    new_app = App(Settings(db_path=db_path, operator="alice"))
    new_app.add_environment("qa1", REGION, PIPELINE_ACCOUNT)
    new_app.start(PROCEDURES["onboarding"], "qa1", {})
    new_app.close()
    with sqlite3.connect(db_path) as conn:
        # Written with SQL: a value kmsguard itself no longer accepts.
        conn.execute("UPDATE runs SET state = 'started\x1b[2J'")
    conn.close()

    assert quick_output(capsys, ["--db", str(db_path), "status"]) == (None, "")


def test_quick_status_hands_over_unencodable_output(
    busy_db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quick_status, "status_lines", lambda rows: ["caf\u00e9"])
    ascii_stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(quick_status.sys, "stdout", ascii_stdout)

    assert quick_status.try_status(["--db", str(busy_db), "status"], {}) is None
    assert ascii_stdout.buffer.getvalue() == b""


def test_quick_status_closed_pipe_exits_one_quietly(busy_db: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMSGUARD_")}
    env.pop("AWS_ENDPOINT_URL", None)
    read_end, write_end = os.pipe()
    os.close(read_end)

    result = subprocess.run(
        [kmsguard_executable(), "--db", str(busy_db), "status"],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    os.close(write_end)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr


def test_quick_status_changes_no_byte(
    busy_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = busy_db.read_bytes()

    code, _ = quick_output(capsys, ["--db", str(busy_db), "status"])

    assert code == 0
    assert busy_db.read_bytes() == before


def test_next_command_quotes_ticket_with_space() -> None:
    command = next_command("rotation", "support_contacted", "prod", "SUP 9")

    assert command == (
        "kmsguard rotation confirm prod --ticket 'SUP 9' --confirmed-by NAME"
    )
