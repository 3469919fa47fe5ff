"""The step context that handlers and guards read, and the outcome a handler returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from kmsguard.workflow.errors import GuardResult
from kmsguard.workflow.procedure import Procedure, Step
from kmsguard.workflow.records import (
    Confirmation,
    Environment,
    Event,
    PolicyBackup,
    Run,
)

if TYPE_CHECKING:
    from kmsguard.workflow.aws import AwsSession, Kms
    from kmsguard.workflow.store import SqliteStore


@dataclass
class StepContext:
    """One attempt at one step: inputs, the loaded run and the facts read."""

    store: SqliteStore
    aws_factory: Callable[[], AwsSession]
    environment: Environment
    procedure: Procedure
    step: Step
    run: Run | None
    operator: str
    params: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)
    caller_arn: str | None = None
    _aws: AwsSession | None = None

    @property
    def aws(self) -> AwsSession:
        if self._aws is None:
            self._aws = self.aws_factory()
        return self._aws

    @property
    def kms(self) -> Kms:
        from kmsguard.workflow.aws import Kms

        return Kms(self.aws, self.environment.region)

    @property
    def env_name(self) -> str:
        return self.environment.name

    def command(self, step_name: str, **values: str) -> str:
        """Return the command line that runs a step, with known values filled in."""
        step = self.procedure.step(step_name)
        text = self.procedure.command_for(step, self.env_name)
        from kmsguard.workflow.status_view import shell_word

        for placeholder, value in values.items():
            text = text.replace(placeholder, shell_word(value))
        return text

    def identify_caller(self) -> str:
        """Record and return the AWS caller ARN (STS GetCallerIdentity)."""
        if self.caller_arn is None:
            identity = self.aws.caller_identity(self.environment.region)
            self.caller_arn = identity["Arn"]
            self.facts["caller_account"] = identity["Account"]
        return self.caller_arn

    def target_key(self) -> str:
        """Return the ARN of the key this step acts on."""
        assert self.run is not None
        arn = (
            self.run.new_key_arn
            if self.step.target == "new"
            else self.run.current_key_arn
        )
        if not arn:
            raise KeyError(f"run {self.run.id} has no {self.step.target} key")
        return arn


@dataclass
class Outcome:
    """The result of a handler's work, committed with the step's event."""

    updates: dict[str, Any] = field(default_factory=dict)
    data_updates: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    confirmation: Confirmation | None = None
    backups: tuple[PolicyBackup, ...] = ()
    # Lines for the operator: the support request to send, warnings.
    notes: list[str] = field(default_factory=list)


class Handler(Protocol):
    """The work of one kind of step; guards are evaluated between its phases."""

    def validate(self, ctx: StepContext) -> None:
        """Check the operator's input without I/O; raise InvalidInput."""

    def prepare(self, ctx: StepContext) -> None:
        """Read what the guards need (from AWS or the store) into ctx.facts."""

    def intent(self, ctx: StepContext) -> dict[str, Any] | None:
        """Return the evidence of an AWS write about to happen, or None."""

    def execute(self, ctx: StepContext) -> Outcome:
        """Do the step's work after every guard passed and any intent committed."""

    def reconcile(self, ctx: StepContext, intent: Event) -> Outcome | None:
        """Find out from AWS whether an interrupted intent took effect."""


Guard = Callable[[StepContext], GuardResult]
