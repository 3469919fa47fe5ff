"""`--output json` of every command, validated against docs/json-schema/.

Each case in json_cases.py prepares its state through the library, then runs
one command line in process with click's CliRunner inside mock_aws (and the
local CloudTrail server), and validates the one JSON object it prints.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
from click.testing import CliRunner
from conftest import CloudTrailFixture
from json_cases import CASES, Case, World

import kmsguard
from kmsguard.cli import main
from kmsguard.workflow.app import App
from kmsguard.workflow.errors import ChecksFailed, KmsguardError, Refused

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "json-schema"
OUTPUT_DOC = SCHEMAS.parent / "output.md"


def schema(shape: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{shape}.json").read_text())
    return loaded


def command_paths() -> set[str]:
    """Return every runnable command path of the CLI, such as `rotation start`."""
    paths: set[str] = set()

    def walk(command: click.Command, path: list[str]) -> None:
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(sub, [*path, name])
        else:
            paths.add(" ".join(path))

    walk(main, [])
    return paths


def run_json(app: App, args: list[str]) -> tuple[int, Any]:
    options = ["--db", str(app.settings.db_path), "--operator", "bob"]
    result = CliRunner().invoke(main, [*options, "--output", "json", *args])
    try:
        return result.exit_code, json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"{args}: not one JSON object: {result.stdout!r} {result.stderr!r}")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_json_output_matches_schema(
    case: Case, app: App, kms: Any, tmp_path: Path, cloudtrail: CloudTrailFixture
) -> None:
    args = case.prepare(World(app, kms, tmp_path, cloudtrail))

    code, data = run_json(app, args)

    assert code in case.codes, (code, data)
    jsonschema.validate(data, schema(case.shape))


def test_json_cases_cover_every_command() -> None:
    covered = {case.path for case in CASES}

    assert command_paths() - covered == set()


def test_json_cases_name_only_real_commands() -> None:
    assert {case.path for case in CASES} - command_paths() == set()


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.json")), ids=lambda p: p.stem)
def test_json_schema_is_valid(path: Path) -> None:
    document = json.loads(path.read_text())

    jsonschema.Draft202012Validator.check_schema(document)


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.json")), ids=lambda p: p.stem)
def test_json_schema_documented_in_output_page(path: Path) -> None:
    assert f"json-schema/{path.name}" in OUTPUT_DOC.read_text()


def test_json_schema_every_case_shape_exists() -> None:
    missing = {case.shape for case in CASES} - {p.stem for p in SCHEMAS.glob("*.json")}

    assert missing == set()


def error_kinds() -> set[str]:
    """Return the class name of every KmsguardError the package defines."""
    for module in pkgutil.walk_packages(kmsguard.__path__, "kmsguard."):
        # Importing __main__ would run the command line.
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: set[str] = set()
    pending: list[type[KmsguardError]] = [KmsguardError]
    while pending:
        cls = pending.pop()
        found.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return found


def test_json_error_kinds_all_documented() -> None:
    # A refusal and a failed check print their own shapes, not the error shape.
    printed_as_error = error_kinds() - {
        Refused.__name__,
        "Conflict",
        ChecksFailed.__name__,
    }
    documented = set(schema("error")["properties"]["kind"]["enum"])

    assert printed_as_error - documented == set()


def test_json_output_sorted_keys(app: App) -> None:
    options = ["--db", str(app.settings.db_path), "--output", "json"]

    result = CliRunner().invoke(main, [*options, "env", "show", "prod"])

    data = json.loads(result.stdout)
    assert result.stdout.rstrip("\n") == json.dumps(data, indent=2, sort_keys=True)
