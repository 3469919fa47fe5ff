"""The `diagram` command: a procedure's state machine as Mermaid text."""

from __future__ import annotations

import click

from kmsguard.commands.common import emit, get_state, handle_errors
from kmsguard.states import PROCEDURES


@click.command("diagram")
@click.argument("procedure", type=click.Choice(sorted(PROCEDURES)))
@click.argument("environment", metavar="[ENV]", required=False)
def diagram(procedure: str, environment: str | None) -> None:
    """Print PROCEDURE as a Mermaid stateDiagram-v2, guards on the edges.

    With ENV, the state of the environment's run of that procedure (its open
    run, else its newest) is highlighted.
    """
    from kmsguard.workflow.diagram import procedure_diagram

    state = get_state()
    with handle_errors():
        data = procedure_diagram(
            state.app if environment else None, PROCEDURES[procedure], environment
        )

    def lines() -> list[str]:
        text = str(data["mermaid"]).rstrip("\n").split("\n")
        if environment is None:
            return text
        if data["run_id"] is None:
            note = f"%% {environment} has no {procedure} run; no state is highlighted"
        else:
            note = f"%% {environment}: run {data['run_id']} is in state {data['state']}"
        return [text[0], note, *text[1:]]

    emit(data, lines)
