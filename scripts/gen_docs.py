"""Write what is generated from the procedure data: docs pages and a table.

Each page in docs/procedures/ gets its procedure's state diagram and step
table. A page keeps its own text: only the block between the generated marks
is replaced, and a page without the block gets it appended.

kmsguard/workflow/next_steps.py gets the command that moves a run on from
each state, so that `kmsguard status` can name it without importing the
procedures. With --check nothing is written, and the exit status is 1 when a
page or the table is out of date.

Run it as `python scripts/gen_docs.py [--check]` (or `make docs`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from kmsguard.states import PROCEDURES
from kmsguard.workflow.diagram import update_page
from kmsguard.workflow.procedure import Procedure

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "procedures"
NEXT_STEPS = ROOT / "kmsguard" / "workflow" / "next_steps.py"
NEXT_STEPS_HEADER = '''"""The command that moves a run on from each state. Generated: do not edit.

scripts/gen_docs.py writes this file from kmsguard.states (run `make docs`),
and a test fails when it differs. `kmsguard status` reads these tables so that
it need not import the procedures, which cost more start-up time than the
whole status query. Each entry is (command group and name, usage).
"""
'''


def page_path(name: str, docs: Path = DOCS) -> Path:
    return docs / f"{name}.md"


def stale_pages(docs: Path = DOCS) -> list[Path]:
    """Return the pages whose generated block differs from the procedure data."""
    stale = []
    for name, procedure in PROCEDURES.items():
        path = page_path(name, docs)
        text = path.read_text(encoding="utf-8") if path.exists() else None
        if update_page(text, procedure) != text:
            stale.append(path)
    return stale


def write_pages(docs: Path = DOCS) -> list[Path]:
    """Regenerate every page; return the pages that changed."""
    docs.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, procedure in PROCEDURES.items():
        path = page_path(name, docs)
        text = path.read_text(encoding="utf-8") if path.exists() else None
        updated = update_page(text, procedure)
        if updated != text:
            path.write_text(updated, encoding="utf-8")
            changed.append(path)
    return changed


def first_steps(procedure: Procedure, recovery: bool) -> dict[str, tuple[str, str]]:
    """Return, per state, the label and usage of the first step of that kind."""
    table: dict[str, tuple[str, str]] = {}
    for step in procedure.steps:
        for state in step.sources:
            if step.recovery == recovery and state not in table:
                table[state] = (procedure.step_label(step), step.usage)
    return table


def next_steps_module() -> str:
    """Return the text of kmsguard/workflow/next_steps.py."""
    forward = {n: first_steps(p, recovery=False) for n, p in PROCEDURES.items()}
    recovery = {n: first_steps(p, recovery=True) for n, p in PROCEDURES.items()}
    recovery_steps = {
        name: tuple(sorted({s.name for s in procedure.steps if s.recovery}))
        for name, procedure in PROCEDURES.items()
    }
    body = [
        NEXT_STEPS_HEADER,
        "FORWARD: dict[str, dict[str, tuple[str, str]]] = " + nested(forward),
        "RECOVERY: dict[str, dict[str, tuple[str, str]]] = " + nested(recovery),
        "RECOVERY_STEPS: dict[str, tuple[str, ...]] = " + nested(recovery_steps),
    ]
    return "\n".join(body) + "\n"


def nested(table: Mapping[str, object]) -> str:
    """Render a dict one entry a line, nested dicts indented, as ruff would."""
    lines = ["{"]
    for key, value in table.items():
        if isinstance(value, dict):
            inner = nested(value).replace("\n", "\n    ")
            lines.append(f"    {json.dumps(key)}: {inner},")
        else:
            lines.append(f"    {json.dumps(key)}: {literal(value)},")
    return "\n".join(lines) + "\n}" if lines[1:] else "{}"


def literal(value: object) -> str:
    """Render a tuple of strings with double quotes, as ruff formats them."""
    assert isinstance(value, tuple)
    items = ", ".join(json.dumps(item) for item in value)
    return f"({items},)" if len(value) == 1 else f"({items})"


def stale_next_steps(path: Path = NEXT_STEPS) -> bool:
    text = path.read_text(encoding="utf-8") if path.exists() else None
    return text != next_steps_module()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages() + ([NEXT_STEPS] if stale_next_steps() else [])
        for path in stale:
            print(f"out of date: {path}; run `make docs`", file=sys.stderr)
        return 1 if stale else 0
    for path in write_pages():
        print(f"wrote {path}")
    if stale_next_steps():
        NEXT_STEPS.write_text(next_steps_module(), encoding="utf-8")
        print(f"wrote {NEXT_STEPS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
