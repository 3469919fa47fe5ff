"""Start-up: commands without AWS import no AWS library, and the command table is true.

Each import check runs the command in a fresh interpreter and reads
sys.modules there, because this test process has long imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from conftest import PIPELINE_ACCOUNT, REGION

from kmsguard.cli import main
from kmsguard.commands.lazy import LAZY_COMMANDS, LazyCommand, LazyGroup
from kmsguard.workflow.schema import migrations
from kmsguard.workflow.schema_names import MIGRATION_NAMES, MIGRATION_SET

# Libraries that only the commands that reach AWS, or write, may load.
AWS_LIBRARIES = ("boto3", "botocore")
HEAVY_LIBRARIES = ("transitions", "sqlite_utils", "kmsguard.workflow.engine")

PROBE = """
import json, sys
from kmsguard.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
watched = {watched!r}
print(json.dumps({{"code": code, "loaded": [m for m in watched if m in sys.modules]}}))
"""


def run_probe(db_path: Path, *args: str) -> dict[str, Any]:
    """Run the CLI in a new interpreter; return its exit status and watched modules."""
    code = PROBE.format(watched=AWS_LIBRARIES + HEAVY_LIBRARIES)
    env = dict(os.environ, KMSGUARD_DB=str(db_path), NO_COLOR="1")
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    report: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return report


@pytest.fixture
def small_db(tmp_path: Path) -> Path:
    """A database with one environment, made through the command line."""
    db_path = tmp_path / "kmsguard.db"
    args = ["env", "add", "prod", "--region", REGION]
    run_probe(db_path, *args, "--pipeline-account", PIPELINE_ACCOUNT)
    return db_path


def test_status_imports_no_aws_library(small_db: Path) -> None:
    report = run_probe(small_db, "status")

    assert report["code"] == 0
    assert report["loaded"] == []


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("status", "prod"),
        ("history", "prod"),
        ("audit", "verify"),
        ("env", "list"),
        ("rotation", "--help"),
    ],
    ids=" ".join,
)
def test_command_without_aws_loads_no_heavy_library(
    small_db: Path, args: tuple[str, ...]
) -> None:
    report = run_probe(small_db, *args)

    assert report["code"] == 0
    assert report["loaded"] == []


@pytest.mark.parametrize("procedure", ["rotation", "onboarding", "disablement"])
def test_diagram_imports_no_aws_library(small_db: Path, procedure: str) -> None:
    report = run_probe(small_db, "diagram", procedure, "prod")

    assert report["code"] == 0
    assert not set(AWS_LIBRARIES) & set(report["loaded"])


def test_completion_lists_commands_without_importing_them(small_db: Path) -> None:
    env = dict(
        os.environ,
        _KMSGUARD_COMPLETE="bash_complete",
        COMP_WORDS="kmsguard ",
        COMP_CWORD="1",
    )
    code = (
        "import sys\nfrom kmsguard.cli import main\n"
        "try:\n    main(prog_name='kmsguard')\nexcept SystemExit:\n    pass\n"
        "print('LOADED', [m for m in ('boto3', 'kmsguard.commands.procedures') "
        "if m in sys.modules])\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )

    assert "plain,rotation" in result.stdout
    assert "plain,status" in result.stdout
    assert "LOADED []" in result.stdout


def test_lazy_table_loads_each_command() -> None:
    for entry in LAZY_COMMANDS:
        assert entry.load().name == entry.name


@pytest.mark.parametrize("entry", LAZY_COMMANDS, ids=lambda entry: entry.name)
@pytest.mark.parametrize("limit", [30, 45, 94, 1000])
def test_lazy_table_help_matches_command(entry: LazyCommand, limit: int) -> None:
    real = entry.load()

    listed = entry.stand_in().get_short_help_str(limit)

    assert listed == real.get_short_help_str(limit)


def test_lazy_table_names_unique() -> None:
    names = [entry.name for entry in LAZY_COMMANDS]

    assert len(names) == len(set(names))


def test_lazy_group_help_lists_every_command() -> None:
    ctx = click.Context(main)
    eager_names = set(main.commands) - {e.name for e in LAZY_COMMANDS}

    text = main.get_help(ctx)

    for name in eager_names | {entry.name for entry in LAZY_COMMANDS}:
        assert f"\n  {name} " in text, name


def test_lazy_group_help_same_as_loaded_group() -> None:
    """--help from the table reads exactly as --help with every command imported."""
    lazy_help = main.get_help(click.Context(main))
    loaded = LazyGroup(name="kmsguard", lazy=(), params=main.params, help=main.help)
    for name, command in main.commands.items():
        loaded.add_command(command, name)
    for entry in LAZY_COMMANDS:
        loaded.add_command(entry.load())

    loaded_help = loaded.get_help(click.Context(loaded))

    assert lazy_help.split("Commands:")[1] == loaded_help.split("Commands:")[1]


def test_lazy_group_unknown_command_is_usage_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["--db", str(tmp_path / "k.db"), "rotaton"])

    assert result.exit_code == 2
    assert "No such command 'rotaton'" in result.stderr


def test_schema_names_match_migrations() -> None:
    registered = tuple(migration.name for migration in migrations._migrations)

    assert registered == MIGRATION_NAMES
    assert migrations.name == MIGRATION_SET
