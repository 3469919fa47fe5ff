"""Procedure definitions as data: states, steps and guard names."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    """One named transition of a procedure: a trigger of its state machine.

    Attributes:
        name: the trigger name, snake_case (`disable_old_key`).
        command: the CLI sub-command that runs the step (`disable-old-key`).
        sources: the states the step may start from.
        dest: the state the step leads to.
        handler: the name of the step handler that does the work.
        guards: the names of the guards that must all pass.
        usage: the options to show in the command that runs the step.
        target: the run's key the handler acts on, "current" or "new".
        destructive: whether the step changes a key's state in AWS, so the
            CLI prompts for confirmation unless `--yes` is given.
        close: whether reaching `dest` closes the run.
        recovery: whether the step acts on the environment's most recent run
            whose key kmsguard disabled, open or completed, instead of the
            open run.
        request: the kind of support request the step prints, if any.
    """

    name: str
    command: str
    sources: tuple[str, ...]
    dest: str
    handler: str
    guards: tuple[str, ...] = ()
    usage: str = ""
    target: str = "current"
    destructive: bool = False
    close: bool = False
    recovery: bool = False
    request: str = ""


@dataclass(frozen=True)
class KeyExpectation:
    """The AWS key states one of the run's keys must read in some run states.

    The engine compares them with the live key before each step, and `status
    --live` reports any difference as drift.

    Attributes:
        target: the run's key, "current" or "new".
        run_states: the run states the expectation applies in.
        key_states: the KeyState values allowed, for example ("Enabled",).
    """

    target: str
    run_states: tuple[str, ...]
    key_states: tuple[str, ...]


@dataclass(frozen=True)
class Procedure:
    """A whole procedure: states in order, the start step and every other step."""

    name: str
    title: str
    states: tuple[str, ...]
    start: Step
    steps: tuple[Step, ...]
    # The state in which the run waits for support; recovery returns there.
    waiting_state: str = ""
    # States in which kmsguard has disabled the key or scheduled its deletion.
    key_retired_states: tuple[str, ...] = field(default_factory=tuple)
    # States a run can only be in with a support confirmation recorded.
    confirmed_states: tuple[str, ...] = field(default_factory=tuple)
    # The AWS state each recorded key must read while the run is in a state.
    key_expectations: tuple[KeyExpectation, ...] = field(default_factory=tuple)

    @property
    def initial(self) -> str:
        return self.start.dest

    def step(self, name: str) -> Step:
        for step in (self.start, *self.steps):
            if step.name == name:
                return step
        raise KeyError(f"procedure {self.name} has no step {name!r}")

    def expected_key_states(self, state: str, target: str) -> tuple[str, ...]:
        """Return the KeyState values the run's `target` key may read in `state`.

        An empty tuple means the procedure expects nothing of that key there.
        """
        allowed: tuple[str, ...] = ()
        for expectation in self.key_expectations:
            if expectation.target == target and state in expectation.run_states:
                allowed += expectation.key_states
        return allowed

    def steps_from(self, state: str) -> list[Step]:
        """Return the steps that may start from a state, in declaration order."""
        return [step for step in self.steps if state in step.sources]

    def next_command(
        self, state: str, environment: str, ticket_id: str | None = None
    ) -> str:
        """Return the command of the first forward step from `state`, or "".

        Recovery steps are never suggested: they undo, not advance.
        """
        steps = [step for step in self.steps_from(state) if not step.recovery]
        if not steps:
            return ""
        from kmsguard.workflow.status_view import shell_word

        command = self.command_for(steps[0], environment)
        if ticket_id:
            command = command.replace(
                "--ticket ID", f"--ticket {shell_word(ticket_id)}"
            )
        return command

    def step_label(self, step: Step) -> str:
        """Return the group and command that run a step, as in `recover re-enable`."""
        # Recovery steps of every procedure share the `kmsguard recover` group.
        group = "recover" if step.recovery else self.name
        return f"{group} {step.command}"

    def recovery_command(self, state: str, environment: str) -> str:
        """Return the command of the first recovery step from `state`, or ""."""
        steps = [step for step in self.steps_from(state) if step.recovery]
        return self.command_for(steps[0], environment) if steps else ""

    def command_for(self, step: Step, environment: str) -> str:
        text = f"kmsguard {self.step_label(step)} {environment}"
        return f"{text} {step.usage}" if step.usage else text
