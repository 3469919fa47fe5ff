"""The top-level command table, and a group that imports a command only to run it.

`kmsguard --help` and `kmsguard status` must start fast, and the commands
that reach AWS import the engine, the handlers and, through them, boto3. So
the root group lists each such command by name and short help from the table
below, and imports its module only when that command is invoked. A test
checks the table against the real commands.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem


# A NamedTuple, not a dataclass: a dataclass generates its methods with exec()
# at import, which costs start-up time on every command.
class LazyCommand(NamedTuple):
    """A top-level command known by name and help until it is invoked.

    Attributes:
        name: the command's name on the command line.
        target: "module:attribute"; the attribute is a click command, or a
            function without arguments that builds one.
        help: the command's short help, as `--help` lists it.
    """

    name: str
    target: str
    help: str

    def load(self) -> click.Command:
        module_name, attribute = self.target.split(":")
        found: Any = getattr(importlib.import_module(module_name), attribute)
        command = found if isinstance(found, click.Command) else found()
        if not isinstance(command, click.Command) or command.name != self.name:
            raise RuntimeError(
                f"{self.target} does not name the command {self.name!r}; correct "
                "its entry in LAZY_COMMANDS"
            )
        return command

    def stand_in(self) -> click.Command:
        """Return a command that only carries the help, for listings."""
        return click.Command(self.name, help=self.help)


LAZY_COMMANDS: tuple[LazyCommand, ...] = (
    LazyCommand(
        "audit",
        "kmsguard.commands.audit:audit_group",
        "Check and export the audit log.",
    ),
    LazyCommand(
        "check",
        "kmsguard.commands.check:check_group",
        "Check a key or a key policy against what the procedures need.",
    ),
    LazyCommand(
        "diagram",
        "kmsguard.commands.diagram:diagram",
        "Print PROCEDURE as a Mermaid stateDiagram-v2, guards on the edges.",
    ),
    LazyCommand(
        "disablement",
        "kmsguard.commands.procedures:disablement_group",
        "Turn customer-managed key encryption off, then retire the key.",
    ),
    LazyCommand(
        "doctor",
        "kmsguard.commands.doctor:doctor_command",
        "Walk the troubleshooting table for an environment and report the fixes.",
    ),
    LazyCommand(
        "evidence",
        "kmsguard.commands.evidence:evidence",
        "Report whether a key is still in use; writes nothing.",
    ),
    LazyCommand(
        "iam-policy",
        "kmsguard.commands.iam_policy:iam_policy_command",
        "Print the IAM policy with the AWS actions kmsguard calls, as JSON.",
    ),
    LazyCommand(
        "onboarding",
        "kmsguard.commands.procedures:onboarding_group",
        "Bring the pipeline onto a key you own.",
    ),
    LazyCommand(
        "policy",
        "kmsguard.commands.policy_cmd:policy_group",
        "Show the key policy the procedures apply, and its change to a key.",
    ),
    LazyCommand(
        "protect",
        "kmsguard.commands.protect:protect_command",
        "Deny disabling or deleting the open run's key in AWS, except to "
        "break-glass roles.",
    ),
    LazyCommand(
        "recover",
        "kmsguard.commands.recover:recover_group",
        "Undo kmsguard's disable or scheduled deletion of a key.",
    ),
    LazyCommand(
        "rotation",
        "kmsguard.commands.procedures:rotation_group",
        "Rotate the pipeline from the current key to a new one.",
    ),
    LazyCommand(
        "unprotect",
        "kmsguard.commands.protect:unprotect_command",
        "Remove the protection statement from the key of the environment's latest run.",
    ),
    LazyCommand(
        "watch",
        "kmsguard.commands.protect:watch_command",
        "Report calls on the environment's retired key since kmsguard retired it.",
    ),
)


class LazyGroup(click.Group):
    """A group whose table commands are imported when invoked, not when listed."""

    def __init__(
        self, *args: Any, lazy: Sequence[LazyCommand] = LAZY_COMMANDS, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = {entry.name: entry for entry in lazy}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(self.lazy[cmd_name].load())
        return super().get_command(ctx, cmd_name)

    def listed_command(self, name: str) -> click.Command | None:
        """Return the command if imported, else its stand-in carrying the help."""
        if name in self.commands:
            return self.commands[name]
        entry = self.lazy.get(name)
        return entry.stand_in() if entry else None

    def format_commands(
        self, ctx: click.Context, formatter: click.HelpFormatter
    ) -> None:
        listed = [(name, self.listed_command(name)) for name in self.list_commands(ctx)]
        rows = [(name, command) for name, command in listed if command is not None]
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section("Commands"):
            formatter.write_dl(
                [(name, command.get_short_help_str(limit)) for name, command in rows]
            )

    def shell_complete(
        self, ctx: click.Context, incomplete: str
    ) -> list[CompletionItem]:
        """Complete command names from the table, importing no command module."""
        from click.shell_completion import CompletionItem

        names = [n for n in self.list_commands(ctx) if n.startswith(incomplete)]
        results = []
        for name in names:
            command = self.listed_command(name)
            if command is not None and not command.hidden:
                results.append(CompletionItem(name, help=command.get_short_help_str()))
        # The options of the group itself, as click completes them.
        results.extend(click.Command.shell_complete(self, ctx, incomplete))
        return results
