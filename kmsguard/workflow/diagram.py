"""Mermaid state diagrams of the procedures, generated from their data.

Each edge is a step, labelled with its name and its guards. Recovery steps are
marked, because they act on the most recent run whose key kmsguard retired
rather than on the open run. The same text feeds `kmsguard diagram` and the
pages under docs/procedures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kmsguard.workflow.procedure import Procedure, Step

if TYPE_CHECKING:
    from kmsguard.workflow.app import App
    from kmsguard.workflow.records import Run

START = "[*]"
INDENT = "    "
HIGHLIGHT_CLASS = "current"
HIGHLIGHT_STYLE = "fill:#fde68a,stroke:#b45309,stroke-width:3px"
BEGIN_MARK = (
    "<!-- BEGIN GENERATED: run `make docs`; edit the procedure's data instead -->"
)
END_MARK = "<!-- END GENERATED -->"


@dataclass(frozen=True)
class Edge:
    """One arrow of the diagram: a step from one state to another."""

    source: str
    dest: str
    label: str


def step_label(step: Step) -> str:
    label = step.name + (" (recovery)" if step.recovery else "")
    if step.guards:
        label += " [" + ", ".join(step.guards) + "]"
    return label


def edges(procedure: Procedure) -> list[Edge]:
    """Return every edge: the start, each step from each source, and the ends."""
    found = [Edge(START, procedure.initial, step_label(procedure.start))]
    for step in procedure.steps:
        found.extend(
            Edge(source, step.dest, step_label(step)) for source in step.sources
        )
    ends = {step.dest for step in procedure.steps if step.close}
    found.extend(Edge(state, START, "") for state in procedure.states if state in ends)
    return found


def render_mermaid(procedure: Procedure, current: str | None = None) -> str:
    """Return the procedure as a Mermaid stateDiagram-v2, `current` highlighted.

    Raises:
        ValueError: `current` is not a state of the procedure.
    """
    if current is not None and current not in procedure.states:
        raise ValueError(f"{current!r} is not a state of {procedure.name}")
    lines = ["stateDiagram-v2"]
    lines.extend(INDENT + state for state in procedure.states)
    for edge in edges(procedure):
        arrow = f"{INDENT}{edge.source} --> {edge.dest}"
        lines.append(f"{arrow}: {edge.label}" if edge.label else arrow)
    if current is not None:
        lines.append(f"{INDENT}classDef {HIGHLIGHT_CLASS} {HIGHLIGHT_STYLE}")
        lines.append(f"{INDENT}class {current} {HIGHLIGHT_CLASS}")
    return "\n".join(lines) + "\n"


def diagram_run(app: App, procedure: Procedure, environment: str) -> Run | None:
    """Return the environment's open run of the procedure, else its newest run."""
    app.environment(environment)
    runs = [r for r in app.store.runs(environment) if r.procedure == procedure.name]
    open_runs = [r for r in runs if r.closed_at is None]
    if open_runs:
        return open_runs[-1]
    return runs[-1] if runs else None


def procedure_diagram(
    app: App | None, procedure: Procedure, environment: str | None
) -> dict[str, Any]:
    """Return the diagram of a procedure, with ENV's run state highlighted."""
    run = None
    if environment is not None and app is not None:
        run = diagram_run(app, procedure, environment)
    return {
        "procedure": procedure.name,
        "environment": environment,
        "run_id": run.id if run else None,
        "state": run.state if run else None,
        "mermaid": render_mermaid(procedure, run.state if run else None),
    }


def docs_block(procedure: Procedure) -> str:
    """Return the generated part of a procedure's docs page: diagram and steps."""
    lines = [BEGIN_MARK, "", "```mermaid", render_mermaid(procedure).rstrip(), "```"]
    lines += ["", "| step | command | from | to | guards |", "|---|---|---|---|---|"]
    for step in (procedure.start, *procedure.steps):
        command = procedure.command_for(step, "ENV")
        sources = ", ".join(f"`{s}`" for s in step.sources) or "(new run)"
        guards = ", ".join(f"`{g}`" for g in step.guards) or "none"
        lines.append(
            f"| `{step.name}` | `{command}` | {sources} | `{step.dest}` | {guards} |"
        )
    return "\n".join([*lines, "", END_MARK])


def update_page(text: str | None, procedure: Procedure) -> str:
    """Return a docs page with its generated block replaced, other text kept.

    An empty page gets a title and the block, and a page without the block
    gets it appended. A page with only one of the two marks is an error,
    because the end of the generated text is unknown.

    Raises:
        ValueError: the page has a begin mark without an end mark, or the reverse.
    """
    block = docs_block(procedure)
    if not text:
        return f"# {procedure.title}\n\n{block}\n"
    has_begin, has_end = BEGIN_MARK in text, END_MARK in text
    if has_begin != has_end:
        raise ValueError(
            f"the {procedure.name} page has only one of the generated-block marks; "
            f"restore both ({BEGIN_MARK!r} and {END_MARK!r}) or remove both"
        )
    if not has_begin:
        return text.rstrip("\n") + f"\n\n{block}\n"
    head, rest = text.split(BEGIN_MARK, 1)
    _, tail = rest.split(END_MARK, 1)
    return head + block + tail
