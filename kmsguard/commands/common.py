"""What every command shares: the App on the click context, output and errors."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from kmsguard.workflow.app import App
from kmsguard.workflow.errors import InvalidInput, KmsguardError

log = logging.getLogger(__name__)


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


def use_color() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def style(text: str, **styles: Any) -> str:
    return click.style(text, **styles) if use_color() else text


def emit(data: dict[str, Any], lines: list[str] | Callable[[], list[str]]) -> None:
    """Print one JSON object, or the text lines, on stdout."""
    state = get_state()
    if state.json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    for line in lines() if callable(lines) else lines:
        click.echo(line)


def fail(error: KmsguardError) -> NoReturn:
    """Report an error (JSON on stdout or text on stderr) and exit with its status."""
    state = click.get_current_context().find_object(State)
    if state is not None and state.json:
        click.echo(json.dumps(error.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        click.echo(style("error: ", fg="red", bold=True) + str(error), err=True)
    sys.exit(error.exit_code)


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn kmsguard errors into their exit status; never show a traceback for them."""
    try:
        yield
    except KmsguardError as error:
        fail(error)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> list[str]:
    """Render rows as an aligned text table with a header."""
    header = [title for _, title in columns]
    body = [
        ["" if row.get(key) is None else str(row.get(key)) for key, _ in columns]
        for row in rows
    ]
    widths = [
        max(len(cell) for cell in column) for column in zip(header, *body, strict=True)
    ]
    lines = [
        "  ".join(
            cell.ljust(width) for cell, width in zip(header, widths, strict=True)
        ).rstrip()
    ]
    for cells in body:
        lines.append(
            "  ".join(
                cell.ljust(width) for cell, width in zip(cells, widths, strict=True)
            ).rstrip()
        )
    return lines


def confirm_destructive(yes: bool, what: str) -> Callable[[Any], bool] | None:
    """Return the prompt callback for a destructive step, or None with --yes.

    Raises:
        InvalidInput: no terminal to ask on and no --yes.
    """
    if yes:
        return None
    if not sys.stdin.isatty():
        raise InvalidInput(
            f"{what} changes a key in AWS and needs confirmation, but there is no "
            "terminal to ask on; add --yes to confirm"
        )

    def ask(ctx: Any) -> bool:
        key = ctx.target_key() if ctx.run is not None else "the key"
        return click.confirm(
            f"{what}: key {key} in {ctx.env_name}. Continue?", default=False, err=True
        )

    return ask
