"""Mermaid diagrams of the procedures: they parse, match the data, and the docs."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner
from procedure_drivers import drive_onboarding
from transitions.extensions import GraphMachine

from kmsguard.cli import main
from kmsguard.states import PROCEDURES
from kmsguard.workflow.app import App
from kmsguard.workflow.diagram import (
    BEGIN_MARK,
    END_MARK,
    render_mermaid,
    update_page,
)
from kmsguard.workflow.machine import model_class, transition_table
from kmsguard.workflow.procedure import Procedure

ROOT = Path(__file__).resolve().parent.parent
NAME = r"[a-z][a-z0-9_]*"
NODE = rf"\[\*\]|{NAME}"
STATE_LINE = re.compile(rf"^    ({NAME})$")
EDGE_LINE = re.compile(rf"^    ({NODE}) --> ({NODE})(?:: (.+))?$")
LABEL = re.compile(rf"^({NAME})( \(recovery\))?(?: \[({NAME}(?:, {NAME})*)\])?$")
CLASSDEF_LINE = re.compile(r"^    classDef (\w+) ([\w#:,.-]+)$")
CLASS_LINE = re.compile(rf"^    class ({NAME}) (\w+)$")


@dataclass
class Diagram:
    """What a strict reading of the stateDiagram-v2 subset kmsguard writes found."""

    states: list[str] = field(default_factory=list)
    edges: set[tuple[str, str, str, tuple[str, ...], bool]] = field(default_factory=set)
    classes: dict[str, str] = field(default_factory=dict)
    styled: dict[str, str] = field(default_factory=dict)


def parse_mermaid(text: str) -> Diagram:
    """Parse the diagram line by line; fail on any line outside the grammar."""
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "stateDiagram-v2"
    diagram = Diagram()
    for line in lines[1:]:
        if line.strip().startswith("%%"):
            continue
        if match := STATE_LINE.match(line):
            diagram.states.append(match[1])
        elif match := EDGE_LINE.match(line):
            diagram.edges.add(parse_edge(match[1], match[2], match[3]))
        elif match := CLASSDEF_LINE.match(line):
            diagram.classes[match[1]] = match[2]
        elif match := CLASS_LINE.match(line):
            diagram.styled[match[1]] = match[2]
        else:
            pytest.fail(f"line outside the stateDiagram-v2 grammar: {line!r}")
    return diagram


def parse_edge(
    source: str, dest: str, label: str | None
) -> tuple[str, str, str, tuple[str, ...], bool]:
    if label is None:
        return (source, dest, "", (), False)
    match = LABEL.match(label)
    assert match, f"malformed edge label {label!r}"
    guards = tuple(match[3].split(", ")) if match[3] else ()
    return (source, dest, match[1], guards, bool(match[2]))


def expected_edges(
    procedure: Procedure,
) -> set[tuple[str, str, str, tuple[str, ...], bool]]:
    start = procedure.start
    edges = {("[*]", procedure.initial, start.name, start.guards, False)}
    for step in procedure.steps:
        for source in step.sources:
            edges.add((source, step.dest, step.name, step.guards, step.recovery))
    edges |= {(state, "[*]", "", (), False) for state in ("completed", "cancelled")}
    return edges


def transitions_edges(procedure: Procedure) -> set[tuple[str, str, str]]:
    """Return the edges the transitions library's own Mermaid renderer draws."""
    machine = GraphMachine(
        model=model_class(procedure)(),
        states=list(procedure.states),
        transitions=transition_table(procedure),
        initial=procedure.initial,
        auto_transitions=False,
        graph_engine="mermaid",
        show_conditions=True,
    )
    text = machine.get_graph().draw(None)
    found = set()
    for line in text.split("\n"):
        match = re.match(rf"^\s*({NAME}) --> ({NAME}): (.+)$", line)
        if not match:
            continue
        # It draws the steps between one pair of states as one edge, with
        # their labels joined by " | ".
        for label in match[3].split(" | "):
            found.add((match[1], match[2], label.split(" ")[0]))
    return found


@pytest.mark.parametrize("name", sorted(PROCEDURES))
def test_diagram_declares_every_state(name: str) -> None:
    procedure = PROCEDURES[name]

    diagram = parse_mermaid(render_mermaid(procedure))

    assert diagram.states == list(procedure.states)


@pytest.mark.parametrize("name", sorted(PROCEDURES))
def test_diagram_has_every_edge_with_guards(name: str) -> None:
    procedure = PROCEDURES[name]

    diagram = parse_mermaid(render_mermaid(procedure))

    assert diagram.edges == expected_edges(procedure)


@pytest.mark.parametrize("name", sorted(PROCEDURES))
def test_diagram_matches_transitions_renderer(name: str) -> None:
    procedure = PROCEDURES[name]

    diagram = parse_mermaid(render_mermaid(procedure))

    ours = {(s, d, step) for s, d, step, _, _ in diagram.edges if "[*]" not in (s, d)}
    assert ours == transitions_edges(procedure)


