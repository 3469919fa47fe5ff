"""Usage errors as one JSON object on stdout when the output is JSON.

click reports a usage error (a missing option, an unknown command, an invalid
value) as text on stderr. With `--output json` a script reads stdout only, so
the root group turns such an error into the error object every other failure
prints, with the same exit status 2.
"""

from __future__ import annotations

import os
from typing import Any

import click

from kmsguard.commands.lazy import LazyGroup
from kmsguard.commands.text import to_json
from kmsguard.workflow.errors import InvalidInput


class JsonUsageError(click.ClickException):
    """A click usage error that prints the JSON error object on stdout."""

    exit_code = 2

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(usage_message(error))

    def show(self, file: Any = None) -> None:
        click.echo(to_json(InvalidInput(self.message).to_dict()))


class RootGroup(LazyGroup):
    """The root group: lazy sub-commands, and usage errors in the chosen output."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        arguments = list(args)
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:
            # The root options failed to parse, so --output may not be read yet.
            params = error.ctx.params if error.ctx else {}
            if output_is_json(params, arguments):
                raise JsonUsageError(error) from error
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            if ctx.params.get("output") == "json":
                raise JsonUsageError(error) from error
            raise


def output_is_json(params: dict[str, Any], arguments: list[str]) -> bool:
    """Return whether --output, or else KMSGUARD_OUTPUT, selects JSON."""
    if "output" in params:
        return bool(params["output"] == "json")
    # --output takes its value in any case, as JSON or json.
    for index, argument in enumerate(arguments):
        if argument.lower() == "--output=json":
            return True
        following = [value.lower() for value in arguments[index + 1 : index + 2]]
        if argument == "--output" and following == ["json"]:
            return True
    return os.environ.get("KMSGUARD_OUTPUT", "").lower() == "json"


def usage_message(error: click.UsageError) -> str:
    """Return click's message for the error, with the help command to run."""
    if isinstance(error, click.exceptions.NoArgsIsHelpError):
        message = "Missing command."
    else:
        message = error.format_message()
    if error.ctx is None:
        return message
    return (
        f"{message.rstrip('.')}. Run '{error.ctx.command_path} --help' for the usage."
    )
