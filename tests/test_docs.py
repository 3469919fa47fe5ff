"""Help text and docs: every command explains itself and is documented.

These tests fail when a command or option lacks help text, when a command
path appears nowhere in README.md or docs/, and when the troubleshooting and
limitations pages fall behind the code they describe.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from kmsguard.cli import main
from kmsguard.states import PROCEDURES
from kmsguard.workflow.aws import ERROR_HINTS
from kmsguard.workflow.aws_faults import CLIENT_SIDE_HINTS
from kmsguard.workflow.guards import GUARDS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = ROOT / "kmsguard"


def commands() -> Iterator[tuple[str, click.Command]]:
    """Yield every command and group of the CLI with its path, such as `rotation start`."""

    def walk(
        command: click.Command, path: list[str]
    ) -> Iterator[tuple[str, click.Command]]:
        if path:
            yield " ".join(path), command
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, name
                yield from walk(sub, [*path, name])

    yield from walk(main, [])


COMMANDS = dict(commands())


def all_docs_text() -> str:
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    return "\n".join(page.read_text(encoding="utf-8") for page in pages)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_command_has_help_text(path: str) -> None:
    command = COMMANDS[path]

    assert (command.help or "").strip(), f"`kmsguard {path}` has no help text"
    assert command.get_short_help_str().strip()


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_command_options_have_help_text(path: str) -> None:
    options = [p for p in COMMANDS[path].params if isinstance(p, click.Option)]

    missing = [
        o.opts[0] for o in options if not o.hidden and not (o.help or "").strip()
    ]

    assert missing == []


def test_root_command_has_help_text() -> None:
    assert (main.help or "").strip()


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_command_mentioned_in_docs(path: str) -> None:
    assert f"kmsguard {path}" in all_docs_text(), (
        f"`kmsguard {path}` appears nowhere in README.md or docs/"
    )


@pytest.mark.parametrize("name", sorted(PROCEDURES))
def test_procedure_page_has_diagram(name: str) -> None:
    page = (DOCS / "procedures" / f"{name}.md").read_text(encoding="utf-8")

    assert "```mermaid\nstateDiagram-v2" in page


@pytest.mark.parametrize("name", sorted(PROCEDURES))
def test_procedure_page_has_every_step_command(name: str) -> None:
    procedure = PROCEDURES[name]
    page = (DOCS / "procedures" / f"{name}.md").read_text(encoding="utf-8")

    for step in (procedure.start, *procedure.steps):
        group = "recover" if step.recovery else name
        assert f"kmsguard {group} {step.command}" in page, step.name


def guard_names() -> set[str]:
    """Return every guard the package can report: the registry and literal ones."""
    names = set(GUARDS)
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            function = getattr(node.func, "id", getattr(node.func, "attr", ""))
            first = node.args[0]
            if function == "GuardResult" and isinstance(first, ast.Constant):
                names.add(str(first.value))
    return names


@pytest.mark.parametrize("guard", sorted(guard_names()))
def test_troubleshooting_explains_guard(guard: str) -> None:
    page = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")

    assert f"`{guard}`" in page


@pytest.mark.parametrize("code", sorted({*ERROR_HINTS, *CLIENT_SIDE_HINTS}))
def test_troubleshooting_explains_aws_error(code: str) -> None:
    page = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")

    assert f"`{code}`" in page


def marked_modules() -> list[str]:
    """Return the package files with a NOTE: or TODO: mark in a comment or docstring."""
    marked = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if "NOTE:" in text or "TODO:" in text:
            marked.append(str(path.relative_to(ROOT)))
    return marked


@pytest.mark.parametrize("module", marked_modules())
def test_limitations_page_covers_marked_module(module: str) -> None:
    page = (DOCS / "limitations.md").read_text(encoding="utf-8")

    assert f"`{module}`" in page


def test_readme_documents_shell_completion() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")

    assert "_KMSGUARD_COMPLETE=bash_source kmsguard" in readme


@pytest.mark.parametrize(
    "group", sorted(n for n in main.list_commands(click.Context(main)))
)
def test_readme_lists_command_group(group: str) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")

    assert f"`{group}`" in readme