@pytest.mark.parametrize("name", sorted(PROCEDURES))
def test_diagram_edges_touch_only_declared_states(name: str) -> None:
    diagram = parse_mermaid(render_mermaid(PROCEDURES[name]))

    nodes = {node for edge in diagram.edges for node in edge[:2]} - {"[*]"}

    assert nodes <= set(diagram.states)


def test_diagram_highlights_current_state() -> None:
    diagram = parse_mermaid(render_mermaid(PROCEDURES["rotation"], "support_contacted"))

    assert diagram.styled == {"support_contacted": "current"}
    assert "fill" in diagram.classes["current"]


def test_diagram_without_state_highlights_nothing() -> None:
    diagram = parse_mermaid(render_mermaid(PROCEDURES["rotation"]))

    assert diagram.styled == {}


def test_diagram_rejects_unknown_state() -> None:
    with pytest.raises(ValueError):
        render_mermaid(PROCEDURES["rotation"], "key_ready")


def test_recovery_edges_marked() -> None:
    diagram = parse_mermaid(render_mermaid(PROCEDURES["disablement"]))

    recovery = {edge[2] for edge in diagram.edges if edge[4]}

    assert recovery == {"re_enable", "cancel_deletion", "cancel_deletion_and_enable"}


@pytest.mark.parametrize("name", sorted(PROCEDURES))
def test_docs_page_matches_generated_diagram(name: str) -> None:
    path = ROOT / "docs" / "procedures" / f"{name}.md"
    text = path.read_text(encoding="utf-8")

    assert update_page(text, PROCEDURES[name]) == text, (
        f"{path} is out of date; run `make docs`"
    )
    assert render_mermaid(PROCEDURES[name]).rstrip() in text


def test_update_page_keeps_text_around_block() -> None:
    procedure = PROCEDURES["onboarding"]
    page = f"# Title\n\nintro\n\n{BEGIN_MARK}\nold diagram\n{END_MARK}\n\nafter\n"

    updated = update_page(page, procedure)

    assert updated.startswith("# Title\n\nintro\n\n")
    assert updated.endswith(f"{END_MARK}\n\nafter\n")
    assert "old diagram" not in updated
    assert render_mermaid(procedure).rstrip() in updated


def test_update_page_appends_block_to_page_without_one() -> None:
    updated = update_page("# Notes\n\ntext\n", PROCEDURES["onboarding"])

    assert updated.startswith("# Notes\n\ntext\n\n" + BEGIN_MARK)
    assert updated.endswith(END_MARK + "\n")


def test_update_page_rejects_page_with_one_mark() -> None:
    with pytest.raises(ValueError):
        update_page(f"# Notes\n\n{BEGIN_MARK}\n", PROCEDURES["onboarding"])


def load_gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_docs", ROOT / "scripts" / "gen_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gen_docs_check_passes_on_repository() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr


def test_gen_docs_finds_stale_page(tmp_path: Path) -> None:
    gen_docs = load_gen_docs()
    gen_docs.write_pages(tmp_path)
    page = tmp_path / "rotation.md"
    page.write_text(page.read_text().replace("re_enable", "enable_again"))

    stale = gen_docs.stale_pages(tmp_path)

    assert stale == [page]


def run_cli(db_path: Path, *args: str) -> Any:
    runner = CliRunner()
    return runner.invoke(main, ["--db", str(db_path), *args], catch_exceptions=False)


def test_diagram_command_highlights_run_state(app: App, db_path: Path) -> None:
    drive_onboarding(app, "key_ready")

    result = run_cli(db_path, "diagram", "onboarding", "prod")

    assert result.exit_code == 0
    diagram = parse_mermaid(result.stdout)
    assert diagram.styled == {"key_ready": "current"}
    assert "%% prod: run 1 is in state key_ready" in result.stdout


def test_diagram_command_json(app: App, db_path: Path) -> None:
    drive_onboarding(app, "key_ready")

    result = run_cli(db_path, "--output", "json", "diagram", "onboarding", "prod")

    data = json.loads(result.stdout)
    assert data["state"] == "key_ready"
    assert data["procedure"] == "onboarding"
    assert data["mermaid"].startswith("stateDiagram-v2\n")


def test_diagram_command_without_run_highlights_nothing(
    app: App, db_path: Path
) -> None:
    result = run_cli(db_path, "diagram", "disablement", "prod")

    assert result.exit_code == 0
    assert parse_mermaid(result.stdout).styled == {}
    assert "prod has no disablement run" in result.stdout


def test_diagram_command_rejects_unknown_environment(app: App, db_path: Path) -> None:
    result = run_cli(db_path, "diagram", "rotation", "staging")

    assert result.exit_code == 2
    assert "unknown environment 'staging'" in result.stderr


def test_diagram_command_rejects_unknown_procedure(db_path: Path) -> None:
    result = run_cli(db_path, "diagram", "migration")

    assert result.exit_code == 2
