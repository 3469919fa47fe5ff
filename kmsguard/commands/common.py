"""What every command shares: the App on the click context, output and errors.

Output has two forms. Text is for people: aligned tables, one `next:` line
with the command to run, colour only on a terminal and never with NO_COLOR.
`--output json` prints exactly one JSON object on stdout, with sorted keys,
for every command and every error; docs/output.md is its contract.
Diagnostics (errors, warnings, progress) always go to stderr.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click

from kmsguard.commands.text import cell, table_lines, to_json, use_color
from kmsguard.workflow.errors import InvalidInput, KmsguardError

if TYPE_CHECKING:
    from kmsguard.workflow.app import App

log = logging.getLogger(__name__)

Lines = list[str] | Callable[[], list[str]]


class State:
    """The per-invocation object commands find on the click context."""

    def __init__(self, app: App, output: str) -> None:
        self.app = app
        self.output = output

    @property
    def json(self) -> bool:
        return self.output == "json"


def get_state() -> State:
    state = click.get_current_context().find_object(State)
    assert state is not None
    return state


def style(text: str, err: bool = False, **styles: Any) -> str:
    """Colour `text` for stdout, or for stderr with err=True, when colour is on."""
    return click.style(text, **styles) if use_color(err) else text


def emit(data: dict[str, Any], lines: Lines) -> None:
    """Print one JSON object, or the text lines, on stdout."""
    state = get_state()
    if state.json:
        click.echo(to_json(data))
        return
    for line in lines() if callable(lines) else lines:
        click.echo(line)


def next_line(command: str) -> str:
    """Return the line that names the command to run next."""
    return style("next: ", bold=True) + command


def fail(error: KmsguardError) -> NoReturn:
    """Report an error (JSON on stdout or text on stderr) and exit with its status."""
    state = click.get_current_context().find_object(State)
    if state is not None and state.json:
        click.echo(to_json(error.to_dict()))
    else:
        prefix = style("error: ", err=True, fg="red", bold=True)
        click.echo(prefix + str(error), err=True)
    sys.exit(error.exit_code)


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn kmsguard errors into their exit status; never show a traceback for them."""
    try:
        yield
    except KmsguardError as error:
        fail(error)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> list[str]:
    """Render rows as an aligned text table with a header, bold on a terminal.

    Args:
        columns: (key in each row, column title) pairs, left to right.
    """
    return table_lines(rows, columns, header=_bold_header)


def table_with_continuations(
    rows: list[dict[str, Any]], columns: list[tuple[str, str]]
) -> list[str]:
    """Render rows as `table` does, keeping every line of the last column."""
    return table_lines(rows, columns, header=_bold_header, continued=True)


def fields(data: dict[str, Any]) -> list[str]:
    """Render a flat object as aligned `name: value` lines."""
    width = max((len(name) for name in data), default=0) + 1
    return [
        f"{name + ':':<{width}} {cell(value)}".rstrip() for name, value in data.items()
    ]


def text_value(value: Any) -> str:
    """Render a value for text output: list and tuple items comma-separated."""
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    return str(value)


def _bold_header(line: str) -> str:
    return style(line, bold=True)


def confirm_destructive(yes: bool, what: str) -> Callable[[Any], bool] | None:
    """Return the prompt callback for a destructive step, or None with --yes.

    The engine calls it after the order check and the guards, so a step that
    would be refused reports that first, not a missing --yes.
    """
    if yes:
        return None

    def ask(ctx: Any) -> bool:
        if not sys.stdin.isatty():
            raise InvalidInput(
                f"{what} changes a key in AWS and needs confirmation, but there "
                "is no terminal to ask on; add --yes to confirm"
            )
        key = ctx.target_key() if ctx.run is not None else "the key"
        return click.confirm(
            f"{what}: key {key} in {ctx.env_name}. Continue?", default=False, err=True
        )

    return ask
